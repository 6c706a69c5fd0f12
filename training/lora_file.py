"""kohya-format LoRA files: writing a network with its metadata, and reading one back to continue.

Layout: `<lora_name>.lora_down.weight`, `<lora_name>.lora_up.weight`, `<lora_name>.alpha` (0-d),
all in the save dtype, plus `ss_*`, `sshs_*` and `modelspec.*` metadata.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..files.atomic import save_safetensors_atomic
from .lora_network import LoraNetwork
from .metadata import addnet_hashes

SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".alpha")


def network_tensors(network: LoraNetwork, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {key: value.detach().to("cpu", dtype).contiguous() for key, value in network.state_dict().items()}


def save_lora(network: LoraNetwork, path: str | Path, metadata: dict[str, str], dtype: torch.dtype) -> Path:
    """Write `network` atomically as a kohya LoRA file (adds sshs_* hashes to the metadata)."""
    tensors = network_tensors(network, dtype)
    meta = {**metadata, **addnet_hashes(tensors, metadata)}
    return save_safetensors_atomic(tensors, path, meta)


def read_lora(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"LoRA file {str(file)!r} does not exist")
    if file.suffix != ".safetensors":
        raise ValueError(f"LoRA file must be .safetensors, got {file.name!r}")
    with safe_open(str(file), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    return tensors, metadata


def lora_dims(tensors: dict[str, torch.Tensor], source: str = "LoRA file") -> dict[str, tuple[int, float]]:
    """Per-module (rank, alpha) of a kohya LoRA state dict; alpha defaults to rank when absent (kohya)."""
    dims: dict[str, tuple[int, float]] = {}
    for key, value in tensors.items():
        if key.endswith(".lora_down.weight"):
            name = key[: -len(".lora_down.weight")]
            rank = value.shape[0]
            alpha = tensors.get(f"{name}.alpha")
            dims[name] = (rank, float(alpha) if alpha is not None else float(rank))
        elif not key.endswith(SUFFIXES):
            raise ValueError(f"{source}: {key!r} is not a kohya LoRA key (only standard LoRA / LoCon files can be continued)")
    return dims


def load_into_network(network: LoraNetwork, tensors: dict[str, torch.Tensor], source: str) -> list[str]:
    """Copy a file's weights into `network`; returns the network modules the file did not have."""
    modules = network.modules_by_name()
    extra = sorted({key.rsplit(".", 2)[0] if key.endswith(".weight") else key.rsplit(".", 1)[0] for key in tensors} - set(modules))
    if extra:
        raise ValueError(
            f"{source} has LoRA modules this run does not train, e.g. {extra[0]!r} "
            "(enable the same parts: network.train_text_encoder, network.conv_rank)"
        )
    state = network.state_dict()
    for key, value in tensors.items():
        if state[key].shape != value.shape:
            raise ValueError(f"{source}: {key!r} has shape {tuple(value.shape)}, this network expects {tuple(state[key].shape)}")
        state[key] = value.to(state[key].dtype)
    network.load_state_dict(state)
    return sorted(name for name in modules if f"{name}.lora_down.weight" not in tensors)
