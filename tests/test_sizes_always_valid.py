"""Every bucket, latent and image size the pack produces is a multiple of 8 (the latent stride) and
never below the requested minimum, or the input is refused by name: whatever resolution, min, max
and step the user gives (issue: sizes are always valid)."""

from __future__ import annotations

import itertools

import pytest

from animekit.sizes.resolutions import hires_size, kohya_buckets, no_upscale_bucket

RESOLUTIONS = (256, 500, 512, 640, 768, 1000, 1024)
MINS = (128, 200, 256, 320, 384, 512, 576)
MAXES = (512, 700, 768, 1024, 1100, 1536, 2048)
STEPS = (8, 12, 16, 32, 60, 64)


def _checked(resolution, min_size, max_size, step):
    try:
        return kohya_buckets(resolution, min_size, max_size, step)
    except ValueError as exc:
        message = str(exc)
        assert any(name in message for name in ("resolution", "min_size", "max_size", "step")), message
        return None


def test_every_bucket_is_on_the_latent_grid_and_inside_min_max_or_refused():
    produced = refused = 0
    for resolution, min_size, max_size, step in itertools.product(RESOLUTIONS, MINS, MAXES, STEPS):
        buckets = _checked(resolution, min_size, max_size, step)
        if buckets is None:
            refused += 1
            continue
        produced += 1
        for width, height in buckets:
            assert width % 8 == 0 and height % 8 == 0, (resolution, min_size, max_size, step, width, height)
            assert min(width, height) >= min_size, (resolution, min_size, max_size, step, width, height)
            assert max(width, height) <= max_size, (resolution, min_size, max_size, step, width, height)
    assert produced > 100 and refused > 100  # both branches exercised


@pytest.mark.parametrize(
    "args, fragment",
    [
        ((1024, 500, 2048, 64), "min_size must be a multiple of step (64), got 500; nearest valid: 448 or 512"),
        ((1024, 512, 2000, 64), "max_size must be a multiple of step (64), got 2000"),
        ((512, 768, 1024, 64), "resolution (512) must be at least min_size (768)"),
        ((1024, 512, 2048, 60), "step must be a multiple of 8"),
    ],
)
def test_off_grid_settings_are_refused_by_name(args, fragment):
    with pytest.raises(ValueError) as info:
        kohya_buckets(*args)
    assert fragment in str(info.value)


def test_no_upscale_bucket_is_never_below_the_minimum():
    for width, height in itertools.product((100, 300, 511, 512, 700, 1500), repeat=2):
        bucket = no_upscale_bucket(width, height, 1024, 64, 2048, min_size=512)
        if bucket is not None:
            assert min(bucket) >= 512 and bucket[0] % 8 == 0 and bucket[1] % 8 == 0
            assert bucket[0] <= width and bucket[1] <= height
    assert no_upscale_bucket(700, 300, 1024, 64, 2048, min_size=512) is None
    assert no_upscale_bucket(700, 300, 1024, 64, 2048) == (640, 256)


def test_hires_sizes_stay_on_the_grid():
    for width, height, scale, multiple in itertools.product((512, 832, 1216), (512, 768), (1.0, 1.25, 1.5, 1.7), (8, 64)):
        w, h = hires_size(width, height, scale, multiple)
        assert w % multiple == 0 and h % multiple == 0
