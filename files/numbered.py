"""Numbered output names (`<prefix>_00001_.safetensors`, ComfyUI's style) that two writers at once never share.

Picking "the highest number + 1" races when two prompts, two ComfyUI instances or a node and a CLI
write into one folder: both pick the same number and the later rename replaces the other's file. A
writer therefore claims its number first with an exclusive `.<name>.claim` file that holds its pid;
numbers held by a claim are skipped, and a claim whose process is gone is removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from typing import Iterator

from .atomic import process_alive
from .paths import resolve_inside

CLAIM_SUFFIX = ".claim"
_EMPTY_CLAIM_GRACE_S = 10.0  # a claim still empty after this was left by a writer killed mid-claim


def _taken_numbers(folder: Path, stem: str, suffix: str) -> list[int]:
    """Numbers of finished files and of live claims; a dead writer's claim is removed on the way."""
    pattern = re.compile(rf"^(\.?){re.escape(stem)}_(\d{{5}})_{re.escape(suffix)}({re.escape(CLAIM_SUFFIX)})?$")
    taken = []
    for name in os.listdir(folder) if folder.is_dir() else []:
        match = pattern.match(name)
        if match is None or bool(match.group(1)) != bool(match.group(3)):
            continue
        if match.group(3) and _stale(folder / name):
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()
            continue
        taken.append(int(match.group(2)))
    return taken


def _stale(claim: Path) -> bool:
    try:
        text = claim.read_text(encoding="ascii").strip()
        age = time.time() - claim.stat().st_mtime
    except (OSError, UnicodeDecodeError):
        return False
    if not text:
        return age > _EMPTY_CLAIM_GRACE_S
    return text.isdigit() and not process_alive(int(text))


@contextlib.contextmanager
def claimed_numbered_path(folder: str | os.PathLike, prefix: str, *, suffix: str = ".safetensors",
                          what: str = "filename_prefix") -> Iterator[Path]:
    """Yield `<folder>/<prefix>_NNNNN_<suffix>` with a number no other writer holds; release it on exit.

    `prefix` may name subfolders but never escape `folder` (refused naming `what`)."""
    probe = resolve_inside(folder, f"{prefix}_00000_{suffix}", what=what)
    stem = probe.name[: -len(f"_00000_{suffix}")]
    probe.parent.mkdir(parents=True, exist_ok=True)
    while True:
        number = max(_taken_numbers(probe.parent, stem, suffix), default=0) + 1
        path = probe.parent / f"{stem}_{number:05d}_{suffix}"
        claim = path.with_name(f".{path.name}{CLAIM_SUFFIX}")
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue  # another writer claimed it just now: count again
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(str(os.getpid()))
        try:
            yield path
        finally:
            with contextlib.suppress(FileNotFoundError):
                claim.unlink()
        return
