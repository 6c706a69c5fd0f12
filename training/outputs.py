"""Trained model files: kohya LoRA files and single-file full checkpoints, written atomically.

Periodic saves are `<name>-step00000100.safetensors` (by step) and `<name>-000002.safetensors`
(by epoch, kohya's naming); the final one is `<name>.safetensors`. `keep_last` prunes the oldest
periodic files, never the final one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import torch

from ..files.atomic import save_safetensors_atomic
from ..files.paths import resolve_inside
from .lora_file import save_lora
from .lora_network import LoraNetwork

SAVE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def periodic_name(name: str, *, step: int | None = None, epoch: int | None = None) -> str:
    if step is not None:
        return f"{name}-step{step:08d}.safetensors"
    return f"{name}-{epoch:06d}.safetensors"


def final_name(name: str) -> str:
    return f"{name}.safetensors"


def periodic_files(output_dir: Path, name: str) -> list[Path]:
    """Periodic saves of run `name`, oldest first (by modification order of their step / epoch)."""
    pattern = re.compile(rf"^{re.escape(name)}-(step\d{{8}}|\d{{6}})\.safetensors$")
    if not output_dir.is_dir():
        return []
    files = [p for p in output_dir.iterdir() if pattern.match(p.name)]
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))


def prune_periodic(output_dir: Path, name: str, keep_last: int) -> None:
    if keep_last <= 0:
        return
    for old in periodic_files(output_dir, name)[:-keep_last]:
        old.unlink(missing_ok=True)


def write_lora(network: LoraNetwork, output_dir: Path, file_name: str, metadata: dict[str, str], precision: str) -> Path:
    path = resolve_inside(output_dir, file_name, what="save.name")
    return save_lora(network, path, metadata, SAVE_DTYPES[precision])


def write_checkpoint(
    state: Mapping[str, torch.Tensor],
    output_dir: Path,
    file_name: str,
    metadata: dict[str, str],
    precision: str,
    base_file: str | None = None,
) -> Path:
    """A single-file checkpoint; keys the export lacks are copied from `base_file` (the source checkpoint)."""
    dtype = SAVE_DTYPES[precision]
    tensors = {k: _cast(v, dtype) for k, v in state.items()}
    if base_file:
        from safetensors import safe_open

        with safe_open(base_file, framework="pt") as handle:
            for key in handle.keys():
                if key not in tensors:
                    tensors[key] = handle.get_tensor(key)
    path = resolve_inside(output_dir, file_name, what="save.name")
    return save_safetensors_atomic(tensors, path, metadata)


def _cast(value: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    value = value.detach().to("cpu")
    return value.to(dtype) if value.is_floating_point() else value
