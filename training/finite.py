"""Non-finite weights never reach a file: the trainer checks what it is about to save."""

from __future__ import annotations

from typing import Mapping

import torch


def first_non_finite(tensors: Mapping[str, object]) -> str | None:
    """`'<name>: N inf / M NaN values'` for the first tensor holding inf or NaN; None when all are finite."""
    for name, value in tensors.items():
        if isinstance(value, Mapping):
            nested = first_non_finite(value)
            if nested is not None:
                return f"{name}.{nested}"
            continue
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            continue
        if bool(torch.isfinite(value).all()):
            continue
        inf = int(torch.isinf(value).sum())
        nan = int(torch.isnan(value).sum())
        return f"{name}: {inf} inf / {nan} NaN values"
    return None
