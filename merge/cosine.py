"""SuperMerger's cosine A / cosine B merges: a first pass over A and B finds the range of their
cosine similarities, then each tensor mixes A and B by where its similarity falls in that range.

From hako-mikan/sd-webui-supermerger, scripts/mergers/mergers.py (``precosine`` and ``cosine``):

- first pass: per merged key, the cosine similarity of A's and B's columns (``dim=0``) --
  cosine A: of the column-normalised tensors; cosine B: the mean of that and the whole-tensor
  similarity. NaNs dropped, then values under the 1st and over the 99th percentile ("midpoint"),
  the second percentile taken after the first cut, as SuperMerger does. Their min and max are the range.
- merge: ``s`` = mean of the column similarity and the whole-tensor similarity (cosine A of the
  normalised tensors), ``k = clip((s - min)/(max - min) - w, 0, 1)`` (cosine A uses ``|w|``),
  result ``B*(1-k) + A*k``: similar columns keep A, dissimilar ones take B; w = 1 gives B.

One difference, stated: SuperMerger's first pass also counts buffers such as ``position_ids``; here it
counts exactly the keys the merge plan merges (weights and biases of the UNet and text encoders).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class CosineRange:
    """The trimmed min and max of the first pass's similarities."""

    low: float
    high: float
    count: int  # similarities kept after trimming


def _normalized(t: "torch.Tensor") -> "torch.Tensor":
    import torch.nn.functional as F

    return F.normalize(t, p=2, dim=0)


def _whole(a: "torch.Tensor", b: "torch.Tensor") -> "torch.Tensor":
    import torch

    return torch.dot(a.reshape(-1), b.reshape(-1)) / (torch.norm(a) * torch.norm(b))


def first_pass_values(a: "torch.Tensor", b: "torch.Tensor", *, favour_a: bool) -> "torch.Tensor":
    """One key's contribution to the first pass (a flat float64 tensor)."""
    import torch
    import torch.nn.functional as F

    a, b = a.to(torch.float32), b.to(torch.float32)
    if favour_a:
        sim = F.cosine_similarity(_normalized(a), _normalized(b), dim=0)
    else:
        sim = (F.cosine_similarity(a, b, dim=0) + _whole(a, b)) / 2.0
    return sim.reshape(-1).to(torch.float64)


def cosine_range(values: Iterable["torch.Tensor"]) -> CosineRange:
    """Drop NaNs, cut under the 1st and over the 99th percentile (midpoint), return min and max."""
    import numpy as np

    parts = [v.cpu().numpy() for v in values]
    sims = np.concatenate(parts) if parts else np.zeros(0)
    sims = sims[~np.isnan(sims)]
    if sims.size == 0:
        raise ValueError("cosine merge: no similarities (no merged tensor had a finite cosine similarity)")
    sims = np.delete(sims, np.where(sims < np.percentile(sims, 1, method="midpoint")))
    sims = np.delete(sims, np.where(sims > np.percentile(sims, 99, method="midpoint")))
    return CosineRange(float(sims.min()), float(sims.max()), int(sims.size))


def cosine_mix(a32: "torch.Tensor", b: "torch.Tensor", w: float, span: CosineRange, *, favour_a: bool) -> "torch.Tensor":
    """``B*(1-k) + A*k`` for one whole tensor; `a32` is an fp32 copy of A (returned values are new)."""
    import torch
    import torch.nn.functional as F

    b32 = b.to(torch.float32)
    if favour_a:
        an, bn = _normalized(a32), _normalized(b32)
        sim = F.cosine_similarity(an, bn, dim=0)
        whole = _whole(an, bn)
        offset = abs(float(w))
    else:
        sim = F.cosine_similarity(a32, b32, dim=0)
        whole = _whole(a32, b32)
        offset = float(w)
    width = span.high - span.low
    if not width > 0:
        raise ValueError(f"cosine merge: the similarity range is empty ({span.low:g}..{span.high:g}); the models are too alike")
    k = ((sim + whole) / 2.0 - span.low) / width - offset
    k = k.clip(min=0.0, max=1.0)
    return b32 * (1 - k) + a32 * k
