"""Output checks made before any work starts, the same for every command and node that writes a file.

An output must never be one of the files the command reads (through a symlink or a hard link too), must
not be a folder, must be creatable, and must fit on the disk: finding out after a 10-minute merge loses
the work, and overwriting an input loses the user's file.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Mapping

HEADROOM = 16 << 20  # metadata, header rounding and the filesystem's own needs


def _same_file(a: Path, b: Path) -> bool:
    """True when both names are one file: equal resolved paths, or the same inode (hard links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def check_output_path(
    output: str | os.PathLike,
    inputs: Mapping[str, str | os.PathLike | None],
    *,
    overwrite: bool,
    suffix: str | None = None,
    overwrite_hint: str = "--overwrite",
) -> Path:
    """Refuse an output that is an input, a folder, an existing file (unless `overwrite`), or unwritable.

    `inputs` maps a label ("model A", "VAE file", "preset file", ...) to each path the job reads;
    `overwrite_hint` names the switch that allows overwriting where the caller is (a CLI flag or a node input).
    """
    out = Path(output)
    if out.is_dir():
        example = out / f"merged{suffix or ''}"
        raise IsADirectoryError(f"output {str(out)!r} is a folder; give a file name, e.g. {str(example)!r}")
    if suffix is not None and out.suffix.lower() != suffix:
        raise ValueError(f"output {str(out)!r} must end in {suffix}")
    for label, path in inputs.items():
        if path is not None and str(path) and _same_file(out, Path(path)):
            raise ValueError(f"output {str(out)!r} is {label}; inputs are never overwritten")
    if out.exists() and not overwrite:
        raise FileExistsError(f"output {str(out)!r} exists; choose another name or pass {overwrite_hint}")
    folder = _existing_ancestor(out.parent)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write in {str(folder)!r} (no write permission) for output {str(out)!r}")
    return out


def check_free_space(output: str | os.PathLike, needed: int) -> None:
    """Refuse before starting when the output (plus its temporary copy) cannot fit on its disk."""
    folder = _existing_ancestor(Path(output).parent)
    free = shutil.disk_usage(folder).free
    if free < needed + HEADROOM:
        raise OSError(
            errno.ENOSPC,
            f"not enough free disk space in {str(Path(output).parent)!r}: the output needs {needed / 1e9:.2f} GB, "
            f"{free / 1e9:.2f} GB are free",
        )


def _existing_ancestor(folder: Path) -> Path:
    probe = folder.resolve()
    while not probe.exists():
        probe = probe.parent
    return probe
