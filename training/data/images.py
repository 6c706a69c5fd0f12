"""Turning an image file into a training sample: resize to cover the bucket, flip, crop.

The geometry (`plan_crop`) is separate from the pixels (`render`), so the latent cache can key a
sample and skip decoding the image on a hit. The sizes SDXL conditions on are the true ones:
original size after EXIF rotation, crop offset in the resized (and, if flipped, mirrored) image.
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageOps

from .dataset import ImageRecord

WHITE = (255, 255, 255, 255)


@dataclass(frozen=True)
class CropPlan:
    original_size: tuple[int, int]  # (height, width) of the file after EXIF rotation
    resized_size: tuple[int, int]  # (height, width) after resize-to-cover
    crop_top_left: tuple[int, int]  # (top, left) in the resized, possibly flipped, image
    target_size: tuple[int, int]  # (height, width) = bucket
    flipped: bool


@dataclass
class TrainingImage:
    pixels: torch.Tensor  # float32 [3, H, W] in [-1, 1], (H, W) = bucket
    original_size: tuple[int, int]
    crop_top_left: tuple[int, int]
    target_size: tuple[int, int]
    flipped: bool


def plan_crop(record: ImageRecord, flip: bool, random_crop: bool, rng: random.Random) -> CropPlan:
    """Scale so the image covers the bucket (rounding half up, as kohya), then pick the crop: centred
    (remainder // 2) or uniform with `random_crop`. Draws from `rng`: flip first, then the crop."""
    bucket_w, bucket_h = record.bucket
    scale = max(bucket_w / record.width, bucket_h / record.height)
    resized_w = max(bucket_w, int(record.width * scale + 0.5))
    resized_h = max(bucket_h, int(record.height * scale + 0.5))
    flipped = flip and rng.random() < 0.5
    spare_h, spare_w = resized_h - bucket_h, resized_w - bucket_w
    if random_crop:
        top, left = rng.randint(0, spare_h), rng.randint(0, spare_w)
    else:
        top, left = spare_h // 2, spare_w // 2
    return CropPlan((record.height, record.width), (resized_h, resized_w), (top, left), (bucket_h, bucket_w), flipped)


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB with transparency composited on white (anime cut-outs); 16-bit grey scaled to 8 bits."""
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE), rgba).convert("RGB")
    if img.mode.startswith("I") or img.mode == "F":
        img = img.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    return img.convert("RGB")


def open_rgb(path: str) -> Image.Image:
    """The image upright (EXIF orientation applied) in RGB; ValueError naming the file if unreadable."""
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(ImageOps.exif_transpose(img))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot read training image {path!r}: {exc}") from exc


def pixels_from(img: Image.Image) -> torch.Tensor:
    array = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def render(record: ImageRecord, plan: CropPlan) -> TrainingImage:
    img = open_rgb(record.path)
    if img.size != (record.width, record.height):
        warnings.warn(f"{record.path} is {img.size[0]}x{img.size[1]} now, {record.width}x{record.height} when scanned; rescan the dataset")
    resized_h, resized_w = plan.resized_size
    if img.size != (resized_w, resized_h):
        img = img.resize((resized_w, resized_h), Image.Resampling.LANCZOS)
    if plan.flipped:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    (top, left), (height, width) = plan.crop_top_left, plan.target_size
    img = img.crop((left, top, left + width, top + height))
    return TrainingImage(pixels_from(img), plan.original_size, plan.crop_top_left, plan.target_size, plan.flipped)


def load_training_image(record: ImageRecord, flip: bool, random_crop: bool, rng: random.Random) -> TrainingImage:
    return render(record, plan_crop(record, flip, random_crop, rng))
