"""The SuperMerger-mode formulas written out independently of merge/methods.py and merge/cosine.py,
for the file-merge and the in-graph tests (fp32 in, fp32 out)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def cos_stats(pairs, favour_a: bool) -> tuple[float, float]:
    values = []
    for a, b in pairs:
        if favour_a:
            sim = F.cosine_similarity(F.normalize(a, dim=0), F.normalize(b, dim=0), dim=0)
        else:
            whole = (a.flatten() @ b.flatten()) / (a.norm() * b.norm())
            sim = (F.cosine_similarity(a, b, dim=0) + whole) / 2
        values.append(sim.reshape(-1).double().numpy())
    sims = np.concatenate(values)
    sims = sims[~np.isnan(sims)]
    sims = sims[sims >= np.percentile(sims, 1, method="midpoint")]
    sims = sims[sims <= np.percentile(sims, 99, method="midpoint")]
    return float(sims.min()), float(sims.max())


def expected(name: str, w: float, a, b, c, *, beta: float, stats=None):
    if name == "slerp":
        a64, b64 = a.reshape(-1).double(), b.reshape(-1).double()
        cos = float(a64 @ b64) / (float(a64.norm()) * float(b64.norm()))
        if abs(cos) > 0.9995:
            return a * (1 - w) + b * w
        t = math.acos(cos)
        return a * (math.sin((1 - w) * t) / math.sin(t)) + b * (math.sin(w * t) / math.sin(t))
    if name == "train-difference":
        total = (b - c).abs() + (b - a).abs()
        ratio = torch.where(total != 0, (b - a).abs() / total, torch.zeros(()))
        return a + torch.sign(b - c) * ratio * (b - c).abs() * (w * 1.8)
    if name in ("cosine-a", "cosine-b"):
        low, high = stats
        if name == "cosine-a":
            an, bn = F.normalize(a, dim=0), F.normalize(b, dim=0)
            s = (F.cosine_similarity(an, bn, dim=0) + (an.flatten() @ bn.flatten()) / (an.norm() * bn.norm())) / 2
            k = ((s - low) / (high - low) - abs(w)).clip(0, 1)
        else:
            s = (F.cosine_similarity(a, b, dim=0) + (a.flatten() @ b.flatten()) / (a.norm() * b.norm())) / 2
            k = ((s - low) / (high - low) - w).clip(0, 1)
        return b * (1 - k) + a * k
    if name == "triple-sum":
        return a * (1 - w - beta) + b * w + c * beta
    assert name == "sum-twice"
    return (a * (1 - w) + b * w) * (1 - beta) + c * beta
