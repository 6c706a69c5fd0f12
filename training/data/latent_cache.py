"""Caching VAE latents, in memory or on disk, keyed so stale entries are never used.

The key covers everything the latents depend on: the file (absolute path, size, mtime_ns), the
VAE (`vae_id`), the bucket and the exact crop and flip. A changed image, another VAE or another
bucket is simply a different key, so it is re-encoded; old disk entries are left to be cleaned up.
One entry is stored per (crop, flip) combination: with a centre crop that is one or two per image.
`random_crop` would give a new crop on nearly every draw, so caching refuses it (as kohya does).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from ...files.atomic import save_safetensors_atomic
from .dataset import DatasetConfig, DatasetIndex, ImageRecord
from .images import CropPlan, plan_crop, render

FORMAT = "animekit-latents-v1"


def check_latent_cache_allowed(cfg: DatasetConfig) -> None:
    if cfg.random_crop:
        raise ValueError(
            "latent caching needs a fixed crop, but random_crop draws a new crop every time an image is used "
            "(kohya refuses this combination too); turn off random_crop or latent caching"
        )


class LatentCache:
    """`get(key)` / `put(key, latents)` with keys from `key_for`; latents are stored on the CPU."""

    def __init__(self, mode: str, folder: str | None = None, vae_id: str = ""):
        if mode not in ("memory", "disk"):
            raise ValueError(f"latent cache mode must be 'memory' or 'disk', got {mode!r}")
        if mode == "disk" and not folder:
            raise ValueError("a disk latent cache needs a folder to store its files in")
        if not vae_id:
            raise ValueError("vae_id must name the VAE (e.g. its file hash) so another VAE's latents are never reused")
        self.mode, self.vae_id = mode, vae_id
        self.folder = Path(folder) if folder else None
        self._memory: dict[str, torch.Tensor] = {}
        self.hits = self.misses = 0

    def key_for(self, record: ImageRecord, image: CropPlan) -> str:
        """Key of one sample; `image` is a CropPlan or a TrainingImage (only crop and flip are read)."""
        path = os.path.abspath(record.path)
        stat = os.stat(path)
        parts = [path, stat.st_size, stat.st_mtime_ns, self.vae_id, list(record.bucket), list(image.crop_top_left), bool(image.flipped)]
        return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()

    def _file(self, key: str) -> Path:
        return self.folder / f"{key}.safetensors"

    def get(self, key: str) -> torch.Tensor | None:
        found = self._memory.get(key) if self.mode == "memory" else self._load(key)
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def _load(self, key: str) -> torch.Tensor | None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self._file(key)
        if not path.is_file():
            return None
        try:
            return load_file(str(path))["latents"]
        except (SafetensorError, OSError, KeyError):
            return None  # a damaged entry is a miss; put() replaces it

    def put(self, key: str, latents: torch.Tensor) -> None:
        stored = latents.detach().to("cpu").clone()
        if self.mode == "memory":
            self._memory[key] = stored
        else:
            save_safetensors_atomic({"latents": stored}, self._file(key), {"format": FORMAT, "vae_id": self.vae_id})

    def __len__(self) -> int:
        return len(self._memory) if self.mode == "memory" else sum(1 for _ in self.folder.glob("*.safetensors"))


def cache_plans(record: ImageRecord, cfg: DatasetConfig) -> list[CropPlan]:
    """Every (crop, flip) a centre-cropped record can be drawn with."""
    plan = plan_crop(record, False, False, None)
    return [plan, replace(plan, flipped=True)] if cfg.flip else [plan]


def precompute_latents(
    index: DatasetIndex,
    cfg: DatasetConfig,
    cache: LatentCache,
    encode_latents: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch_size: int = 4,
    progress: Callable[[int, int], None] | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> int:
    """Encode every sample not yet cached, a bucket at a time, before training (so the VAE can
    leave the GPU). `progress(done, total)` may raise to cancel. Returns how many were encoded.

    Under DDP each rank takes every world_size-th sample and encodes those not cached yet into a
    shared disk cache; wait for all ranks (a barrier) before training."""
    check_latent_cache_allowed(cfg)
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size), got rank={rank!r}, world_size={world_size!r}")
    samples = {}  # key -> (record, plan); the split between ranks must not depend on cache timing
    for record in index.records:
        for plan in cache_plans(record, cfg):
            samples.setdefault(cache.key_for(record, plan), (record, plan))
    todo: dict[tuple[int, int], list[tuple[str, ImageRecord, CropPlan]]] = {}
    for key, (record, plan) in list(samples.items())[rank::world_size]:
        if cache.get(key) is None:
            todo.setdefault(record.bucket, []).append((key, record, plan))
    total = sum(len(items) for items in todo.values())
    done = 0
    if progress is not None:
        progress(0, total)  # the bar shows before the first (slowest) batch
    for bucket in sorted(todo):
        items = todo[bucket]
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            pixels = torch.stack([render(record, plan).pixels for _, record, plan in chunk])
            latents = encode_latents(pixels)
            for (key, _, _), latent in zip(chunk, latents):
                cache.put(key, latent)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return total
