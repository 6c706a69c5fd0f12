"""Deterministic, resumable, shardable batches.

Everything about a batch is a pure function of (seed, epoch, batch index, slot in the batch):
- the epoch's batch order comes from `random.Random` seeded with (seed, epoch): each image is
  listed `repeats` times, shuffled within its bucket, cut into batches of one bucket, and the
  batches are shuffled;
- each sample's caption and flip/crop come from their own `random.Random` seeded with (seed, epoch,
  global batch index, slot, purpose), not from one running stream.
So the state is just (epoch, position): resuming is exact without saving any RNG state, and DDP
ranks agree without talking. Rank r of world_size takes global batches r, r + world_size, ...;
when the count does not divide, the last round is padded from the start of the epoch's order (as
Accelerate's even_batches does) so every rank takes the same number of steps.
"""

from __future__ import annotations

import hashlib
import math
import random
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from .captions import process_caption
from .dataset import DatasetConfig, DatasetIndex
from .images import CropPlan, plan_crop, render
from .latent_cache import LatentCache, check_latent_cache_allowed

STATE_VERSION = 1


@dataclass
class Batch:
    captions: list[str]  # processed for this draw
    pixels: torch.Tensor | None  # [B, 3, H, W] in [-1, 1] when no latents
    latents: torch.Tensor | None  # [B, C, H/8, W/8] when encode_latents / latent_cache given
    original_size: torch.Tensor  # long [B, 2] (height, width)
    crop_top_left: torch.Tensor  # long [B, 2] (top, left)
    target_size: torch.Tensor  # long [B, 2] (height, width)
    paths: list[str]
    epoch: int = 1  # 1-based epoch this batch belongs to
    index: int = 0  # 0-based position of this batch in the epoch on this rank


@dataclass
class _Prepared:
    """A batch's CPU work (plans, captions, cache reads, image decodes), done ahead in a thread."""

    epoch: int
    index: int
    plans: list[CropPlan]
    captions: list[str]
    paths: list[str]
    keys: list[str | None]
    latents: list[torch.Tensor | None]
    pixels: list[torch.Tensor | None]


def draw_rng(seed: int, epoch: int, batch: int, slot: int, purpose: str) -> random.Random:
    """Independent stream per draw; str seeds are hashed with SHA-512, stable across processes."""
    return random.Random(f"animekit:{purpose}:{seed}:{epoch}:{batch}:{slot}")


