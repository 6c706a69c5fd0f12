"""The AnimeKit Dataset node's folder: taken inside ComfyUI's input folder, then the core's work.

Resolving, checking, scanning and the summary text are training/data/folder_dataset.py's; the
scanned index travels to the trainer nodes inside its `DatasetSpec` (the ANIMEKIT_DATASET socket),
so a large folder is read once per change, not once per node.
"""

from __future__ import annotations

from pathlib import Path

import folder_paths

from ...training.data import folder_dataset
from ...training.data.captions import CaptionConfig
from ...training.data.dataset import BucketConfig
from ...training.data.folder_dataset import DatasetSpec, bucket_config

__all__ = ["DatasetSpec", "bucket_config", "build_dataset", "folder_fingerprint", "resolve_folder"]


def resolve_folder(folder: str) -> Path:
    return folder_dataset.resolve_folder(folder, folder_paths.get_input_directory())


def build_dataset(
    folder: str, *, repeats: int, caption_extension: str, buckets: BucketConfig, captions: CaptionConfig, flip: bool,
    random_crop: bool,
) -> DatasetSpec:  # fmt: skip
    return folder_dataset.build_dataset(
        resolve_folder(folder), repeats=repeats, caption_extension=caption_extension, buckets=buckets,
        captions=captions, flip=flip, random_crop=random_crop,
    )  # fmt: skip


def folder_fingerprint(folder: str) -> str:
    """Re-scan when a file in the folder changes, not only when the inputs do."""
    try:
        path = resolve_folder(folder)
    except ValueError as exc:
        return f"error:{exc}"
    return folder_dataset.folder_fingerprint(path)
