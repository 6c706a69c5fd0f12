"""Exponential moving average of the trained weights (diffusers.training_utils.EMAModel).

Saved files use the averaged weights; training continues on the raw ones, which is why the swap
in `averaged_weights` restores them afterwards.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn

from .config import EmaConfig


class Ema:
    def __init__(self, cfg: EmaConfig, params: list[nn.Parameter]):
        from diffusers.training_utils import EMAModel

        self.params = params
        self.model = EMAModel(params, decay=cfg.decay, update_after_step=cfg.update_after_step, foreach=True)

    def step(self) -> None:
        self.model.step(self.params)

    @contextlib.contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """Temporarily put the averaged weights into the trained parameters."""
        self.model.store(self.params)
        self.model.copy_to(self.params)
        try:
            yield
        finally:
            self.model.restore(self.params)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
        self.model.to(device=self.params[0].device)  # states load on the CPU
