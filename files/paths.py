"""Folder-bound paths: a user-supplied name must never write outside the folder it belongs in."""

from __future__ import annotations

import os
from pathlib import Path


def resolve_inside(folder: str | os.PathLike, name: str | os.PathLike, *, what: str = "output path") -> Path:
    """Join `name` under `folder`, refusing anything (`..`, absolute paths, links) that escapes it."""
    base = Path(folder).resolve()
    target = (base / name).resolve()
    if target != base and base not in target.parents:
        raise ValueError(f"{what} {str(name)!r} escapes the folder {str(base)!r}; give a name inside it")
    return target
