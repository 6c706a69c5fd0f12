"""One folder of captioned images made ready to train: found, checked, scanned and summarised once.

What the Dataset node does with a folder, without ComfyUI: a relative folder is taken inside the
host's input folder (never outside it), kohya's usual bucket bounds fill in what the user left at
0, the commonest mistakes get their own error before the slower scan, images too small for every
bucket are skipped, and the result travels as a `DatasetSpec` with its summary text.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from ...files.paths import resolve_inside
from .captions import CaptionConfig
from .dataset import BucketConfig, DatasetConfig, DatasetIndex, FolderSpec, above_aesthetic_threshold, scan_dataset
from .folders import expand_folder, list_images
from .summary import describe


@dataclass(frozen=True)
class DatasetSpec:
    """A scanned folder for the trainer: its settings, the images found, and its summary."""

    config: DatasetConfig
    index: DatasetIndex
    folder: Path
    preview: str


def resolve_folder(folder: str, input_root: str | Path) -> Path:
    """An absolute folder as is; anything else inside `input_root` (never outside it)."""
    text = (folder or "").strip()
    if not text:
        raise ValueError("folder: empty; give a folder inside ComfyUI's input folder (e.g. `my_character`) or an absolute path")
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = resolve_inside(input_root, text, what="folder")
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


def check_captions(folder: Path, repeats: int | None, extension: str) -> None:
    """Clear errors for the two commonest mistakes (no images, no captions), before the slower scan."""
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
    folder: Path,
    *,
    repeats: int,
    caption_extension: str,
    buckets: BucketConfig,
    captions: CaptionConfig,
    flip: bool,
    random_crop: bool,
) -> DatasetSpec:
    """Scan `folder` (a resolved path; `repeats` 0 = from kohya `N_name` folder names, else 1)."""
    count = None if repeats == 0 else repeats
    check_captions(folder, count, caption_extension)
    config = DatasetConfig(
        folders=(FolderSpec(str(folder), repeats=count, caption_extension=caption_extension),),
        buckets=buckets,
        captions=captions,
        flip=flip,
        random_crop=random_crop,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped files are listed in the summary instead
        index = scan_dataset(config)
    index = drop_too_small(index, buckets)
    return DatasetSpec(config, index, folder, describe(index, config, folder))


def above_aesthetic_score(spec: DatasetSpec, threshold: float) -> DatasetSpec:
    """The scanned dataset limited to images scored at least `threshold` (nothing is deleted); the
    config records the threshold and the summary says how many were left out."""
    index = above_aesthetic_threshold(spec.index, threshold)
    left_out = [(path, why) for path, why in index.skipped if why.startswith(("below aesthetic", "no aesthetic"))]
    if not index.records:
        raise ValueError(f"min_aesthetic_score: no image scores {threshold:g} or more ({len(left_out)} left out, e.g. "
                         f"{left_out[0][0]}: {left_out[0][1]}); lower it or score the folder (AnimeKit Score Images)")
    line = (f"aesthetic score >= {threshold:g}: training on {len(index.records)} of {len(spec.index.records)} images; "
            f"{len(left_out)} left out (not deleted)")  # fmt: skip
    config = dataclasses.replace(spec.config, min_aesthetic_score=threshold)
    return dataclasses.replace(spec, config=config, index=index, preview=f"{spec.preview}\n{line}")


def folder_fingerprint(folder: Path) -> str:
    """Changes when a file in the folder (or its `N_name` subfolders) is added, removed or edited."""
    digest = hashlib.sha256()
    for sub in [folder] + sorted(p for p in folder.iterdir() if p.is_dir()):
        for entry in sorted(os.scandir(sub), key=lambda e: e.name):
            if entry.is_file():
                stat = entry.stat()
                digest.update(f"{sub.name}/{entry.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
