"""Per-tensor merge formulas, all in one registry: adding a method is one `_register(MethodSpec(...))`.

Each entry says its name (the CLI / node value), the formula in words, whether it needs a base model C,
whether a tensor can be merged in slices, whether a block weight of 0 leaves model A exactly, its
SuperMerger mode / calcmode (written into ``sd_merge_recipe``), and the function. The CLI choices, the
node combo and tooltip, the explain text and the metadata all come from `REGISTRY`.

With `w` the block's weight (fraction of model B; 0 = A, 1 = B), `beta` the second weight of the
three-model methods, and every tensor widened to fp32:

- weighted-sum:     ``A*(1-w) + B*w``
- add-difference:   ``A + (B-C)*w``
- ties / dare:      ``A + w*ties(B-C | A-C)`` / ``A + w*dare(B-C)`` (Yadav et al. 2023 / Yu et al. 2023)
- slerp:            spherical interpolation of the flattened tensors, linear where they are parallel
- train-difference: ``A + 1.8*w*(B-C)*|B-A|/(|B-C|+|B-A|)`` (SuperMerger "trainDifference")
- cosine-a / -b:    ``A*k + B*(1-k)`` with k from the cosine similarity of A and B (SuperMerger "cosineA/B")
- triple-sum:       ``A*(1-w-beta) + B*w + C*beta`` (SuperMerger "Triple sum")
- sum-twice:        ``(A*(1-w) + B*w)*(1-beta) + C*beta`` (SuperMerger "sum Twice")

SuperMerger's formulas are from hako-mikan/sd-webui-supermerger, scripts/mergers/mergers.py
(``traindiff``, ``precosine`` / ``cosine``, the Triple / Twice branches of ``smerge``).

TIES and DARE add a filtered part of B's task vector (B-C) onto A, so a weight of 0 leaves a block
exactly A's. Operations happen in the order written, which is the order ComfyUI applies its own
weight patches, so the in-graph and file merges agree bit for bit.

DARE's mask comes from a counter-based hash of (seed, key, element index), not from a stateful
generator: the same seed gives the same mask whatever the key order, chunking, device or torch version.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # torch is imported where tensors are touched, so planning and the CLI start fast
    import torch

    from .cosine import CosineRange


@dataclass
class Operands:
    """What a formula gets: `out` is an fp32 copy of A it may modify and return; b and c are the
    inputs as stored (any dtype); `other` is a second flat fp32 scratch buffer or None."""

    method: "MergeMethod"
    w: float
    out: "torch.Tensor"
    b: "torch.Tensor"
    c: "torch.Tensor | None"
    stream: int = 0
    start: int = 0
    other: "torch.Tensor | None" = None
    cosine: "CosineRange | None" = None

    def fp32(self, t: "torch.Tensor") -> "torch.Tensor":
        """An fp32 copy of `t` (b, c) we may modify, in the second scratch buffer when there is one."""
        return _fp32(t, self.other)


@dataclass(frozen=True)
class MethodSpec:
    """One merge method, described once."""

    name: str  # CLI / node value
    formula: str  # in words, for the explain report and tooltips
    needs_base: bool  # model C is an input
    elementwise: bool  # a tensor can be merged in slices (no whole-tensor statistic)
    supermerger: tuple[str, str]  # SuperMerger's (mode, calcmode) in sd_merge_recipe
    function: Callable[[Operands], "torch.Tensor"]
    zero_keeps_a: bool = True  # a block weight of 0 gives exactly A (so such keys are copied, not merged)
    uses_density: bool = False
    uses_seed: bool = False
    uses_beta: bool = False
    needs_cosine_range: bool = False  # a first pass over A and B gives the similarity range (cosine A/B)
    c_role: str = "base"  # what model C is for this method: "base" (B-C) or "third model"


REGISTRY: dict[str, MethodSpec] = {}


def _register(spec: MethodSpec) -> MethodSpec:
    if spec.name in REGISTRY:
        raise ValueError(f"merge method {spec.name!r} registered twice")
    REGISTRY[spec.name] = spec
    return spec


def method_spec(name: str) -> MethodSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown merge method {name!r}; choose one of: {', '.join(REGISTRY)}") from None


@dataclass(frozen=True)
class MergeMethod:
    """Which formula, and its knobs (density / seed for TIES and DARE, beta for the three-model sums)."""

    name: str = "weighted-sum"
    density: float = 0.5  # TIES / DARE: fraction of B-C kept
    seed: int = 0  # DARE mask seed
    beta: float = 0.0  # triple-sum / sum-twice: the weight of model C

    def __post_init__(self):
        method_spec(self.name)
        if not (isinstance(self.density, (int, float)) and 0.0 < float(self.density) <= 1.0):
            raise ValueError(f"density must be in (0, 1], got {self.density!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not (isinstance(self.beta, (int, float)) and math.isfinite(float(self.beta))):
            raise ValueError(f"beta must be a finite number, got {self.beta!r}")

    @property
    def spec(self) -> MethodSpec:
        return REGISTRY[self.name]

    @property
    def needs_base(self) -> bool:
        return self.spec.needs_base

    @property
    def elementwise(self) -> bool:
        """Whether a tensor can be merged in slices (TIES, slerp and cosine need a whole tensor)."""
        return self.spec.elementwise

    @property
    def zero_keeps_a(self) -> bool:
        return self.spec.zero_keeps_a

    @property
    def formula(self) -> str:
        spec = self.spec
        text = spec.formula
        if spec.uses_density:
            text += f", density {self.density:g}"
        if spec.uses_seed:
            text += f", seed {self.seed}"
        if spec.uses_beta:
            text += f", beta {self.beta:g}"
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


def _weighted_sum(op: Operands):
    other = op.fp32(op.b)
    op.out.mul_(1.0 - op.w)
    return op.out.add_(other.mul_(op.w))


def _add_difference(op: Operands):
    return op.out.add_(op.fp32(op.b).sub_(op.c).mul_(op.w))


def _dare(op: Operands):
    delta = op.fp32(op.b).sub_(op.c)
    density = op.method.density
    keep = dare_keep_mask(op.stream, op.start, delta.numel(), density, delta.device).view(delta.shape)
    delta.div_(density)
    delta.masked_fill_(~keep, 0.0)
    return op.out.add_(delta.mul_(op.w))


def _ties(op: Operands):
    import torch

    if op.start != 0:
        raise ValueError("TIES merges whole tensors only")
    delta = op.fp32(op.b).sub_(op.c)
    trimmed_b = trim_to_density(delta, op.method.density)
    trimmed_a = trim_to_density(op.out - op.c.to(torch.float32), op.method.density)
    elected = torch.sign(trimmed_a + trimmed_b)
    agree = (torch.sign(trimmed_b) == elected) & (trimmed_b != 0)
    kept = torch.where(agree, trimmed_b, torch.zeros((), dtype=delta.dtype, device=delta.device))
    return op.out.add_(kept.mul_(op.w))


SLERP_PARALLEL = 0.9995  # |cos| above this: the vectors are parallel enough that slerp = lerp


def _slerp(op: Operands):
    """Spherical interpolation between A and B seen as two flat vectors (their norms interpolate
    with them): ``sin((1-w)t)/sin(t)*A + sin(w t)/sin(t)*B`` with t the angle between them; linear
    ``A*(1-w) + B*w`` where either is zero or |cos t| > 0.9995. Coefficients in float64."""
    if op.start != 0:
        raise ValueError("slerp merges whole tensors only")
    import torch

    a, b, w = op.out, op.fp32(op.b), op.w
    a64, b64 = a.detach().reshape(-1).double(), b.detach().reshape(-1).double()
    norms = float(torch.linalg.vector_norm(a64)) * float(torch.linalg.vector_norm(b64))
    dot = max(-1.0, min(1.0, float(torch.dot(a64, b64)) / norms)) if norms > 0 else 1.0
    del a64, b64
    if abs(dot) > SLERP_PARALLEL:
        s_a, s_b = 1.0 - w, w
    else:
        theta = math.acos(dot)
        s_a, s_b = math.sin((1.0 - w) * theta) / math.sin(theta), math.sin(w * theta) / math.sin(theta)
    a.mul_(s_a)
    return a.add_(b.mul_(s_b))


def _train_difference(op: Operands):
    """SuperMerger's ``traindiff``: B-C scaled per element by how far B moved from A relative to
    how far it moved from C: ``A + 1.8*w * (B-C) * |B-A| / (|B-C| + |B-A|)`` (0 where both are 0)."""
    import torch

    b = op.b.to(torch.float32)
    c = op.c.to(torch.float32)
    diff = b - c
    from_a = (b - op.out).abs_()
    total = diff.abs() + from_a
    scale = torch.where(total != 0, from_a / total, torch.zeros((), dtype=torch.float32, device=b.device))
    new_diff = torch.sign(diff).mul_(scale.abs_()).mul_(diff.abs_())
    return op.out.add_(new_diff.mul_(op.w * 1.8))


def _cosine(favour_a: bool):
    def merge(op: Operands):
        from .cosine import cosine_mix

        return cosine_mix(op.out, op.b, op.w, op.cosine, favour_a=favour_a)

    return merge


def _triple_sum(op: Operands):
    w, beta = op.w, op.method.beta
    op.out.mul_(1.0 - w - beta)
    op.out.add_(op.fp32(op.b).mul_(w))
    return op.out.add_(op.fp32(op.c).mul_(beta))


def _sum_twice(op: Operands):
    w, beta = op.w, op.method.beta
    op.out.mul_(1.0 - w).add_(op.fp32(op.b).mul_(w))
    op.out.mul_(1.0 - beta)
    return op.out.add_(op.fp32(op.c).mul_(beta))


WEIGHTED_SUM = _register(MethodSpec(
    "weighted-sum", "A*(1-w) + B*w", needs_base=False, elementwise=True,
    supermerger=("Weight sum", "normal"), function=_weighted_sum,
)).name
ADD_DIFFERENCE = _register(MethodSpec(
    "add-difference", "A + (B-C)*w", needs_base=True, elementwise=True,
    supermerger=("Add difference", "normal"), function=_add_difference,
)).name
TIES = _register(MethodSpec(
    "ties", "A + w*ties(B-C | A-C)  (trim to density, elect sign by mass, keep B's agreeing part)",
    needs_base=True, elementwise=False, supermerger=("TIES (add difference)", "normal"), function=_ties,
    uses_density=True,
)).name
DARE = _register(MethodSpec(
    "dare", "A + w*dare(B-C)  (keep each element with probability density, rescale by 1/density)",
    needs_base=True, elementwise=True, supermerger=("DARE (add difference)", "normal"), function=_dare,
    uses_density=True, uses_seed=True,
)).name
SLERP = _register(MethodSpec(
    "slerp", "slerp(A, B, w)  (spherical interpolation per tensor; linear where A and B are parallel)",
    needs_base=False, elementwise=False, supermerger=("slerp", "normal"), function=_slerp,
)).name
TRAIN_DIFFERENCE = _register(MethodSpec(
    "train-difference", "A + 1.8*w*(B-C)*|B-A|/(|B-C|+|B-A|)  (SuperMerger train difference)",
    needs_base=True, elementwise=True, supermerger=("Add difference", "trainDifference"), function=_train_difference,
)).name
COSINE_A = _register(MethodSpec(
    "cosine-a", "A*k + B*(1-k), k = clip(norm(cos(A,B)) - |w|, 0, 1)  (SuperMerger cosineA: A's structure, B's details)",
    needs_base=False, elementwise=False, supermerger=("Weight sum", "cosineA"), function=_cosine(True),
    zero_keeps_a=False, needs_cosine_range=True,
)).name
COSINE_B = _register(MethodSpec(
    "cosine-b", "A*k + B*(1-k), k = clip(norm(cos(A,B)) - w, 0, 1)  (SuperMerger cosineB: B's structure, A's details)",
    needs_base=False, elementwise=False, supermerger=("Weight sum", "cosineB"), function=_cosine(False),
    zero_keeps_a=False, needs_cosine_range=True,
)).name
TRIPLE_SUM = _register(MethodSpec(
    "triple-sum", "A*(1-w-beta) + B*w + C*beta", needs_base=True, elementwise=True,
    supermerger=("Triple sum", "normal"), function=_triple_sum, zero_keeps_a=False, uses_beta=True, c_role="third model",
)).name
SUM_TWICE = _register(MethodSpec(
    "sum-twice", "(A*(1-w) + B*w)*(1-beta) + C*beta", needs_base=True, elementwise=True,
    supermerger=("sum Twice", "normal"), function=_sum_twice, zero_keeps_a=False, uses_beta=True, c_role="third model",
)).name

METHODS = tuple(REGISTRY)  # the CLI / node choices, in registry order (existing values first)


def methods_help() -> str:
    """One line per method for tooltips and --help."""
    return "; ".join(f"{s.name}: {s.formula}" for s in REGISTRY.values())


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
    cosine: "CosineRange | None" = None,
) -> torch.Tensor:
    """Merge one tensor (or, for elementwise methods, a flat slice starting at element `start`).

    `stream` is `key_seed(method.seed, key)` for DARE. `scratch` is two flat fp32 buffers the result
    may live in (the streaming merge reuses them to avoid allocating per slice). `cosine` is the
    similarity range of the cosine methods' first pass. Returns fp32.
    """
    if a.shape != b.shape or (c is not None and c.shape != a.shape):
        raise ValueError(f"shape mismatch: A {tuple(a.shape)}, B {tuple(b.shape)}, C {None if c is None else tuple(c.shape)}")
    spec = method.spec
    if spec.needs_base and c is None:
        raise ValueError(f"the {method.name} method needs a {'base model' if spec.c_role == 'base' else 'third model'} C")
    if spec.needs_cosine_range and cosine is None:
        raise ValueError(f"the {method.name} method needs the cosine similarity range of a first pass over A and B")
    first, second = scratch if scratch is not None and spec.elementwise else (None, None)
    op = Operands(method, float(w), _fp32(a, first), b, c, stream, start, second, cosine)
    return spec.function(op)
