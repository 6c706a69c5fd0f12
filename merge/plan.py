"""Decide, before any tensor is read, which block and weight each key gets or why it stays model A's.

Shared by the in-graph merge (ComfyUI keys) and the file merge (checkpoint keys), so both explain
themselves the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from ..checkpoints.architecture import Architecture
from ..checkpoints.keys import VAE_PREFIX, comfy_name, is_text_encoder_key, unet_relative
from .blocks import stays_a_reason, unet_block
from .methods import MergeMethod
from .weights import BlockWeights

VAE_KEEP = "keep"
VAE_MERGE = "merge"
VAE_FILE = "file"


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    is_float: bool = True

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n


@dataclass(frozen=True)
class KeyPlan:
    """One output key: merged in `block` with `weight`, or kept A's (then `reason` says why)."""

    key: str
    part: str  # "unet" | "text" | "vae" | "other"
    block: str | None
    weight: float | None
    numel: int
    reason: str | None = None

    @property
    def merged(self) -> bool:
        return self.reason is None and self.block is not None

    @property
    def seed_name(self) -> str:
        return comfy_name(self.key)


@dataclass(frozen=True)
class MergePlan:
    arch: Architecture
    weights: BlockWeights
    method: MergeMethod
    keys: tuple[KeyPlan, ...]
    only_in_b: tuple[str, ...] = ()
    vae_mode: str = VAE_KEEP
    vae_source: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def merged(self) -> list[KeyPlan]:
        return [k for k in self.keys if k.merged]

    @property
    def kept(self) -> list[KeyPlan]:
        return [k for k in self.keys if not k.merged]


def _part(key: str) -> str:
    if unet_relative(key) is not None:
        return "unet"
    if is_text_encoder_key(key):
        return "text"
    if key.startswith(VAE_PREFIX):
        return "vae"
    return "other"


VAE_KEPT = "the VAE stays A's (the default)"  # explain.py adds how to merge or replace it, in the caller's words


def build_plan(
    arch: Architecture,
    weights: BlockWeights,
    method: MergeMethod,
    a: Mapping[str, TensorSpec],
    b: Mapping[str, TensorSpec],
    c: Mapping[str, TensorSpec] | None = None,
    *,
    vae_mode: str = VAE_KEEP,
    vae_source: str | None = None,
) -> MergePlan:
    """Plan every key of A; raise ValueError listing the keys whose shapes differ between inputs."""
    if weights.arch is not arch:
        raise ValueError(f"weights are for {weights.arch.label} but the models are {arch.label}")
    if method.needs_base and c is None:
        raise ValueError(f"the {method.name} method needs a base model C")
    if vae_mode not in (VAE_KEEP, VAE_MERGE, VAE_FILE):
        raise ValueError(f"vae must be '{VAE_KEEP}', '{VAE_MERGE}' or a VAE file, got {vae_mode!r}")
    mismatches: list[str] = []
    plans: list[KeyPlan] = []
    replaced_vae = 0
    for key, spec in a.items():
        part = _part(key)
        if part == "vae" and vae_mode == VAE_FILE:
            replaced_vae += 1
            continue
        block = _block(arch, key, part, vae_mode)
        reason = _keep_reason(key, part, block, spec, b, c, vae_mode, method)
        if reason is None:
            for other_name, other in (("B", b), ("C", c if method.needs_base else None)):
                if other is not None and tuple(other[key].shape) != tuple(spec.shape):
                    mismatches.append(f"{key}: A {tuple(spec.shape)} vs {other_name} {tuple(other[key].shape)}")
        weight = weights.of(block) if block is not None and reason is None else None
        plans.append(KeyPlan(key, part, block, weight, spec.numel, reason))
    if mismatches:
        shown = "; ".join(mismatches[:5])
        more = f" (and {len(mismatches) - 5} more)" if len(mismatches) > 5 else ""
        raise ValueError(f"shape mismatch in {len(mismatches)} key(s), the models are not compatible: {shown}{more}")
    only_in_b = tuple(k for k in b if k not in a)
    notes = (f"VAE baked in from {vae_source}; model A's {replaced_vae} VAE keys are not written",) if vae_mode == VAE_FILE else ()
    return MergePlan(arch, weights, method, tuple(plans), only_in_b, vae_mode, vae_source, notes)


def _block(arch: Architecture, key: str, part: str, vae_mode: str) -> str | None:
    if part == "unet":
        return unet_block(arch, unet_relative(key))
    if part == "text":
        return "BASE"
    if part == "vae" and vae_mode == VAE_MERGE:
        return "BASE"
    return None


def _keep_reason(key, part, block, spec, b, c, vae_mode, method) -> str | None:
    if part == "vae" and vae_mode != VAE_MERGE:
        return VAE_KEPT
    if part == "other":
        return "not part of the UNet, text encoder or VAE"
    if block is None:
        return "UNet key outside the MBW blocks"
    constant = stays_a_reason(key)
    if constant:
        return constant
    if not spec.is_float:
        return "not a floating-point tensor"
    if key not in b:
        return "missing in model B"
    if not b[key].is_float:
        return "not a floating-point tensor in model B"
    if method.needs_base:
        if key not in c:
            return "missing in base model C"
        if not c[key].is_float:
            return "not a floating-point tensor in model C"
    return None


def block_totals(plan: MergePlan) -> list[tuple[str, float, int, int]]:
    """(block, weight, merged key count, merged parameter count) in weight-vector order."""
    counts = {block: [0, 0] for block in plan.arch.blocks}
    for item in plan.merged:
        counts[item.block][0] += 1
        counts[item.block][1] += item.numel
    return [(block, plan.weights.of(block), n_keys, n_params) for block, (n_keys, n_params) in counts.items()]


def group_kept(plan: MergePlan) -> dict[str, list[str]]:
    """Reason -> keys that stayed A's for it."""
    grouped: dict[str, list[str]] = {}
    for item in plan.kept:
        grouped.setdefault(item.reason or "kept", []).append(item.key)
    return grouped

