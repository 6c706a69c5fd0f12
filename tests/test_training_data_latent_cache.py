"""Latent cache: hits and misses in memory and on disk, re-encoding when the key's inputs change."""

from __future__ import annotations

import os
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from animekit.training.data.dataset import BucketConfig, DatasetConfig, FolderSpec, scan_dataset
from animekit.training.data.images import load_training_image, plan_crop
from animekit.training.data.latent_cache import LatentCache, precompute_latents
from animekit.training.data.loader import BatchSource
from support.training_images import noise, write_image

BUCKETS = BucketConfig(resolution=64, min_size=32, max_size=128, step=16)


class FakeVAE:
    """Deterministic stand-in: 8x average pooling to 3 channels plus a constant 4th; counts images."""

    def __init__(self):
        self.encoded = 0

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        self.encoded += pixels.shape[0]
        pooled = torch.nn.functional.avg_pool2d(pixels, 8)
        return torch.cat([pooled, torch.ones_like(pooled[:, :1])], dim=1)


def make(tmp_path, **kwargs):
    for i, size in enumerate([(72, 48), (48, 72), (50, 50), (52, 52)]):
        if not (tmp_path / "data" / f"{i}.png").exists():
            write_image(tmp_path / "data" / f"{i}.png", size, caption=f"tag{i}")
    cfg = DatasetConfig((FolderSpec(str(tmp_path / "data")),), buckets=BUCKETS, batch_size=2, **kwargs)
    return cfg, scan_dataset(cfg)


def epoch_of(source):
    return [source.next_batch() for _ in range(source.batches_in_epoch())]


@pytest.mark.parametrize("mode", ["memory", "disk"])
def test_second_epoch_is_served_from_the_cache(tmp_path, mode):
    cfg, index = make(tmp_path)
    cache = LatentCache(mode, str(tmp_path / "cache") if mode == "disk" else None, vae_id="vae-a")
    vae = FakeVAE()
    source = BatchSource(index, cfg, encode_latents=vae, latent_cache=cache)
    first = epoch_of(source)
    assert vae.encoded == 4 and (cache.hits, cache.misses) == (0, 4) and len(cache) == 4
    second = epoch_of(source)
    assert vae.encoded == 4 and cache.hits == 4
    plain = BatchSource(index, cfg)
    for batch in second:
        reference = plain._finish(plain._prepare(batch.epoch, batch.index))
        assert batch.pixels is None and reference.paths == batch.paths
        assert torch.equal(batch.latents, vae(reference.pixels))
    assert sorted(p for b in first for p in b.paths) == sorted(p for b in second for p in b.paths)


def test_disk_entries_are_safetensors_and_survive_a_restart(tmp_path):
    cfg, index = make(tmp_path)
    folder = tmp_path / "cache"
    epoch_of(BatchSource(index, cfg, encode_latents=FakeVAE(), latent_cache=LatentCache("disk", str(folder), "vae-a")))
    files = sorted(folder.iterdir())
    assert len(files) == 4 and all(f.suffix == ".safetensors" and not f.name.startswith(".") for f in files)
    with safe_open(str(files[0]), "pt") as handle:
        assert handle.metadata() == {"format": "animekit-latents-v1", "vae_id": "vae-a"}
        assert list(handle.keys()) == ["latents"] and handle.get_tensor("latents").shape[0] == 4
    vae = FakeVAE()
    epoch_of(BatchSource(index, cfg, encode_latents=vae, latent_cache=LatentCache("disk", str(folder), "vae-a")))
    assert vae.encoded == 0


def test_a_damaged_disk_entry_is_a_miss_and_is_rewritten(tmp_path):
    cfg, index = make(tmp_path)
    cache = LatentCache("disk", str(tmp_path / "cache"), "vae-a")
    record = index.records[0]
    key = cache.key_for(record, plan_crop(record, False, False, random.Random(0)))
    cache.put(key, torch.ones(4, 6, 10))
    path = tmp_path / "cache" / f"{key}.safetensors"
    path.write_bytes(b"broken")
    assert cache.get(key) is None
    cache.put(key, torch.zeros(4, 6, 10))
    assert torch.equal(cache.get(key), torch.zeros(4, 6, 10))