class BatchSource:
    """Deterministic, resumable batches: same (config, seed) -> same sequence; state_dict() restores mid-epoch.

    Iterating is endless over epochs; `epoch`, `position` and `end_of_epoch` tell where it is.
    With `prefetch` > 0 that many batches are decoded ahead in threads (encoding stays in the caller's
    thread); call load_state_dict before iterating, not during.
    """

    def __init__(
        self,
        index: DatasetIndex,
        cfg: DatasetConfig,
        *,
        encode_latents: Callable[[torch.Tensor], torch.Tensor] | None = None,
        latent_cache: LatentCache | None = None,
        rank: int = 0,
        world_size: int = 1,
        prefetch: int = 0,
    ):
        if not index.records:
            raise ValueError("the dataset index has no images")
        if not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int) and 0 <= rank < world_size):
            raise ValueError(f"rank must be in [0, world_size) and world_size >= 1, got rank={rank!r}, world_size={world_size!r}")
        if latent_cache is not None:
            check_latent_cache_allowed(cfg)
        self.index, self.cfg = index, cfg
        self.encode_latents, self.latent_cache = encode_latents, latent_cache
        self.rank, self.world_size, self.prefetch = rank, world_size, max(0, int(prefetch))
        self.seed = cfg.seed
        self._epoch, self._position = 1, 0
        self._order: tuple[int, list[list[int]]] | None = None

    # -- order ---------------------------------------------------------------------------------
    def global_order(self, epoch: int) -> list[list[int]]:
        """All ranks' batches of `epoch`, as lists of indices into index.records."""
        if self._order is not None and self._order[0] == epoch:
            return self._order[1]
        rng = random.Random(f"animekit:order:{self.seed}:{epoch}")
        by_bucket: dict[tuple[int, int], list[int]] = {}
        for i, record in enumerate(self.index.records):
            by_bucket.setdefault(record.bucket, []).extend([i] * record.repeats)
        size = self.cfg.batch_size
        batches = []
        for bucket in sorted(by_bucket):
            items = by_bucket[bucket]
            rng.shuffle(items)
            batches += [items[i : i + size] for i in range(0, len(items), size)]
        rng.shuffle(batches)
        self._order = (epoch, batches)
        return batches

    def batches_in_epoch(self) -> int:
        """Batches (optimizer micro-steps) per epoch on this rank."""
        return math.ceil(len(self.global_order(self._epoch)) / self.world_size)

    def _global_slot(self, epoch: int, position: int) -> tuple[int, list[int]]:
        """(virtual global batch number, record indices) of this rank's `position`-th batch."""
        order = self.global_order(epoch)
        number = position * self.world_size + self.rank
        return number, order[number % len(order)]

    # -- state ---------------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def position(self) -> int:
        """Batches of the current epoch already drawn on this rank."""
        return self._position

    @property
    def end_of_epoch(self) -> bool:
        return self._position >= self.batches_in_epoch()

    def fingerprint(self) -> str:
        cfg = self.cfg
        text = repr((self.index.records, cfg.batch_size, cfg.flip, cfg.random_crop))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def state_dict(self) -> dict:
        return {
            "version": STATE_VERSION,
            "seed": self.seed,
            "epoch": self._epoch,
            "position": self._position,
            "world_size": self.world_size,
            "fingerprint": self.fingerprint(),
        }

    def load_state_dict(self, state: dict) -> None:
        try:
            version, seed, epoch, position = (state[k] for k in ("version", "seed", "epoch", "position"))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a BatchSource state (needs version, seed, epoch, position): {state!r}") from exc
        if version != STATE_VERSION:
            raise ValueError(f"BatchSource state version {version!r} is not supported (expected {STATE_VERSION})")
        if not all(isinstance(v, int) for v in (seed, epoch, position)) or epoch < 1 or position < 0:
            raise ValueError(f"BatchSource state has invalid seed/epoch/position: {seed!r}/{epoch!r}/{position!r}")
        if state.get("fingerprint") != self.fingerprint():
            warnings.warn("the dataset or batch settings changed since this state was saved; resuming at the same epoch and position, but the batches differ from the original run")
        saved_world = state.get("world_size", self.world_size)
        if saved_world != self.world_size:
            warnings.warn(f"resuming with world_size {self.world_size} from a state saved with {saved_world}; position converted approximately")
            position = position * saved_world // self.world_size
        self.seed, self._epoch, self._order = seed, epoch, None
        self._position = min(position, self.batches_in_epoch())

    # -- batches -------------------------------------------------------------------------------
    def _advance(self, epoch: int, position: int) -> tuple[int, int]:
        """Where the next batch comes from, rolling into the next epoch when this one is done."""
        if position >= math.ceil(len(self.global_order(epoch)) / self.world_size):
            return epoch + 1, 0
        return epoch, position

    def _prepare(self, epoch: int, position: int) -> _Prepared:
        cfg, records, cache = self.cfg, self.index.records, self.latent_cache
        number, members = self._global_slot(epoch, position)
        prepared = _Prepared(epoch, position, [], [], [], [], [], [])
        for slot, i in enumerate(members):
            record = records[i]
            plan = plan_crop(record, cfg.flip, cfg.random_crop, draw_rng(self.seed, epoch, number, slot, "image"))
            prepared.plans.append(plan)
            prepared.captions.append(process_caption(record.caption, record.captions, draw_rng(self.seed, epoch, number, slot, "caption"), epoch))
            prepared.paths.append(record.path)
            key = cache.key_for(record, plan) if cache is not None else None
            latent = cache.get(key) if cache is not None else None
            prepared.keys.append(key)
            prepared.latents.append(latent)
            prepared.pixels.append(render(record, plan).pixels if latent is None else None)
        return prepared

    def _finish(self, prepared: _Prepared) -> Batch:
        cache, encode = self.latent_cache, self.encode_latents
        pixels = latents = None
        if cache is None and encode is None:
            pixels = torch.stack(prepared.pixels)
        elif cache is None:
            latents = encode(torch.stack(prepared.pixels))
        else:
            missing = [i for i, latent in enumerate(prepared.latents) if latent is None]
            if missing:
                if encode is None:
                    raise ValueError(f"latent cache has no entry for {prepared.paths[missing[0]]} and no encode_latents was given")
                encoded = encode(torch.stack([prepared.pixels[i] for i in missing]))
                for i, latent in zip(missing, encoded):
                    cache.put(prepared.keys[i], latent)
                    prepared.latents[i] = latent.detach().to("cpu")
            latents = torch.stack(prepared.latents)

        def sizes(field: str) -> torch.Tensor:
            return torch.tensor([getattr(plan, field) for plan in prepared.plans], dtype=torch.long)

        return Batch(
            prepared.captions, pixels, latents,
            sizes("original_size"), sizes("crop_top_left"), sizes("target_size"),
            prepared.paths, prepared.epoch, prepared.index,
        )  # fmt: skip

    def next_batch(self) -> Batch:
        epoch, position = self._advance(self._epoch, self._position)
        batch = self._finish(self._prepare(epoch, position))
        self._epoch, self._position = epoch, position + 1
        return batch

    def __iter__(self) -> Iterator[Batch]:
        if self.prefetch == 0:
            while True:
                yield self.next_batch()
        with ThreadPoolExecutor(self.prefetch, thread_name_prefix="animekit-data") as pool:
            pending: deque = deque()
            cursor = (self._epoch, self._position)
            while True:
                while len(pending) < self.prefetch:
                    cursor = self._advance(*cursor)
                    pending.append(pool.submit(self._prepare, *cursor))
                    cursor = (cursor[0], cursor[1] + 1)
                prepared = pending.popleft().result()
                batch = self._finish(prepared)
                self._epoch, self._position = prepared.epoch, prepared.index + 1
                yield batch
