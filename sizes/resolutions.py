"""Bucket and size arithmetic: kohya's aspect-ratio bucket rule, nearest bucket by log aspect
ratio, size checks (multiples of 8), hires-fix targets, SDXL size conditioning and cover-crop boxes.

Shared by the resolution nodes, the `animekit buckets` CLI and the trainer's bucketing, so a size
the user picks in the graph is exactly a size the trainer would have trained at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    if resolution < step or min_size < step:
        raise ValueError(f"resolution ({resolution}) and min_size ({min_size}) must be at least one step ({step})")
    # kohya asserts the same: a side off the step grid would give buckets off the latent stride
    for name, value in (("min_size", min_size), ("max_size", max_size)):
        if value % step:
            raise ValueError(f"{name} must be a multiple of step ({step}), got {value}; "
                             f"nearest valid: {value // step * step} or {(value // step + 1) * step}")
    if resolution < min_size:
        raise ValueError(f"resolution ({resolution}) must be at least min_size ({min_size}): "
                         f"the square bucket would be smaller than the minimum")
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


def no_upscale_bucket(width: int, height: int, resolution: int, step: int = 64, max_size: int | None = None,
                      min_size: int | None = None) -> Size | None:
    """kohya's `bucket_no_upscale`: the image's own bucket, never larger than the image.

    An image over the area `resolution²` is first scaled down (aspect kept) to that area; each side is
    then floored to a multiple of `step` (and capped at `max_size`), so the bucket fits inside the
    image and the area. None when a side is shorter than one `step`, or than `min_size` when given
    (too small to train on: the smallest bucket is never below the requested minimum)."""
    log_aspect(width, height)
    if step <= 0 or step % 8:
        raise ValueError(f"step must be a positive multiple of 8 (latent stride), got {step}")
    area = resolution * resolution
    if width * height > area:  # floor(side * sqrt(area / (w * h))) in exact integer arithmetic
        width, height = math.isqrt(area * width // height), math.isqrt(area * height // width)
    cap = (max_size if max_size is not None else max(width, height)) // step * step
    bucket = (min(cap, width // step * step), min(cap, height // step * step))
    return bucket if min(bucket) >= max(step, min_size or 0) else None


def check_multiple(value: int, name: str, multiple: int = 8) -> int:
    """Latent sizes are image sizes / 8: anything else is cropped or padded by the VAE."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if value % multiple:
        raise ValueError(f"{name} must be a multiple of {multiple}, got {value}")
    return value


def parse_size(text: str, name: str = "size", multiple: int = 8) -> Size:
    """`832x1216` -> (832, 1216); both sides must be multiples of `multiple`."""
    parts = str(text).strip().lower().split("x")
    if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
        raise ValueError(f"{name} must look like WIDTHxHEIGHT (e.g. 832x1216), got {text!r}")
    width, height = (int(part) for part in parts)
    check_multiple(width, f"{name} width", multiple)
    check_multiple(height, f"{name} height", multiple)
    return width, height


def hires_size(width: int, height: int, scale: float, multiple: int = 8) -> Size:
    """Target of a hires-fix pass: the size times `scale`, each side rounded to the nearest
    `multiple` (8 for the latent stride, 64 to stay on the bucket grid)."""
    check_multiple(width, "width", 8)
    check_multiple(height, "height", 8)
    if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 1.0:
        raise ValueError(f"hires scale must be a number >= 1.0, got {scale!r}")
    if multiple <= 0 or multiple % 8:
        raise ValueError(f"hires multiple must be a positive multiple of 8, got {multiple}")

    def side(value: int) -> int:
        return max(multiple, int(math.floor(value * scale / multiple + 0.5)) * multiple)

    return side(width), side(height)


@dataclass(frozen=True)
class SizeConditioning:
    """SDXL micro-conditioning, named as CLIPTextEncodeSDXL's inputs: the size the image came from
    (width, height), where it was cropped (crop_w, crop_h) and the bucket it was made at
    (target_width, target_height)."""

    width: int
    height: int
    crop_w: int
    crop_h: int
    target_width: int
    target_height: int


def sdxl_size_conditioning(target: Size, original: Size | None = None, crop: tuple[int, int] = (0, 0)) -> SizeConditioning:
    """For generating at a bucket: original = target, no crop (what well-bucketed training data
    looked like). A trainer passes the image's own size and its crop offsets."""
    target_width, target_height = target
    check_multiple(target_width, "target width", 8)
    check_multiple(target_height, "target height", 8)
    width, height = original if original is not None else target
    crop_w, crop_h = crop
    for name, value in (("original width", width), ("original height", height)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for name, value in (("crop_w", crop_w), ("crop_h", crop_h)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return SizeConditioning(width, height, crop_w, crop_h, target_width, target_height)


def cover_crop_box(src_width: int, src_height: int, dst_width: int, dst_height: int) -> tuple[int, int, int, int]:
    """The centred region (left, top, width, height) of a source image with the target's aspect
    ratio: scaled to the target it covers it exactly, cropping the overhang evenly."""
    for name, value in (("source width", src_width), ("source height", src_height),
                        ("target width", dst_width), ("target height", dst_height)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if src_width * dst_height > src_height * dst_width:  # source wider than target: crop the sides
        width = max(1, min(src_width, round(src_height * dst_width / dst_height)))
        height = src_height
    else:
        width = src_width
        height = max(1, min(src_height, round(src_width * dst_height / dst_width)))
    return (src_width - width) // 2, (src_height - height) // 2, width, height
