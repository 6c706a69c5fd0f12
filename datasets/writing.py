"""Writing captions and sidecar files: atomically, and keeping the first original of a caption."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..files.atomic import atomic_output, remove_stale_partials

ORIGINAL_SUFFIX = ".orig"
_SWEPT: set[Path] = set()  # folders whose dead writers' partial files this process has removed


def original_path(path: Path) -> Path:
    """Where a caption's original is kept: `image.txt` -> `image.txt.orig` beside it."""
    return path.with_name(path.name + ORIGINAL_SUFFIX)


def _swept_once(folder: Path) -> None:
    """Sweep each folder once per process, not once per caption (a sweep lists the whole folder,
    which made rewriting 2,000 captions take 44 s instead of 25 s, and grows with the square)."""
    if folder not in _SWEPT:
        remove_stale_partials(folder)
        _SWEPT.add(folder)


def write_text_atomic(path: Path, text: str) -> None:
    _swept_once(path.parent)
    with atomic_output(path, sweep=False) as tmp:
        tmp.write_text(text, encoding="utf-8")


def replace_caption(path: Path, text: str) -> Path | None:
    """Write `text` to the caption `path`; the caption it replaces is first copied to
    `<caption>.orig` unless an original is already kept there (so reruns keep the first one).
    Returns the original's path when one was made."""
    kept = None
    if path.is_file():
        backup = original_path(path)
        if not backup.exists():
            _swept_once(path.parent)
            with atomic_output(backup, sweep=False) as tmp:
                shutil.copyfile(path, tmp)
            kept = backup
    write_text_atomic(path, text)
    return kept
