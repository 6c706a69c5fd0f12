"""The AnimeKit Dataset node's work: resolve the folder, scan it once, refuse bad input, describe it.

The scanned index travels to the trainer nodes inside a `DatasetSpec` (the ANIMEKIT_DATASET
socket), so a large folder is read once per change, not once per node.
"""

from __future__ import annotations

import hashlib
import os
import random
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import folder_paths

from ...files.paths import resolve_inside
from ...training.data.captions import CaptionConfig, process_caption
from ...training.data.dataset import BucketConfig, DatasetConfig, DatasetIndex, FolderSpec, scan_dataset
from ...training.data.folders import expand_folder, list_images

PREVIEW_TAGS = 15
PREVIEW_SKIPPED = 5


@dataclass(frozen=True)
class DatasetSpec:
    """What the Dataset node hands the trainer: settings, the scanned images, and its description."""

    config: DatasetConfig
    index: DatasetIndex
    folder: Path
    preview: str


def resolve_folder(folder: str) -> Path:
    """An absolute folder as is; anything else inside ComfyUI's input folder (never outside it)."""
    text = (folder or "").strip()
    if not text:
        raise ValueError("folder: empty; give a folder inside ComfyUI's input folder (e.g. `my_character`) or an absolute path")
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = resolve_inside(folder_paths.get_input_directory(), text, what="folder")
    if not path.exists():
        raise ValueError(f"folder: {str(path)!r} does not exist")
    if not path.is_dir():
        raise ValueError(f"folder: {str(path)!r} is not a folder")
    return path


def bucket_config(resolution: int, min_size: int, max_size: int, step: int, no_upscale: bool) -> BucketConfig:
    """Buckets around `resolution`; 0 for a bound means kohya's usual half / double of it."""
    low = min_size or max(step, (resolution // 2) // step * step)
    high = max_size or resolution * 2
    try:
        return BucketConfig(resolution=resolution, min_size=low, max_size=high, step=step, no_upscale=no_upscale)
    except ValueError as exc:
        raise ValueError(f"buckets (resolution {resolution}, min_bucket_size {low}, max_bucket_size {high}, bucket_step {step}): {exc}") from None


def _check_captions(folder: Path, repeats: int | None, extension: str) -> None:
    """Clear errors for the two commonest mistakes, before the (slower) scan."""
    images = [image for sub, _ in expand_folder(str(folder), repeats) for image in list_images(sub)]
    if not images:
        raise ValueError(f"folder: no images (png, jpg, webp, bmp) in {str(folder)!r} or its kohya `N_name` subfolders")
    ext = extension if extension.startswith(".") else f".{extension}"
    if not any(image.with_suffix(ext).is_file() for image in images):
        raise ValueError(
            f"folder: none of the {len(images)} images in {str(folder)!r} has a caption file "
            f"(e.g. {images[0].with_suffix(ext).name}); write one tag caption per image or set caption_extension"
        )


def drop_too_small(index: DatasetIndex, buckets: BucketConfig) -> DatasetIndex:
    """Skip images smaller than the smallest bucket on both sides (they would be blown up to train)."""
    least = buckets.step if buckets.no_upscale else buckets.min_size
    kept, skipped = [], list(index.skipped)
    for record in index.records:
        if record.width < least and record.height < least:
            skipped.append((record.path, f"too small: {record.width}x{record.height} is under the smallest bucket side {least}"))
        else:
            kept.append(record)
    if not kept:
        raise ValueError(
            f"folder: every image is smaller than the smallest bucket side ({least} px); lower resolution / "
            f"min_bucket_size or use larger images (e.g. {Path(index.records[0].path).name} is "
            f"{index.records[0].width}x{index.records[0].height})"
        )
    return DatasetIndex(kept, skipped)


def build_dataset(
    folder: str,
    *,
    repeats: int,
    caption_extension: str,
    buckets: BucketConfig,
    captions: CaptionConfig,
    flip: bool,
    random_crop: bool,
) -> DatasetSpec:
    path = resolve_folder(folder)
    count = None if repeats == 0 else repeats
    _check_captions(path, count, caption_extension)
    config = DatasetConfig(
        folders=(FolderSpec(str(path), repeats=count, caption_extension=caption_extension),),
        buckets=buckets,
        captions=captions,
        flip=flip,
        random_crop=random_crop,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped files are listed in the preview instead
        index = scan_dataset(config)
    index = drop_too_small(index, buckets)
    return DatasetSpec(config, index, path, describe(index, config, path))


def describe(index: DatasetIndex, config: DatasetConfig, folder: Path) -> str:
    records = index.records
    per_epoch = sum(r.repeats for r in records)
    lines = [f"{len(records)} images in {folder} ({per_epoch} samples per epoch with repeats)"]
    groups = Counter((Path(r.folder).name, r.repeats) for r in records)
    lines.append("folders: " + ", ".join(f"{name} ({n} x {rep})" for (name, rep), n in sorted(groups.items())))
    b = config.buckets
    bounds = "no upscale" if b.no_upscale else f"{b.min_size}..{b.max_size}"
    counts = sorted(index.bucket_counts().items(), key=lambda item: -item[1])
    lines.append(
        f"buckets (resolution {b.resolution}, {bounds}, step {b.step}): "
        + ", ".join(f"{w}x{h}: {n}" for (w, h), n in counts)
    )
    tags: Counter = Counter()
    for folder_tags in index.tag_frequency().values():
        tags.update(folder_tags)
    if tags:
        lines.append("top tags: " + ", ".join(f"{tag} ({n})" for tag, n in tags.most_common(PREVIEW_TAGS)))
    if index.skipped:
        shown = "; ".join(f"{Path(p).name}: {why}" for p, why in index.skipped[:PREVIEW_SKIPPED])
        more = f" (+{len(index.skipped) - PREVIEW_SKIPPED} more)" if len(index.skipped) > PREVIEW_SKIPPED else ""
        lines.append(f"skipped {len(index.skipped)}: {shown}{more}")
    example = records[0]
    drawn = process_caption(example.caption, example.captions, random.Random(0), 1)
    lines.append(f"caption as trained (one draw): {drawn!r}" if drawn else "caption as trained (one draw): '' (dropped)")
    return "\n".join(lines)


def folder_fingerprint(folder: str) -> str:
    """Changes when a file in the folder (or its `N_name` subfolders) is added, removed or edited."""
    try:
        path = resolve_folder(folder)
    except ValueError as exc:
        return f"error:{exc}"
    digest = hashlib.sha256()
    for sub in [path] + sorted(p for p in path.iterdir() if p.is_dir()):
        for entry in sorted(os.scandir(sub), key=lambda e: e.name):
            if entry.is_file():
                stat = entry.stat()
                digest.update(f"{sub.name}/{entry.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
