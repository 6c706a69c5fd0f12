"""Per-tensor merge formulas. Arithmetic is fp32; the caller casts the result to the output dtype.

With `w` the block's weight (fraction of model B; 0 = A, 1 = B) and every tensor widened to fp32:

- weighted-sum:    ``A*(1-w) + B*w``
- add-difference:  ``A + (B-C)*w``
- dare:            ``A + where(keep, (B-C)/density, 0)*w``  — keep is a seeded Bernoulli(density)
  mask (Drop And REscale, Yu et al. 2023).
- ties:            ``A + where(sign(tB) == sign(tA+tB), tB, 0)*w`` with ``tA = trim(A-C)``,
  ``tB = trim(B-C)`` and trim keeping the top `density` fraction of a tensor by magnitude (TIES,
  Yadav et al. 2023: trim, elect sign by total mass, keep B's agreeing part).

TIES and DARE add a filtered part of B's task vector (B-C) onto A, so a weight of 0 leaves a block
exactly A's, as in every other method. Operations happen in the order written, which is the order
ComfyUI applies its own weight patches, so the in-graph and file merges agree bit for bit.

DARE's mask comes from a counter-based hash of (seed, key, element index), not from a stateful
generator: the same seed gives the same mask whatever the key order, chunking, device or torch version.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where tensors are touched, so planning and the CLI start fast
    import torch

WEIGHTED_SUM = "weighted-sum"
ADD_DIFFERENCE = "add-difference"
TIES = "ties"
DARE = "dare"
METHODS = (WEIGHTED_SUM, ADD_DIFFERENCE, TIES, DARE)

FORMULAS = {
    WEIGHTED_SUM: "A*(1-w) + B*w",
    ADD_DIFFERENCE: "A + (B-C)*w",
    TIES: "A + w*ties(B-C | A-C)  (trim to density, elect sign by mass, keep B's agreeing part)",
    DARE: "A + w*dare(B-C)  (keep each element with probability density, rescale by 1/density)",
}


@dataclass(frozen=True)
class MergeMethod:
    """Which formula, and the knobs of TIES / DARE (ignored by the others)."""

    name: str = WEIGHTED_SUM
    density: float = 0.5  # TIES / DARE: fraction of B-C kept
    seed: int = 0  # DARE mask seed

    def __post_init__(self):
        if self.name not in METHODS:
            raise ValueError(f"unknown merge method {self.name!r}; choose one of: {', '.join(METHODS)}")
        if not (isinstance(self.density, (int, float)) and 0.0 < float(self.density) <= 1.0):
            raise ValueError(f"density must be in (0, 1], got {self.density!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")

    @property
    def needs_base(self) -> bool:
        return self.name != WEIGHTED_SUM

    @property
    def elementwise(self) -> bool:
        """Whether a tensor can be merged in slices (TIES needs a whole tensor for its top-k)."""
        return self.name != TIES

    @property
    def formula(self) -> str:
        text = FORMULAS[self.name]
        if self.name in (TIES, DARE):
            text += f", density {self.density:g}"
        if self.name == DARE:
            text += f", seed {self.seed}"
        return text


# --- DARE's counter-based mask ---------------------------------------------------------------

def _signed64(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN = _signed64(0x9E3779B97F4A7C15)
_MIX1 = _signed64(0xBF58476D1CE4E5B9)
_MIX2 = _signed64(0x94D049BB133111EB)


def key_seed(seed: int, key: str) -> int:
    """A 64-bit stream id from the user seed and a key's canonical name (stable across runs)."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return _signed64(int.from_bytes(digest[:8], "little"))


def _shr(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def uniform_stream(stream: int, start: int, count: int, device=None) -> torch.Tensor:
    """`count` fp32 uniforms in [0, 1) for element indices start..start+count-1 (splitmix64 hash)."""
    import torch

    x = torch.arange(start + 1, start + count + 1, dtype=torch.int64, device=device)
    x.mul_(_GOLDEN).add_(stream)  # splitmix64: state = stream + (i + 1) * golden gamma
    x.bitwise_xor_(_shr(x, 30)).mul_(_MIX1)
    x.bitwise_xor_(_shr(x, 27)).mul_(_MIX2)
    x.bitwise_xor_(_shr(x, 31))
    return _shr(x, 40).to(torch.float32).mul_(1.0 / (1 << 24))


def dare_keep_mask(stream: int, start: int, count: int, density: float, device=None) -> torch.Tensor:
    return uniform_stream(stream, start, count, device) < density


# --- TIES trim ---------------------------------------------------------------------------------

def trim_to_density(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Zero all but the ceil(density*n) largest-magnitude entries (ties at the threshold are kept)."""
    import torch

    n = delta.numel()
    if density >= 1.0 or n == 0:
        return delta
    k = max(1, math.ceil(density * n))
    magnitude = delta.abs().flatten()
    threshold = torch.kthvalue(magnitude, n - k + 1).values
    return torch.where(delta.abs() >= threshold, delta, torch.zeros((), dtype=delta.dtype, device=delta.device))


# --- the formulas ------------------------------------------------------------------------------

def _fp32(t: torch.Tensor, scratch: torch.Tensor | None) -> torch.Tensor:
    """An fp32 copy of `t` we may modify in place: in `scratch` (flat fp32, reused) when given."""
    import torch

    if scratch is None:
        return t.to(torch.float32, copy=True)
    return scratch[: t.numel()].view(t.shape).copy_(t)


def merge_values(
    method: MergeMethod,
    w: float,
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor | None = None,
    *,
    stream: int = 0,
    start: int = 0,
    scratch: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Merge one tensor (or, for elementwise methods, a flat slice starting at element `start`).

    `stream` is `key_seed(method.seed, key)` for DARE. `scratch` is two flat fp32 buffers the result
    may live in (the streaming merge reuses them to avoid allocating per slice). Returns fp32.
    """
    import torch

    if a.shape != b.shape or (c is not None and c.shape != a.shape):
        raise ValueError(f"shape mismatch: A {tuple(a.shape)}, B {tuple(b.shape)}, C {None if c is None else tuple(c.shape)}")
    w = float(w)
    first, second = scratch if scratch is not None and method.elementwise else (None, None)
    out = _fp32(a, first)
    if method.name == WEIGHTED_SUM:
        other = _fp32(b, second)
        out.mul_(1.0 - w)
        other.mul_(w)
        return out.add_(other)
    if c is None:
        raise ValueError(f"the {method.name} method needs a base model C")
    delta = _fp32(b, second).sub_(c)
    if method.name == ADD_DIFFERENCE:
        return out.add_(delta.mul_(w))
    if method.name == DARE:
        keep = dare_keep_mask(stream, start, delta.numel(), method.density, delta.device).view(delta.shape)
        delta.div_(method.density)
        delta.masked_fill_(~keep, 0.0)
        return out.add_(delta.mul_(w))
    if start != 0:
        raise ValueError("TIES merges whole tensors only")
    trimmed_b = trim_to_density(delta, method.density)
    trimmed_a = trim_to_density(out - c.to(torch.float32), method.density)
    elected = torch.sign(trimmed_a + trimmed_b)
    agree = (torch.sign(trimmed_b) == elected) & (trimmed_b != 0)
    kept = torch.where(agree, trimmed_b, torch.zeros((), dtype=delta.dtype, device=delta.device))
    return out.add_(kept.mul_(w))
