"""Random-weight SD1.5 / SDXL checkpoints with every key of the real single-file layout (pure: no ComfyUI).

The layouts (key, shape, dtype) live in tests/data/keys/{sd15,sdxl}.tsv, recorded from ComfyUI's own
classes by support/make_key_layouts.py (a host test keeps them from drifting). A 0-d tensor's shape
is written `scalar` there.

Two sizes:
- shrunk (`full_size=False`, the default): every dimension cut to min(dim, 4), every real key kept.
  Cheap (a few MB) and exact for merge / key-mapping tests on the real layout. Shrunk tensors are
  NOT loadable as a model: ComfyUI detects architectures from shapes.
- full size (`full_size=True`): the real shapes (SD1.5 ~2 GB, SDXL ~7 GB in fp16). Weights are
  normal(0, 0.02), norm weights 1 + normal(0, 0.02), position_ids the real 0..76, so a model built
  from them runs without NaN. Use `write_checkpoint`, which streams one tensor at a time, rather
  than `build_state_dict`, which holds them all in memory.

Values are a pure function of (arch, key, seed, full_size, dtype): each key has its own generator
seeded from (seed, key), so equal seeds give equal tensors, different seeds different ones, and a
streamed file equals the in-memory dict.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import torch

from animekit.files.atomic import atomic_output

KEYS_DIR = Path(__file__).resolve().parents[1] / "data" / "keys"
ARCHS = ("sd15", "sdxl")
SHRUNK_DIM = 4
WEIGHT_STD = 0.02
LOGIT_SCALE = math.log(100.0)  # what trained CLIP text encoders store

_SAFETENSORS_DTYPES = {
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float32: "F32",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
}

Shape = tuple[int, ...]


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"arch {arch!r} is not a known checkpoint layout; expected one of {', '.join(ARCHS)}")


@lru_cache(maxsize=None)
def _read_layout(arch: str) -> tuple[tuple[str, Shape, torch.dtype], ...]:
    rows = []
    lines = (KEYS_DIR / f"{arch}.tsv").read_text().splitlines()
    if lines[0] != "key\tshape\tdtype":
        raise ValueError(f"{arch}.tsv: unexpected header {lines[0]!r}")
    for line in lines[1:]:
        key, shape, dtype = line.split("\t")
        dims = () if shape == "scalar" else tuple(int(d) for d in shape.split("x"))
        rows.append((key, dims, getattr(torch, dtype)))
    return tuple(rows)


def layout(arch: str) -> list[tuple[str, Shape, torch.dtype]]:
    """(key, real shape, dtype in an fp16 file) for every tensor of a real `arch` checkpoint, sorted by key."""
    _check_arch(arch)
    return list(_read_layout(arch))


def _shape(shape: Shape, full_size: bool) -> Shape:
    return shape if full_size else tuple(min(d, SHRUNK_DIM) for d in shape)


def _generator(seed: int, key: str) -> torch.Generator:
    digest = hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


def _tensor(key: str, shape: Shape, file_dtype: torch.dtype, seed: int, dtype: torch.dtype) -> torch.Tensor:
    if not file_dtype.is_floating_point:  # position_ids
        return torch.arange(shape[-1], dtype=file_dtype).expand(shape).contiguous()
    noise = torch.randn(shape, generator=_generator(seed, key), dtype=torch.float32) * WEIGHT_STD
    if len(shape) == 1 and key.endswith(".weight"):  # every 1-D weight in these layouts is a norm's scale
        noise += 1.0
    elif key.endswith("logit_scale"):
        noise += LOGIT_SCALE
    return noise.to(dtype)


def random_tensor(key: str, shape: Shape, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The value this module gives a float tensor named `key` (normal(0, 0.02); 1-D `.weight` ~1)."""
    return _tensor(key, tuple(shape), torch.float32, seed, dtype)


@torch.no_grad()
def randomize_parameters(module: torch.nn.Module, *, seed: int = 0, prefix: str = "") -> None:
    """Fill every parameter of `module` in place with `random_tensor(prefix + name, ...)`.

    For models whose layers are created empty (ComfyUI's ops skip initialisation). Buffers (noise
    schedules, position ids) are left as the model computed them.
    """
    for name, param in module.named_parameters():
        param.copy_(random_tensor(prefix + name, tuple(param.shape), seed=seed, dtype=param.dtype))


def iter_tensors(
    arch: str, *, full_size: bool = False, seed: int = 0, dtype: torch.dtype = torch.float16
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (key, tensor) in key order, one at a time (see the module docstring for the values)."""
    if not dtype.is_floating_point:
        raise ValueError(f"dtype {dtype} is not a floating-point dtype; float tensors are stored in it")
    for key, shape, file_dtype in layout(arch):
        yield key, _tensor(key, _shape(shape, full_size), file_dtype, seed, dtype)


def build_state_dict(
    arch: str, *, full_size: bool = False, seed: int = 0, dtype: torch.dtype = torch.float16
) -> dict[str, torch.Tensor]:
    """Every key of a real `arch` checkpoint with deterministic random values (shrunk unless full_size)."""
    return dict(iter_tensors(arch, full_size=full_size, seed=seed, dtype=dtype))


def write_checkpoint(
    path,
    arch: str,
    *,
    full_size: bool = False,
    seed: int = 0,
    dtype: torch.dtype = torch.float16,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write `build_state_dict(...)` as a .safetensors file, streaming tensor by tensor, atomically."""
    _check_arch(arch)
    meta = dict(metadata or {})
    bad = [k for k, v in meta.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise ValueError(f"metadata keys and values must be str; not for {bad}")
    header: dict[str, object] = {"__metadata__": meta} if meta else {}
    offset = 0
    for key, shape, file_dtype in layout(arch):
        shape = _shape(shape, full_size)
        out_dtype = dtype if file_dtype.is_floating_point else file_dtype
        size = math.prod(shape) * out_dtype.itemsize
        header[key] = {"dtype": _SAFETENSORS_DTYPES[out_dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with atomic_output(path) as tmp, open(tmp, "wb") as handle:
        handle.write(struct.pack("<Q", len(blob)))
        handle.write(blob)
        for _, tensor in iter_tensors(arch, full_size=full_size, seed=seed, dtype=dtype):
            handle.write(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return Path(path)
