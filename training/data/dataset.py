"""Scanning dataset folders into image records: size, caption, repeats and aspect-ratio bucket.

A broken image or a missing caption is skipped and counted in one warning, never fatal: a long run
must not die on file 9,000 of 10,000. Only a dataset with no usable image at all is an error.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image

from ...sizes.resolutions import kohya_buckets, nearest_bucket, no_upscale_bucket
from .captions import CaptionConfig
from .folders import expand_folder, list_images
from .scores import below_threshold
from .tags import split_tags

log = logging.getLogger(__name__)

_EXIF_ORIENTATION = 0x0112
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


@dataclass(frozen=True)
class FolderSpec:
    path: str
    repeats: int | None = None  # None: from a kohya "N_name" folder name, else 1
    caption_extension: str = ".txt"
    captions: CaptionConfig | None = None  # overrides DatasetConfig.captions for this folder


@dataclass(frozen=True)
class BucketConfig:
    resolution: int = 1024  # bucket area = resolution²
    min_size: int = 512
    max_size: int = 2048
    step: int = 64
    no_upscale: bool = False  # kohya bucket_no_upscale: each image its own bucket, never enlarged

    def __post_init__(self):
        kohya_buckets(self.resolution, self.min_size, self.max_size, self.step)  # validates the numbers

    def buckets(self) -> list[tuple[int, int]]:
        return kohya_buckets(self.resolution, self.min_size, self.max_size, self.step)


@dataclass(frozen=True)
class DatasetConfig:
    folders: tuple[FolderSpec, ...]  # plain paths are accepted and wrapped in FolderSpec
    buckets: BucketConfig = BucketConfig()
    captions: CaptionConfig = CaptionConfig()
    batch_size: int = 1
    flip: bool = False  # random horizontal flip
    random_crop: bool = False  # else centre crop
    seed: int = 0
    verify_images: bool = True  # decode each image once while scanning, so broken files are skipped up front
    min_aesthetic_score: float | None = None  # train only on images scored at least this (scores.py); None: all

    def __post_init__(self):
        specs = tuple(f if isinstance(f, FolderSpec) else FolderSpec(str(f)) for f in self.folders)
        object.__setattr__(self, "folders", specs)
        if not self.folders:
            raise ValueError("dataset needs at least one folder")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        score = self.min_aesthetic_score
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float)) or score != score):
            raise ValueError(f"min_aesthetic_score must be a number (or unset), got {score!r}")


@dataclass(frozen=True)
class ImageRecord:
    path: str
    caption: str  # raw caption text; processed per draw
    repeats: int
    width: int  # on-disk size after EXIF rotation
    height: int
    folder: str
    bucket: tuple[int, int]  # (width, height)
    captions: CaptionConfig = CaptionConfig()  # the caption pipeline for this image's folder


@dataclass
class DatasetIndex:
    records: list[ImageRecord]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def tag_frequency(self) -> dict[str, dict[str, int]]:
        """Folder name -> lower-cased tag -> number of images with it (kohya's ss_tag_frequency)."""
        result: dict[str, dict[str, int]] = {}
        for record in self.records:
            cfg = record.captions
            text = record.caption.replace(cfg.keep_tokens_separator, cfg.caption_separator) if cfg.keep_tokens_separator else record.caption
            counts = result.setdefault(Path(record.folder).name, {})
            for tag in dict.fromkeys(t.lower() for t in split_tags(text, cfg.caption_separator)):
                counts[tag] = counts.get(tag, 0) + 1
        return result

    def bucket_counts(self) -> dict[tuple[int, int], int]:
        """Bucket -> image occurrences per epoch (repeats included), as kohya reports them."""
        counts: Counter = Counter()
        for record in self.records:
            counts[record.bucket] += record.repeats
        return dict(sorted(counts.items()))


def above_aesthetic_threshold(index: DatasetIndex, threshold: float) -> DatasetIndex:
    """The images scored at least `threshold` (scores.py); the rest move to `skipped` with the
    reason, and no file is touched."""
    left_out = below_threshold([record.path for record in index.records], threshold)
    kept = [record for record in index.records if record.path not in left_out]
    return DatasetIndex(kept, list(index.skipped) + list(left_out.items()))


def bucket_for(width: int, height: int, cfg: BucketConfig, buckets: list[tuple[int, int]] | None = None):
    """The training bucket (width, height) for an image; None when no_upscale finds it too small."""
    if cfg.no_upscale:
        return no_upscale_bucket(width, height, cfg.resolution, cfg.step, cfg.max_size, cfg.min_size)
    return nearest_bucket(width, height, buckets if buckets is not None else cfg.buckets())


def probe_image(path: Path, verify: bool) -> tuple[int, int]:
    """(width, height) as the image will be seen, i.e. after EXIF rotation; with `verify` the pixels
    are decoded too (JPEGs at 1/8 scale) so a truncated file fails here rather than mid-training."""
    with Image.open(path) as img:
        width, height = img.size
        if verify:
            if img.format == "JPEG":
                img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            img.load()
        # Pillow decodes a whole PNG to look for an eXIf chunk after the pixels; skip that unloaded.
        late_png_exif = img.format == "PNG" and not verify and "exif" not in img.info
        orientation = 1 if late_png_exif else img.getexif().get(_EXIF_ORIENTATION, 1)
    return (height, width) if orientation in _ROTATED else (width, height)


def read_caption(image: Path, extension: str) -> str:
    """The first non-empty line of the same-name caption file (kohya reads the first line)."""
    ext = extension if extension.startswith(".") else f".{extension}"
    with open(image.with_suffix(ext), encoding="utf-8-sig") as handle:
        for line in handle:
            if line.strip():
                return line.strip()
    return ""


def _inspect(task) -> tuple[ImageRecord | None, str | None]:
    image, folder, repeats, spec, captions, bucket_cfg, buckets, verify = task
    try:
        caption = read_caption(image, spec.caption_extension)
    except FileNotFoundError:
        return None, "missing caption"
    except (UnicodeDecodeError, OSError) as exc:
        return None, f"unreadable caption: {exc}"
    try:
        width, height = probe_image(image, verify)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "skip this file"
        return None, f"unreadable image: {type(exc).__name__}: {exc}"
    bucket = bucket_for(width, height, bucket_cfg, buckets)
    if bucket is None:
        return None, (f"too small: {width}x{height} gives a bucket under min_size ({bucket_cfg.min_size}) "
                      f"or one step ({bucket_cfg.step}) with no_upscale")
    return ImageRecord(str(image), caption, repeats, width, height, str(folder), bucket, captions), None


def scan_dataset(cfg: DatasetConfig, progress: Callable[[int, int], None] | None = None) -> DatasetIndex:
    """Index every image of every folder; ValueError naming the folders when none is usable.
    `progress(done, total)` counts the images inspected (size read, caption found)."""
    tasks, seen = [], set()
    buckets = None if cfg.buckets.no_upscale else cfg.buckets.buckets()
    for spec in cfg.folders:
        captions = spec.captions or cfg.captions
        for folder, repeats in expand_folder(spec.path, spec.repeats):
            key = folder.resolve()
            if key in seen:
                continue
            seen.add(key)
            for image in list_images(folder):
                tasks.append((image, folder, repeats, spec, captions, cfg.buckets, buckets, cfg.verify_images))
    workers = max(1, min(8, os.cpu_count() or 1))
    results = []
    if progress is not None:
        progress(0, len(tasks))
    with ThreadPoolExecutor(workers) as pool:
        for result in pool.map(_inspect, tasks):
            results.append(result)
            if progress is not None:
                progress(len(results), len(tasks))
    records = [record for record, _ in results if record is not None]
    skipped = [(str(task[0]), reason) for task, (_, reason) in zip(tasks, results) if reason is not None]
    if cfg.min_aesthetic_score is not None:
        filtered = above_aesthetic_threshold(DatasetIndex(records), cfg.min_aesthetic_score)
        records, skipped = filtered.records, skipped + filtered.skipped
    if skipped:
        reasons = Counter(reason.split(":")[0] for _, reason in skipped)
        summary = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items()))
        message = f"dataset: skipped {len(skipped)} of {len(tasks)} images ({summary}); first: {skipped[0][0]} ({skipped[0][1]})"
        log.warning(message)
        warnings.warn(message, stacklevel=2)
    if not records:
        names = ", ".join(repr(spec.path) for spec in cfg.folders)
        detail = f"; {len(skipped)} skipped, e.g. {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
        raise ValueError(f"no usable image (png/jpg/webp with a caption file) in dataset folders {names}{detail}")
    return DatasetIndex(records, skipped)
