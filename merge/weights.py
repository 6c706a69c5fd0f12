"""Turn a preset name or a typed weight list into one weight per block of an architecture.

A weight is the fraction of model B for that block (SuperMerger's alpha: 0 = A, 1 = B).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from ..checkpoints.architecture import SD15, SDXL, Architecture
from .naming import CLI, Naming
from .presets import PresetBook, builtin_presets, finite_numbers, for_architecture, load_presets

CUSTOM = "custom"


@dataclass(frozen=True)
class BlockWeights:
    """The weight of model B per block of `arch`, and where the numbers came from."""

    arch: Architecture
    values: tuple[float, ...]
    source: str

    def __post_init__(self):
        if len(self.values) != self.arch.weight_count:
            raise ValueError(f"{self.arch.label} needs {self.arch.weight_count} weights, got {len(self.values)}")

    def of(self, block: str) -> float:
        return self.values[self.arch.blocks.index(block)]

    def as_text(self) -> str:
        return ",".join(_fmt(v) for v in self.values)

    def extrapolation_note(self) -> str | None:
        """Weights outside 0..1 are allowed (SuperMerger allows them) but never silently: this names them."""
        outside = [f"{block}={_fmt(v)}" for block, v in zip(self.arch.blocks, self.values) if not 0.0 <= v <= 1.0]
        if not outside:
            return None
        return (f"weights outside 0..1 extrapolate (past model B above 1, away from it below 0): "
                f"{', '.join(outside)}")


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def parse_weight_list(text: str) -> tuple[float, ...]:
    """Numbers separated by commas and/or whitespace; every one must be finite."""
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    if not parts:
        raise ValueError("the weights list is empty")
    return tuple(finite_numbers(parts, "weight"))


def _count_error(arch: Architecture, got: int) -> ValueError:
    if arch is SDXL:
        need = (
            f"SDXL needs {SDXL.weight_count} weights ({SDXL.layout_text()}), or {SD15.weight_count} "
            f"SD1.x-layout weights that are mapped by resolution level"
        )
    else:
        need = f"SD1.x needs {SD15.weight_count} weights ({SD15.layout_text()})"
    return ValueError(f"{need}; got {got} (one weight alone is used for every block)")


def weights_from_values(values: Sequence[float], arch: Architecture, *, source: str = "custom") -> BlockWeights:
    """Accept one value (every block gets it: SuperMerger's plain alpha), the architecture's own count,
    and on SDXL also 26 SD1.x values, mapped by resolution level."""
    values = tuple(float(v) for v in values)
    if len(values) == 1:
        return BlockWeights(arch, values * arch.weight_count, f"{source}: {_fmt(values[0])} for every block")
    if len(values) == arch.weight_count:
        return BlockWeights(arch, values, source)
    if arch is SDXL and len(values) == SD15.weight_count:
        return BlockWeights(arch, for_architecture(values, SDXL), f"{source} (26 SD1.x values mapped to SDXL by resolution level)")
    raise _count_error(arch, len(values))


def resolve_weights(
    arch: Architecture,
    preset: str | None = None,
    weights: str | Sequence[float] | None = None,
    book: PresetBook | None = None,
    naming: Naming = CLI,
) -> BlockWeights:
    """Exactly one of a preset name (not 'custom') or a weight list gives the per-block weights;
    `naming` words the advice for the caller (CLI flags or node inputs)."""
    book = book or builtin_presets()
    preset = (preset or "").strip()
    has_list = weights is not None and (not isinstance(weights, str) or weights.strip() != "")
    use_preset = preset not in ("", CUSTOM)
    if use_preset and has_list:
        raise ValueError(
            f"both preset {preset!r} and a weights list were given; set the preset to '{CUSTOM}' to use "
            f"the list, or clear the list to use the preset"
        )
    if use_preset:
        values = book.get(preset)
        mapped = " (mapped to SDXL by resolution level)" if arch is SDXL else ""
        return BlockWeights(arch, for_architecture(values, arch), f"preset {preset}{mapped}")
    if not has_list:
        raise ValueError(
            f"no weights: choose a preset or give {arch.weight_count} weights ({arch.layout_text()}); "
            f"known presets: {', '.join(book.names)}"
        )
    if isinstance(weights, str):
        if weights.strip() in book.presets:
            name = weights.strip()
            raise ValueError(f"{name!r} is a preset name, not a list of weights: use {naming('preset', name)}")
        values = parse_weight_list(weights)
    else:
        values = tuple(weights)
    return weights_from_values(values, arch)


@dataclass(frozen=True)
class WeightChoice:
    """What the user asked for, before the architecture is known: a preset or a list (+ a preset file)."""

    preset: str | None = None
    weights: str | tuple[float, ...] | None = None
    preset_file: str | None = None
    naming: Naming = CLI  # how advice names the preset and weights settings

    def resolve(self, arch: Architecture) -> BlockWeights:
        return resolve_weights(arch, self.preset, self.weights, load_presets(self.preset_file), self.naming)
