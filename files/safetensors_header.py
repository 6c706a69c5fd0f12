"""The safetensors header (8-byte little-endian length, then JSON), parsed and checked against the
file size, so a truncated or corrupt file fails before anything is read. Key names and shapes come
from here without reading (or importing torch for) a single tensor.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

MAX_HEADER_BYTES = 100 * 1024 * 1024

# safetensors dtype code -> (torch dtype name, bytes per element)
DTYPES: dict[str, tuple[str, int]] = {
    "F64": ("float64", 8),
    "F32": ("float32", 4),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "F8_E4M3": ("float8_e4m3fn", 1),
    "F8_E5M2": ("float8_e5m2", 1),
    "I64": ("int64", 8),
    "I32": ("int32", 4),
    "I16": ("int16", 2),
    "I8": ("int8", 1),
    "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
}
FLOAT_CODES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}


def itemsize(code: str) -> int:
    return DTYPES[code][1]


@dataclass(frozen=True)
class TensorInfo:
    key: str
    dtype: str  # safetensors code
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    end: int

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_CODES


@dataclass(frozen=True)
class SafetensorsHeader:
    metadata: dict[str, str]
    tensors: dict[str, TensorInfo]  # in file order


def parse_header(read_at: Callable[[int, int], bytes], size: int, corrupt: Callable[[str], Exception]) -> SafetensorsHeader:
    """Parse and check the header of a `size`-byte file read through `read_at(offset, nbytes)`;
    `corrupt(why)` builds the error (naming the input) raised for anything malformed."""
    if size < 8:
        raise corrupt(f"only {size} bytes long")
    (length,) = struct.unpack("<Q", read_at(0, 8))
    if length > MAX_HEADER_BYTES or 8 + length > size:
        raise corrupt(f"header length {length} does not fit in a {size}-byte file (truncated?)")
    raw = read_at(8, length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise corrupt(f"header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise corrupt("header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise corrupt("__metadata__ is not an object")
    base = 8 + length
    data_size = size - base
    tensors: dict[str, TensorInfo] = {}
    for key, entry in header.items():
        try:
            code, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            shape = tuple(int(d) for d in shape)
            begin, end = int(begin), int(end)
        except (KeyError, TypeError, ValueError):
            raise corrupt(f"entry for {key!r} lacks dtype/shape/data_offsets") from None
        if code not in DTYPES:
            raise corrupt(f"{key!r} has unsupported dtype {code!r}")
        numel = 1
        for d in shape:
            if d < 0:
                raise corrupt(f"{key!r} has a negative dimension in {shape}")
            numel *= d
        if end - begin != numel * itemsize(code) or begin < 0:
            raise corrupt(f"{key!r}: data_offsets {begin}..{end} do not match {code} {list(shape)}")
        if end > data_size:
            raise corrupt(f"{key!r} ends at byte {base + end} but the file has {size} bytes (truncated)")
        tensors[key] = TensorInfo(key, code, shape, base + begin, base + end)
    ordered = dict(sorted(tensors.items(), key=lambda kv: kv[1].start))
    return SafetensorsHeader({str(k): str(v) for k, v in metadata.items()}, ordered)


def read_safetensors_header(path: str | os.PathLike, *, label: str | None = None) -> SafetensorsHeader:
    """The checked header of a .safetensors file; errors name `label` (default: the file name)."""
    path = Path(path)
    label = label or path.name

    def corrupt(why: str) -> ValueError:
        return ValueError(f"{label}: {str(path)!r} is not a valid safetensors file: {why}")

    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"{label}: {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"{label}: {str(path)!r} is a folder, not a .safetensors file") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size

        def read_at(offset: int, nbytes: int) -> bytes:
            handle.seek(offset)
            return handle.read(nbytes)

        return parse_header(read_at, size, corrupt)
