"""Buckets: kohya's rule through sizes/resolutions.py, no_upscale, batches from one bucket."""

from __future__ import annotations

from collections import Counter

import pytest

from animekit.sizes.resolutions import kohya_buckets, no_upscale_bucket
from animekit.training.data.dataset import BucketConfig, DatasetConfig, FolderSpec, bucket_for, scan_dataset
from animekit.training.data.loader import BatchSource
from support.training_images import write_image

# area 256², widths 128..512 step 64: the buckets are computed by hand in the test below
TINY = BucketConfig(resolution=256, min_size=128, max_size=512, step=64)


def test_tiny_bucket_set_is_kohyas():
    assert TINY.buckets() == [(128, 512), (128, 448), (128, 384), (192, 320), (256, 256), (320, 192), (384, 128), (448, 128), (512, 128)]


@pytest.mark.parametrize(
    "size, bucket",
    [
        ((300, 200), (320, 192)),  # aspect 1.5: |ln(1.667/1.5)| = 0.105 beats the square's 0.405
        ((200, 300), (192, 320)),
        ((100, 100), (256, 256)),  # smaller than the bucket: upscaled (kohya's default)
        ((4000, 1000), (512, 128)),  # aspect 4 exactly
        ((3400, 1000), (448, 128)),  # aspect 3.4: ln(3.5 / 3.4) = 0.029 beats ln(3.4 / 3) = 0.125
        ((1000, 3400), (128, 448)),
    ],
)
def test_bucket_by_nearest_log_aspect(size, bucket):
    assert bucket_for(*size, TINY) == bucket


@pytest.mark.parametrize(
    "size, kwargs, bucket",
    [
        ((1536, 1536), {}, (1024, 1024)),  # over the area: scaled to exactly 1024²
        ((1000, 700), {}, (960, 640)),  # under the area: floored to the step, never enlarged
        ((3000, 2000), {}, (1216, 832)),  # sqrt(1024² * 1.5) = 1254.1 -> 1216; sqrt(1024² / 1.5) = 836.1 -> 832
        ((4000, 500), {"max_size": 2048}, (2048, 320)),  # 2896 capped at max_size; 362 -> 320
        ((64, 200), {}, (64, 192)),
        ((63, 500), {}, None),  # narrower than one step
        ((100, 100), {"step": 32}, (96, 96)),
    ],
)
def test_no_upscale_bucket(size, kwargs, bucket):
    assert no_upscale_bucket(*size, 1024, **{"step": 64, **kwargs}) == bucket
    if bucket:
        assert bucket[0] * bucket[1] <= 1024 * 1024 and bucket[0] <= size[0] and bucket[1] <= size[1]


def test_no_upscale_rejects_bad_input():
    with pytest.raises(ValueError, match="step"):
        no_upscale_bucket(100, 100, 1024, step=30)
    with pytest.raises(ValueError, match="positive"):
        no_upscale_bucket(0, 100, 1024)


def test_existing_rule_unchanged():
    buckets = kohya_buckets(1024, 512, 2048, 64)
    assert (1024, 1024) in buckets and (832, 1216) in buckets and (1216, 832) in buckets
    assert all(w * h <= 1024 * 1024 and w % 64 == 0 and h % 64 == 0 for w, h in buckets)


def test_scan_assigns_buckets_and_no_upscale_skips_too_small(tmp_path):
    write_image(tmp_path / "wide.png", (300, 200))
    write_image(tmp_path / "small.png", (100, 70))
    write_image(tmp_path / "tiny.png", (40, 40))
    index = scan_dataset(DatasetConfig((FolderSpec(str(tmp_path)),), buckets=TINY))
    assert {r.path.rsplit("/", 1)[1]: r.bucket for r in index.records} == {"small.png": (320, 192), "tiny.png": (256, 256), "wide.png": (320, 192)}
    no_up = BucketConfig(resolution=256, min_size=128, max_size=512, step=64, no_upscale=True)
    # no_upscale never makes a bucket under min_size: 100x70 would be 64x64 < 128, so it is skipped too
    with pytest.warns(UserWarning, match="2 too small"):
        index = scan_dataset(DatasetConfig((FolderSpec(str(tmp_path)),), buckets=no_up))
    assert {r.path.rsplit("/", 1)[1]: r.bucket for r in index.records} == {"wide.png": (256, 192)}
    lower_min = BucketConfig(resolution=256, min_size=64, max_size=512, step=64, no_upscale=True)
    with pytest.warns(UserWarning, match="1 too small"):
        index = scan_dataset(DatasetConfig((FolderSpec(str(tmp_path)),), buckets=lower_min))
    assert {r.path.rsplit("/", 1)[1]: r.bucket for r in index.records} == {"small.png": (64, 64), "wide.png": (256, 192)}


def test_batches_come_from_one_bucket_and_repeats_hold(tmp_path):
    sizes = [(300, 200)] * 5 + [(200, 300)] * 3 + [(100, 100)] * 4
    for i, size in enumerate(sizes):
        write_image(tmp_path / ("3_rep" if i % 2 else "plain") / f"{i:02d}.png", size)
    cfg = DatasetConfig((FolderSpec(str(tmp_path / "plain")), FolderSpec(str(tmp_path / "3_rep"))), buckets=TINY, batch_size=4)
    index = scan_dataset(cfg)
    source = BatchSource(index, cfg)
    for epoch in (1, 2):
        order = source.global_order(epoch)
        occurrences = Counter(i for batch in order for i in batch)
        assert occurrences == {i: r.repeats for i, r in enumerate(index.records)}
        for batch in order:
            assert len({index.records[i].bucket for i in batch}) == 1 and 1 <= len(batch) <= 4
        per_bucket = Counter(index.records[b[0]].bucket for b in order)
        counts = index.bucket_counts()
        assert per_bucket == {bucket: -(-n // 4) for bucket, n in counts.items()}
    assert source.global_order(1) != source.global_order(2)
    for _ in range(source.batches_in_epoch()):
        batch = source.next_batch()
        height, width = batch.pixels.shape[-2:]
        assert all(tuple(t) == (height, width) for t in batch.target_size.tolist())
