"""Whole-file sha256 (A1111's model hash, used in the merge metadata) without a second read.

`RunningSha256` is fed the bytes the merge reads anyway, in file order, and reads only the gaps
(bytes the merge skipped) itself. `BackgroundSha256` hashes a file on its own thread, for inputs
that are not read in file order (pickled checkpoints).
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Callable

BLOCK = 8 * 1024 * 1024


class BackgroundSha256:
    """Start hashing `path` now; `hexdigest()` waits for the result (and re-raises a read error)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._digest: str | None = None
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sha256-{self.path.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            digest = hashlib.sha256()
            buffer = bytearray(BLOCK)
            view = memoryview(buffer)
            with open(self.path, "rb", buffering=0) as handle:
                while not self._stop.is_set():
                    n = handle.readinto(buffer)
                    if not n:
                        break
                    digest.update(view[:n])
            if not self._stop.is_set():
                self._digest = digest.hexdigest()
        except BaseException as exc:  # reported by hexdigest()
            self._error = exc

    def hexdigest(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._digest is None:
            raise RuntimeError(f"hashing {self.path.name} was cancelled")
        return self._digest

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join()


def sha256_file(path: str | os.PathLike) -> str:
    return BackgroundSha256(path).hexdigest()


class RunningSha256:
    """sha256 of a `size`-byte file from reads fed in order; `read_into(view, offset)` fills gaps."""

    def __init__(self, size: int, read_into: Callable[[memoryview, int], None]):
        self._size = size
        self._read_into = read_into
        self._hash = hashlib.sha256()
        self._pos = 0
        self._gap_buffer: bytearray | None = None

    def feed(self, offset: int, data: memoryview) -> None:
        """Bytes at `offset`; a read behind the hashed position is ignored, one ahead of it first
        hashes the gap (so out-of-order reads cost extra reads, never a wrong hash)."""
        if offset > self._pos:
            self._catch_up(offset)
        end = offset + len(data)
        if offset <= self._pos < end:
            self._hash.update(data[self._pos - offset:])
            self._pos = end

    def _catch_up(self, upto: int) -> None:
        if self._gap_buffer is None:
            self._gap_buffer = bytearray(BLOCK)
        view = memoryview(self._gap_buffer)
        while self._pos < upto:
            n = min(BLOCK, upto - self._pos)
            self._read_into(view[:n], self._pos)
            self._hash.update(view[:n])
            self._pos += n

    def hexdigest(self) -> str:
        self._catch_up(self._size)
        return self._hash.hexdigest()
