"""Writing captions and sidecar files: atomically, and keeping the first original of a caption."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..files.atomic import atomic_output

ORIGINAL_SUFFIX = ".orig"


def original_path(path: Path) -> Path:
    """Where a caption's original is kept: `image.txt` -> `image.txt.orig` beside it."""
    return path.with_name(path.name + ORIGINAL_SUFFIX)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def replace_caption(path: Path, text: str) -> Path | None:
    """Write `text` to the caption `path`; the caption it replaces is first copied to
    `<caption>.orig` unless an original is already kept there (so reruns keep the first one).
    Returns the original's path when one was made."""
    kept = None
    if path.is_file():
        backup = original_path(path)
        if not backup.exists():
            with atomic_output(backup) as tmp:
                shutil.copyfile(path, tmp)
            kept = backup
    write_text_atomic(path, text)
    return kept
