"""LoRA modules beside frozen Linear / Conv2d layers, named the way kohya sd-scripts names them.

Each `LoraModule` adds `up(down(x)) * alpha / rank` to its base layer's output through a forward
hook, so the base model's own modules, names and state dict stay untouched (a ComfyUI MODEL or a
diffusers UNet alike) and detaching restores it exactly. The network's state dict *is* the kohya
file layout: `<lora_name>.lora_down.weight`, `.lora_up.weight`, `.alpha`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

# kohya's file prefixes per part and architecture
PREFIXES = {
    "sd15": {"unet": "lora_unet", "te1": "lora_te"},
    "sdxl": {"unet": "lora_unet", "te1": "lora_te1", "te2": "lora_te2"},
}


def kohya_name(prefix: str, path: str) -> str:
    """`lora_unet` + `input_blocks.4.1.proj_in` -> `lora_unet_input_blocks_4_1_proj_in`."""
    return f"{prefix}_{path}".replace(".", "_")


@dataclass(frozen=True)
class LoraTarget:
    """One layer a LoRA can sit beside: its kohya-convention module path and the layer itself."""

    part: str  # "unet" | "te1" | "te2"
    path: str  # dotted, in the naming kohya uses for this part and architecture
    module: nn.Module  # nn.Linear or nn.Conv2d

    @property
    def is_conv3x3(self) -> bool:
        return isinstance(self.module, nn.Conv2d) and tuple(self.module.kernel_size) != (1, 1)


def find_targets(
    root: nn.Module, part: str, containers: Iterable[str], rename=lambda path: path
) -> list[LoraTarget]:
    """Linear / Conv2d layers inside modules whose class name is in `containers` (kohya's selection rule).

    `rename` turns the module path inside `root` into the kohya-convention path.
    """
    wanted = set(containers)
    found: dict[str, LoraTarget] = {}
    for name, module in root.named_modules():
        if type(module).__name__ not in wanted:
            continue
        for child_name, child in module.named_modules():
            if isinstance(child, (nn.Linear, nn.Conv2d)) and child_name:
                path = rename(f"{name}.{child_name}" if name else child_name)
                found.setdefault(path, LoraTarget(part, path, child))
    return list(found.values())


class LoraModule(nn.Module):
    """down (rank outputs, kaiming-uniform) then up (zeros), scaled by alpha / rank."""

    def __init__(self, base: nn.Module, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if isinstance(base, nn.Linear):
            self.lora_down = nn.Linear(base.in_features, rank, bias=False)
            self.lora_up = nn.Linear(rank, base.out_features, bias=False)
        elif isinstance(base, nn.Conv2d):
            self.lora_down = nn.Conv2d(
                base.in_channels, rank, base.kernel_size, base.stride, base.padding, bias=False
            )
            self.lora_up = nn.Conv2d(rank, base.out_channels, (1, 1), (1, 1), bias=False)
        else:
            raise TypeError(f"LoRA needs a Linear or Conv2d layer, got {type(base).__name__}")
        nn.init.kaiming_uniform_(self.lora_down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_up.weight)
        self.register_buffer("alpha", torch.tensor(float(alpha)))
        self.rank = rank
        self.scale = float(alpha) / rank  # a Python float: reading the buffer would sync the GPU every call
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_autocast_enabled(x.device.type):
            x = x.to(self.lora_down.weight.dtype)
        h = self.lora_down(x)
        if self.dropout and self.training:
            h = F.dropout(h, p=self.dropout)
        return self.lora_up(h) * self.scale


class LoraNetwork(nn.Module):
    """All LoRA modules of a run, registered under their kohya names, with hooks on their base layers."""

    def __init__(self):
        super().__init__()
        self._bases: dict[str, nn.Module] = {}
        self._parts: dict[str, str] = {}
        self._hooks: list = []

    def add(self, name: str, part: str, base: nn.Module, rank: int, alpha: float, dropout: float = 0.0) -> LoraModule:
        if name in self._bases:
            raise ValueError(f"two LoRA targets share the name {name!r}")
        module = LoraModule(base, rank, alpha, dropout)
        self.add_module(name, module)
        self._bases[name] = base
        self._parts[name] = part
        return module

    def modules_by_name(self) -> dict[str, LoraModule]:
        return {name: getattr(self, name) for name in self._bases}

    def parameters_of(self, part: str) -> list[nn.Parameter]:
        return [p for name, m in self.modules_by_name().items() if self._parts[name] == part for p in m.parameters()]

    def parts(self) -> list[str]:
        return sorted(set(self._parts.values()), key=["unet", "te1", "te2"].index)

    def attach(self) -> None:
        """Hook every LoRA module onto its base layer (idempotent)."""
        if self._hooks:
            return
        for name, base in self._bases.items():
            lora = getattr(self, name)
            self._hooks.append(base.register_forward_hook(_make_hook(lora)))

    def detach(self) -> None:
        """Remove the hooks: the base model computes exactly what it did before."""
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()


def _make_hook(lora: LoraModule):
    def hook(_module, args, output):
        return output + lora(args[0]).to(output.dtype)

    return hook


def build_network(
    targets: Iterable[LoraTarget],
    prefixes: dict[str, str],
    rank: int,
    alpha: float,
    conv_rank: int,
    conv_alpha: float,
    dropout: float,
    dims: dict[str, tuple[int, float]] | None = None,
) -> LoraNetwork:
    """A network over `targets`; 3x3 convolutions only with conv_rank > 0; `dims` overrides (rank, alpha) by name."""
    network = LoraNetwork()
    for target in targets:
        name = kohya_name(prefixes[target.part], target.path)
        if dims and name in dims:
            r, a = dims[name]
        elif target.is_conv3x3:
            if not conv_rank:
                continue
            r, a = conv_rank, conv_alpha
        else:
            r, a = rank, alpha
        network.add(name, target.part, target.module, r, a, dropout)
    return network
