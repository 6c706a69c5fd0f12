"""Dataset folder layout: kohya's `N_name` repeat folders and the image files inside them."""

from __future__ import annotations

import re
from pathlib import Path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_REPEAT_NAME = re.compile(r"^(\d+)_(.+)$")


def parse_repeats(name: str) -> int | None:
    """`10_mychar` -> 10 (kohya DreamBooth folders); None when the name has no repeat count."""
    match = _REPEAT_NAME.match(name)
    return int(match.group(1)) if match else None


def expand_folder(path: str, repeats: int | None) -> list[tuple[Path, int]]:
    """The folders one dataset entry stands for, with their repeats.

    The folder itself, with `repeats`, or, when that is None, the count in its `N_name` name (else 1).
    Subfolders named `N_name` are added as kohya repeat folders, so pointing at kohya's parent
    `train_data_dir` works; other subfolders are not searched.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"dataset folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise ValueError(f"dataset folder {str(root)!r} is not a folder")
    if repeats is not None and (not isinstance(repeats, int) or repeats < 1):
        raise ValueError(f"repeats for {str(root)!r} must be a positive integer, got {repeats!r}")
    own = repeats if repeats is not None else (parse_repeats(root.name) or 1)
    found = [(root, own)]
    for child in sorted(root.iterdir()):
        count = parse_repeats(child.name)
        if child.is_dir() and count:
            found.append((child, count))
    return found


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name so scans are reproducible."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
