"""The batch source: deterministic order, bitwise-exact resume, DDP sharding, prefetch."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from animekit.training.data.captions import CaptionConfig
from animekit.training.data.dataset import BucketConfig, DatasetConfig, FolderSpec, scan_dataset
from animekit.training.data.loader import BatchSource
from support.training_images import write_image

# buckets (48, 80), (64, 64), (80, 48), ... at step 16
BUCKETS = BucketConfig(resolution=64, min_size=32, max_size=128, step=16)
CAPTIONS = CaptionConfig(shuffle_caption=True, keep_tokens=1, caption_tag_dropout_rate=0.2, caption_dropout_rate=0.2)


def make_config(tmp_path, *, images: int = 11, batch_size: int = 2, seed: int = 7) -> DatasetConfig:
    if not (tmp_path / "plain").exists():
        sizes = [(72, 48), (48, 72), (50, 50)]
        for i in range(images):
            folder = "2_rep" if i % 4 == 0 else "plain"
            write_image(tmp_path / folder / f"{i:02d}.png", sizes[i % 3], caption=f"1girl, tag{i}, a, b, c, d")
    folders = (FolderSpec(str(tmp_path / "plain")), FolderSpec(str(tmp_path / "2_rep")))
    return DatasetConfig(folders, buckets=BUCKETS, captions=CAPTIONS, batch_size=batch_size, flip=True, seed=seed)


def source_for(cfg, **kwargs) -> BatchSource:
    return BatchSource(scan_dataset(cfg), cfg, **kwargs)


def take(source, n):
    return [source.next_batch() for _ in range(n)]


def assert_same(left, right):
    assert len(left) == len(right)
    for a, b in zip(left, right):
        assert (a.paths, a.captions, a.epoch, a.index) == (b.paths, b.captions, b.epoch, b.index)
        assert torch.equal(a.pixels, b.pixels)
        for name in ("original_size", "crop_top_left", "target_size"):
            assert torch.equal(getattr(a, name), getattr(b, name))


def test_batch_contents(tmp_path):
    cfg = make_config(tmp_path)
    source = source_for(cfg)
    assert source.batches_in_epoch() == 8  # buckets hold 5, 5, 4 occurrences -> 3 + 3 + 2 batches of 2
    batch = source.next_batch()
    size = len(batch.paths)
    assert batch.pixels.shape[:2] == (size, 3) and batch.latents is None
    assert batch.original_size.dtype == torch.long and batch.original_size.shape == (size, 2)
    height, width = batch.pixels.shape[-2:]
    assert batch.target_size.tolist() == [[height, width]] * size
    assert (batch.epoch, batch.index, source.epoch, source.position) == (1, 0, 1, 1)


def test_same_seed_same_sequence_other_seed_other_order(tmp_path):
    cfg = make_config(tmp_path)
    first, second = take(source_for(cfg), 20), take(source_for(cfg), 20)
    assert_same(first, second)
    assert [b.epoch for b in first] == [1] * 8 + [2] * 8 + [3] * 4
    assert [b.paths for b in first[:8]] != [b.paths for b in first[8:16]]  # reshuffled each epoch
    other = take(source_for(make_config(tmp_path, seed=8)), 8)
    assert [b.paths for b in other] != [b.paths for b in first[:8]]
    captions = [c for b in first for c in b.captions]
    assert "" in captions and len(set(captions)) > 20


@pytest.mark.parametrize("consumed", [3, 8, 13])  # mid-epoch, exactly at the epoch end, in epoch 2
def test_resume_is_bitwise_exact(tmp_path, consumed):
    cfg = make_config(tmp_path)
    original = source_for(cfg)
    take(original, consumed)
    state = json.loads(json.dumps(original.state_dict()))
    assert state["epoch"] == 1 + (consumed - 1) // 8 and state["position"] == (consumed - 1) % 8 + 1
    expected = take(original, 10)  # runs across the next epoch boundary
    resumed = source_for(cfg)
    resumed.load_state_dict(state)
    assert_same(take(resumed, 10), expected)


def test_state_end_of_epoch_rolls_over_lazily(tmp_path):
    source = source_for(make_config(tmp_path))
    take(source, 8)
    assert (source.epoch, source.position, source.end_of_epoch) == (1, 8, True)
    assert source.next_batch().epoch == 2
    assert (source.epoch, source.position, source.end_of_epoch) == (2, 1, False)


def test_bad_or_foreign_state(tmp_path):
    cfg = make_config(tmp_path)
    source = source_for(cfg)
    with pytest.raises(ValueError, match="needs version"):
        source.load_state_dict({"epoch": 1})
    with pytest.raises(ValueError, match="version"):
        source.load_state_dict({**source.state_dict(), "version": 99})
    with pytest.raises(ValueError, match="epoch"):
        source.load_state_dict({**source.state_dict(), "epoch": 0})
    with pytest.warns(UserWarning, match="changed since this state was saved"):
        source.load_state_dict({**source.state_dict(), "fingerprint": "other"})


@pytest.mark.parametrize("world_size", [2, 3])
def test_ddp_ranks_partition_the_global_order(tmp_path, world_size):
    cfg = make_config(tmp_path)
    single = take(source_for(cfg), 8)
    ranks = [source_for(cfg, rank=r, world_size=world_size) for r in range(world_size)]
    per_rank = -(-8 // world_size)
    assert all(r.batches_in_epoch() == per_rank for r in ranks)
    drawn = {}
    for rank, source in enumerate(ranks):
        for k, batch in enumerate(take(source, per_rank)):
            drawn[k * world_size + rank] = batch
    numbers = sorted(drawn)
    assert numbers == list(range(per_rank * world_size))  # every global batch once, no overlap
    assert_same([drawn[n] for n in range(8)], [_reindexed(b, n, world_size) for n, b in enumerate(single)])
    for n in range(8, per_rank * world_size):  # padding: the start of the epoch again, same images
        assert drawn[n].paths == single[n - 8].paths


def _reindexed(batch, number, world_size):
    batch.index = number // world_size
    return batch


def test_ddp_rank_validation(tmp_path):
    cfg = make_config(tmp_path)
    with pytest.raises(ValueError, match="rank"):
        source_for(cfg, rank=2, world_size=2)


def test_prefetch_gives_the_same_batches_and_state(tmp_path):
    cfg = make_config(tmp_path)
    expected = take(source_for(cfg), 12)
    source = source_for(cfg, prefetch=3)
    got = list(itertools.islice(iter(source), 12))
    assert_same(got, expected)
    assert (source.epoch, source.position) == (2, 4)


def test_encode_latents_without_cache(tmp_path):
    cfg = make_config(tmp_path)
    calls = []

    def encode(pixels):
        calls.append(pixels.shape)
        return torch.nn.functional.avg_pool2d(pixels, 8)

    batch = source_for(cfg, encode_latents=encode).next_batch()
    assert batch.pixels is None and len(calls) == 1
    plain = source_for(cfg).next_batch()
    assert torch.equal(batch.latents, torch.nn.functional.avg_pool2d(plain.pixels, 8))