def test_changed_image_other_vae_or_bucket_re_encode(tmp_path):
    cfg, index = make(tmp_path)
    cache = LatentCache("memory", vae_id="vae-a")
    vae = FakeVAE()
    assert precompute_latents(index, cfg, cache, vae, batch_size=3) == 4 and vae.encoded == 4
    assert precompute_latents(index, cfg, cache, vae) == 0 and vae.encoded == 4

    changed = index.records[2]
    stat = os.stat(changed.path)  # touched: same bytes, newer mtime
    os.utime(changed.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert precompute_latents(index, cfg, cache, vae) == 1 and vae.encoded == 5
    stat = os.stat(changed.path)  # rewritten with other bytes, mtime put back: the size still differs
    write_image(Path(changed.path), caption=None, image=noise(50, 50))
    os.utime(changed.path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert precompute_latents(index, cfg, cache, vae) == 1 and vae.encoded == 6

    other_vae = LatentCache("memory", vae_id="vae-b")
    other_vae._memory = cache._memory  # same store, other key space
    assert precompute_latents(index, cfg, other_vae, vae) == 4 and vae.encoded == 10

    moved = replace(index.records[3], bucket=(48, 80))
    image = load_training_image(moved, False, False, random.Random(0))
    assert cache.key_for(moved, image) != cache.key_for(index.records[3], plan_crop(index.records[3], False, False, None))
    assert cache.get(cache.key_for(moved, image)) is None


def test_flip_caches_both_orientations(tmp_path):
    cfg, index = make(tmp_path, flip=True)
    cache = LatentCache("memory", vae_id="vae-a")
    vae = FakeVAE()
    ticks = []
    assert precompute_latents(index, cfg, cache, vae, batch_size=2, progress=lambda done, total: ticks.append((done, total))) == 8
    assert ticks[-1] == (8, 8) and len(cache) == 8
    source = BatchSource(index, cfg, encode_latents=vae, latent_cache=cache)
    for _ in range(3):
        epoch_of(source)
    assert vae.encoded == 8 and cache.misses == 8  # only precompute's own look-ups missed


def test_cache_without_encoder_reports_the_missing_image(tmp_path):
    cfg, index = make(tmp_path)
    with pytest.raises(ValueError, match="no entry for .*png"):
        BatchSource(index, cfg, latent_cache=LatentCache("memory", vae_id="v")).next_batch()


def test_refusals(tmp_path):
    cfg, index = make(tmp_path, random_crop=True)
    with pytest.raises(ValueError, match="random_crop"):
        BatchSource(index, cfg, encode_latents=FakeVAE(), latent_cache=LatentCache("memory", vae_id="v"))
    with pytest.raises(ValueError, match="'memory' or 'disk'"):
        LatentCache("ram", vae_id="v")
    with pytest.raises(ValueError, match="folder"):
        LatentCache("disk", vae_id="v")
    with pytest.raises(ValueError, match="vae_id"):
        LatentCache("memory")


def test_ranks_share_the_precompute_work(tmp_path):
    cfg, index = make(tmp_path, flip=True)
    folder = str(tmp_path / "cache")
    vaes = [FakeVAE(), FakeVAE(), FakeVAE()]
    counts = [precompute_latents(index, cfg, LatentCache("disk", folder, "v"), vaes[r], rank=r, world_size=3) for r in range(3)]
    assert counts == [3, 3, 2] and [v.encoded for v in vaes] == [3, 3, 2]
    assert precompute_latents(index, cfg, LatentCache("disk", folder, "v"), vaes[0]) == 0
