"""Bucket arithmetic: kohya's aspect-ratio bucket rule and nearest-bucket by log aspect ratio.

Shared by the resolution nodes, the `animekit buckets` CLI and the trainer's bucketing, so a size
the user picks in the graph is exactly a size the trainer would have trained at.
"""

from __future__ import annotations

import math

Size = tuple[int, int]


def kohya_buckets(resolution: int, min_size: int, max_size: int, step: int = 64) -> list[Size]:
    """kohya sd-scripts' rule: area = resolution², each width from min to max in `step`s gets the
    largest height (a multiple of `step`, at most `max_size`) that keeps the area; both orientations
    and the square. Sorted by aspect ratio (width / height), portrait first."""
    for name, value in (("resolution", resolution), ("min_size", min_size), ("max_size", max_size), ("step", step)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if step % 8:
        raise ValueError(f"step must be a multiple of 8 (latent stride), got {step}")
    if min_size > max_size:
        raise ValueError(f"min_size ({min_size}) must not exceed max_size ({max_size})")
    if resolution > max_size:
        raise ValueError(f"resolution ({resolution}) must not exceed max_size ({max_size})")
    area = resolution * resolution
    side = resolution // step * step
    sizes: set[Size] = {(side, side)}
    width = min_size
    while width <= max_size:
        height = min(max_size, (area // width) // step * step)
        if height >= min_size:
            sizes.add((width, height))
            sizes.add((height, width))
        width += step
    return sorted(sizes, key=lambda s: (s[0] / s[1], s[0]))


def log_aspect(width: int, height: int) -> float:
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    return math.log(width / height)


def nearest_bucket(width: int, height: int, buckets: list[Size]) -> Size:
    """The bucket whose aspect ratio is closest in log space (symmetric for portrait and landscape);
    ties go to the larger bucket area."""
    if not buckets:
        raise ValueError("buckets must not be empty")
    target = log_aspect(width, height)
    return min(buckets, key=lambda b: (abs(log_aspect(*b) - target), -b[0] * b[1]))


def no_upscale_bucket(width: int, height: int, resolution: int, step: int = 64, max_size: int | None = None) -> Size | None:
    """kohya's `bucket_no_upscale`: the image's own bucket, never larger than the image.

    An image over the area `resolution²` is first scaled down (aspect kept) to that area; each side is
    then floored to a multiple of `step` (and capped at `max_size`), so the bucket fits inside the
    image and the area. None when a side is shorter than one `step` (too small to train on)."""
    log_aspect(width, height)
    if step <= 0 or step % 8:
        raise ValueError(f"step must be a positive multiple of 8 (latent stride), got {step}")
    area = resolution * resolution
    if width * height > area:  # floor(side * sqrt(area / (w * h))) in exact integer arithmetic
        width, height = math.isqrt(area * width // height), math.isqrt(area * height // width)
    cap = (max_size if max_size is not None else max(width, height)) // step * step
    bucket = (min(cap, width // step * step), min(cap, height // step * step))
    return bucket if min(bucket) >= step else None
