"""Tiny synthetic images and caption files for the training-data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def gradient(width: int, height: int) -> Image.Image:
    """R = x mod 256, G = y mod 256, B = 0: every pixel says where it came from."""
    ys, xs = np.mgrid[0:height, 0:width]
    array = np.stack([xs % 256, ys % 256, np.zeros_like(xs)], axis=-1).astype(np.uint8)
    return Image.fromarray(array, "RGB")


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    """Random pixels: incompressible, so a truncated file really lacks pixel data."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def write_image(path: Path, size=(64, 48), caption: str | None = "1girl, solo", image: Image.Image | None = None, **save) -> Path:
    """Save a gradient (or `image`) to `path` (format from the suffix) and, unless caption is None,
    a same-name .txt caption beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (image or gradient(*size)).save(path, **save)
    if caption is not None:
        path.with_suffix(".txt").write_text(caption, encoding="utf-8")
    return path
