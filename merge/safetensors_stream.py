"""Read and write safetensors files tensor by tensor, in bounded memory.

The header is parsed and checked against the file size by files.safetensors_header, so a truncated
or corrupt file fails before anything is merged. Tensors are read with
explicit ``preadv`` calls into caller-owned buffers instead of mmap, because mapped pages count in
the process's resident memory, and reused buffers avoid a page fault per freshly allocated page.
The writer lays the header out first from shapes and output dtypes, then takes tensor bytes in order.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

from ..files.hashing import QueuedSha256
from ..files.safetensors_header import DTYPES, TensorInfo, itemsize, parse_header

if TYPE_CHECKING:  # imported when tensors are read, so headers and plans need no torch
    import torch

READAHEAD = 128 * 1024 * 1024  # per input: enough queued reads to ride out a slow slice
WARM_UP_BYTES = 256 * 1024 * 1024
_HAS_PREADV = hasattr(os, "preadv")
_HAS_FADVISE = hasattr(os, "posix_fadvise")


def _nothing() -> None:
    pass


def torch_dtype(code: str) -> "torch.dtype":
    import torch

    return getattr(torch, DTYPES[code][0])


def code_of(dtype: "torch.dtype") -> str | None:
    """The safetensors code of a torch dtype (None if safetensors has none)."""
    name = str(dtype).removeprefix("torch.")
    return next((code for code, (torch_name, _) in DTYPES.items() if torch_name == name), None)


class SafetensorsFile:
    """One safetensors input: its checked header, and reads of whole tensors or element ranges."""

    def __init__(self, path: str | os.PathLike, *, label: str | None = None):
        self.path = Path(path)
        self.label = label or self.path.name
        self._lock = threading.Lock()
        self._hash: QueuedSha256 | None = None
        self._hinted = 0
        try:
            self._file = open(self.path, "rb", buffering=0)
            self._fd = self._file.fileno()
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.label}: {str(self.path)!r} does not exist") from None
        except IsADirectoryError:
            raise ValueError(f"{self.label}: {str(self.path)!r} is a folder, not a .safetensors file") from None
        try:
            self.size = os.fstat(self._fd).st_size
            self.metadata, self.tensors = self._parse_header()
        except BaseException:
            self._file.close()
            raise

    # -- header ----------------------------------------------------------------------------

    def _corrupt(self, why: str) -> ValueError:
        return ValueError(f"{self.label}: {str(self.path)!r} is not a valid safetensors file: {why}")

    def _parse_header(self) -> tuple[dict[str, str], dict[str, TensorInfo]]:
        header = parse_header(self.read_at, self.size, self._corrupt)
        return header.metadata, header.tensors

    # -- reading ---------------------------------------------------------------------------

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: t.shape for k, t in self.tensors.items()}

    def read_into(
        self, key: str, first: int, count: int, buffer: torch.Tensor | None = None, hold: Callable | None = None
    ) -> torch.Tensor:
        """Elements first..first+count-1 of `key`, flat, in the file's dtype, read into `buffer`
        (a uint8 tensor at least that many bytes long) or into fresh memory.

        While hashing, the bytes are also queued for the hash thread; `hold()` (when given) marks
        the buffer busy and returns the callback that frees it once hashed."""
        import torch

        info = self.tensors[key]
        size = itemsize(info.dtype)
        nbytes = count * size
        raw = torch.empty(nbytes, dtype=torch.uint8) if buffer is None else buffer[:nbytes]
        offset = info.start + first * size
        self._prefetch(offset + nbytes)
        view = memoryview(raw.numpy()).cast("B")
        self._read_exactly(view, offset)
        if self._hash is not None and nbytes:
            self._hash.submit(offset, view, hold() if hold is not None else _nothing)
        return raw.view(torch_dtype(info.dtype))

    def warm_up(self) -> None:
        """Ask the OS to start reading the first tensors in (async), e.g. while torch imports."""
        if _HAS_FADVISE and self.tensors:
            start = next(iter(self.tensors.values())).start
            os.posix_fadvise(self._fd, start, WARM_UP_BYTES, os.POSIX_FADV_WILLNEED)
            self._hinted = max(self._hinted, start + WARM_UP_BYTES)

    def _prefetch(self, end: int) -> None:
        """Keep ~READAHEAD bytes past the current read requested from the disk (async), so the
        device always has work queued while we merge and hash."""
        if not _HAS_FADVISE or end + READAHEAD // 2 <= self._hinted:
            return
        start = max(self._hinted, end)
        os.posix_fadvise(self._fd, start, READAHEAD, os.POSIX_FADV_WILLNEED)
        self._hinted = start + READAHEAD

    def _read_exactly(self, view: memoryview, offset: int) -> None:
        done = 0
        while done < len(view):
            if _HAS_PREADV:
                n = os.preadv(self._fd, [view[done:]], offset + done)
            else:  # Windows / older macOS: positioned reads through the file object
                with self._lock:
                    self._file.seek(offset + done)
                    n = self._file.readinto(view[done:])
            if not n:
                raise ValueError(f"{self.label}: unexpected end of file at byte {offset + done} (truncated?)")
            done += n

    def read(self, key: str, first: int = 0, count: int | None = None) -> torch.Tensor:
        info = self.tensors[key]
        return self.read_into(key, first, info.numel - first if count is None else count)

    def start_hashing(self) -> None:
        """Hash the whole file, on a thread, from the reads that follow (and gaps read there)."""
        self._hash = QueuedSha256(self.size, self._read_exactly, self.path.name)

    def sha256(self) -> str:
        if self._hash is None:
            self.start_hashing()
        return self._hash.hexdigest()

    def read_at(self, offset: int, nbytes: int) -> bytes:
        """Up to `nbytes` bytes at `offset` (fewer at the end of the file)."""
        nbytes = max(0, min(nbytes, self.size - offset))
        buffer = bytearray(nbytes)
        self._read_exactly(memoryview(buffer), offset)
        return bytes(buffer)

    def close(self) -> None:
        if self._hash is not None:
            self._hash.cancel()
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- writing ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class OutputTensor:
    key: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = itemsize(self.dtype)
        for d in self.shape:
            n *= d
        return n


def _header_bytes(entries: Iterable[OutputTensor], metadata: Mapping[str, str]) -> tuple[dict, int]:
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for entry in entries:
        header[entry.key] = {"dtype": entry.dtype, "shape": list(entry.shape), "data_offsets": [offset, offset + entry.nbytes]}
        offset += entry.nbytes
    return header, offset


def _encode(header: dict, length: int | None = None) -> bytes:
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if length is None:
        length = (len(text) + 7) // 8 * 8
    if len(text) > length:
        raise ValueError(f"safetensors header grew to {len(text)} bytes, over the {length} reserved")
    return text + b" " * (length - len(text))


class SafetensorsWriter:
    """Write the header from the planned entries, then the tensors' bytes in that order, to a sink
    (merge/sinks.py).

    `reserve` spare header bytes let `finish(metadata)` rewrite the metadata in place once values
    known only at the end (the inputs' sha256) are in.
    """

    def __init__(self, sink, entries: list[OutputTensor], metadata: Mapping[str, str], *, reserve: int = 0):
        self._sink = sink
        self._entries = entries
        header, self.data_size = _header_bytes(entries, metadata)
        draft = _encode(header)
        self._header_length = (len(draft) + reserve + 7) // 8 * 8
        encoded = _encode(header, self._header_length)
        self._sink.write(memoryview(struct.pack("<Q", self._header_length) + encoded))
        self._expected = iter(entries)
        self._current: OutputTensor | None = None
        self._left = 0
        self.written = 0

    @property
    def total_size(self) -> int:
        return 8 + self._header_length + self.data_size

    def write(self, key: str, data: "torch.Tensor") -> None:
        """Append bytes of tensor `key` (whole, or the next slice of it)."""
        import torch

        if self._left == 0:
            self._current = next(self._expected, None)
            if self._current is None or self._current.key != key:
                raise RuntimeError(f"writer expected {self._current and self._current.key!r}, got {key!r}")
            self._left = self._current.nbytes
        if data.dtype != torch_dtype(self._current.dtype):
            raise RuntimeError(f"{key}: got {data.dtype}, planned {self._current.dtype}")
        raw = data.contiguous().view(-1).view(torch.uint8)
        if raw.numel() > self._left:
            raise RuntimeError(f"{key}: {raw.numel()} bytes is more than the {self._left} left")
        self._sink.write(memoryview(raw.numpy()))
        self._left -= raw.numel()
        self.written += raw.numel()

    def finish(self, metadata: Mapping[str, str]) -> None:
        """Check every tensor was written, rewrite the header with the final metadata, close the sink."""
        if self._left or next(self._expected, None) is not None:
            raise RuntimeError("not every planned tensor was written")
        header, _ = _header_bytes(self._entries, metadata)
        self._sink.write_at(8, _encode(header, self._header_length))
        self._sink.close()
