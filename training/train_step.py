"""One micro-step's forward pass as an nn.Module, so Accelerate / DDP can wrap what trains.

Only trained weights are registered here (the LoRA network, or the fine-tuned UNet / text
encoders); frozen modules are reached through the bundle. So DDP synchronises exactly the
trained parameters and never broadcasts a frozen multi-GB UNet.
"""

from __future__ import annotations

import torch
from torch import nn

from .lora_network import LoraNetwork
from .protocols import ModelBundle, SizeConditioning, TextConditioning


class TrainStep(nn.Module):
    def __init__(self, bundle: ModelBundle, network: LoraNetwork | None, trained_parts: list[str], text_trains: bool):
        super().__init__()
        self._bundle = bundle  # plain attribute: not registered, not synchronised
        self.text_trains = text_trains
        if network is not None:
            self.network = network
        else:
            self.parts = nn.ModuleDict({part: bundle.part_module(part) for part in trained_parts})

    def forward(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        captions: list[str],
        text: TextConditioning | None,
        sizes: SizeConditioning | None,
    ) -> torch.Tensor:
        bundle = self._bundle
        if text is None:
            with torch.set_grad_enabled(self.text_trains and torch.is_grad_enabled()):
                text = bundle.text_encoders.encode(captions, noisy_latents.device)
        return bundle.denoiser(noisy_latents, timesteps, text, sizes)
