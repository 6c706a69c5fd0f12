"""Atomic file output shared by every feature.

A crash, a cancel or a full disk must never leave a half-written model where a finished one is expected.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator


PARTIAL_SUFFIX = ".partial"
# `.<name>.pid<PID>.<random>.partial`: the owner's pid lets a later run tell a dead process's leftovers
# (kill -9, power loss) from a live writer's file in the same folder.
_PARTIAL_NAME = re.compile(r"^\..+\.pid(\d+)\.[^.]+\.partial$")


def process_alive(pid: int) -> bool:
    """True while a process with this pid exists (signal 0 probes without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_partials(folder: str | os.PathLike) -> list[Path]:
    """Delete temporary outputs in `folder` whose writing process is gone; never a live one's."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _PARTIAL_NAME.match(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or process_alive(pid):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def _read_umask() -> int:
    """The process umask. Linux shows it in /proc without changing it; elsewhere it can only be read
    by setting it, which is done once here, at import, before a host such as ComfyUI runs threads
    (setting it per file would let another thread create a file under a temporary mask)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # the most private mask for the instant it is set
    os.umask(mask)
    return mask


UMASK = _read_umask()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, sweep: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success fsync it and rename it over `path`.

    On any exception the temporary file is removed and `path` is left untouched. `sweep=False`
    skips removing dead writers' partial files from the folder, for a caller writing many small
    files there that has swept it once itself (a sweep lists the whole folder).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    if sweep:
        remove_stale_partials(final.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.pid{os.getpid()}.", suffix=PARTIAL_SUFFIX, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _apply_umask(tmp)  # after the writer: some (safetensors) replace the file they were given
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        with contextlib.suppress(OSError):
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _apply_umask(path: Path) -> None:
    """mkstemp makes owner-only files; a finished model should get the usual permissions."""
    os.chmod(path, 0o666 & ~UMASK)


def save_safetensors_atomic(tensors: dict, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Write a safetensors file atomically (tensors are made contiguous; metadata values must be str)."""
    from safetensors.torch import save_file

    clean = {k: v.contiguous() for k, v in tensors.items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    with atomic_output(path) as tmp:
        save_file(clean, str(tmp), metadata=meta)
    return Path(path)
