"""Validation loss: held-out images scored with fixed timesteps and fixed noise (kohya's validation loss).

`validation.split` holds a share of the images out of training, chosen by a hash of their paths (the
same images on every run and resume). Each held-out image is encoded once at setup, with its caption
as written (prefix and suffix, no dropout or shuffling), and gets one fixed noise draw per timestep in
`validation.timesteps`; every `validation.every_n_steps` the model's mean loss over them is computed
without gradients. A falling training loss over a flat or rising validation loss is overfitting.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random

import torch

from .config import ValidationConfig
from .data.captions import process_caption
from .data.dataset import DatasetIndex
from .data.images import load_training_image
from .protocols import ModelBundle, SizeConditioning, TextConditioning


def split_index(index: DatasetIndex, cfg: ValidationConfig) -> tuple[DatasetIndex, list]:
    """(the training index, the held-out records); at least one image on each side when split is on."""
    if not cfg.split:
        return index, []
    if len(index.records) < 2:
        raise ValueError("validation.split needs at least 2 images: one to train on, one to hold out")
    ranked = sorted(index.records, key=lambda r: hashlib.sha1(f"{cfg.seed}:{r.path}".encode()).hexdigest())
    count = min(len(ranked) - 1, max(1, math.ceil(cfg.split * len(ranked))))
    held = {r.path for r in ranked[:count]}
    train = [r for r in index.records if r.path not in held]
    return dataclasses.replace(index, records=train), [r for r in index.records if r.path in held]


class ValidationSet:
    """Latents, captions, text and fixed noise of the held-out images, ready to score."""

    def __init__(self, records: list, cfg: ValidationConfig, bundle: ModelBundle, objective, device, encode_latents, encode_text: bool):
        self.cfg, self.objective, self.device = cfg, objective, device
        generator = torch.Generator().manual_seed(cfg.seed)
        self.items = []
        for record in records:
            image = load_training_image(record, False, False, random.Random(0))
            latents = encode_latents(image.pixels.unsqueeze(0)).to(device, torch.float32)
            plain = dataclasses.replace(
                record.captions, caption_dropout_rate=0.0, caption_dropout_every_n_epochs=0, shuffle_caption=False,
                caption_tag_dropout_rate=0.0,
            )  # fmt: skip
            caption = process_caption(record.caption, plain, random.Random(0), 1)
            text = None
            if encode_text:
                with torch.no_grad():
                    encoded = bundle.text_encoders.encode([caption], device)
                text = TextConditioning(
                    encoded.hidden_states.detach(), None if encoded.pooled is None else encoded.pooled.detach()
                )
            sizes = SizeConditioning(
                *(torch.tensor([list(v)], dtype=torch.long, device=device) for v in (image.original_size, image.crop_top_left, image.target_size))
            )
            noise = [torch.randn(latents.shape, generator=generator).to(device) for _ in cfg.timesteps]
            self.items.append((latents, caption, text, sizes, noise))

    @torch.no_grad()
    def loss(self, step_module, autocast) -> float:
        """Mean loss over every held-out image and fixed timestep."""
        total, count = 0.0, 0
        for latents, caption, text, sizes, noises in self.items:
            for t, noise in zip(self.cfg.timesteps, noises):
                timesteps = torch.tensor([t], device=self.device, dtype=torch.long)
                noisy = self.objective.add_noise(latents, noise, timesteps)
                target = self.objective.target(latents, noise, timesteps)
                with autocast():
                    prediction = step_module(noisy, timesteps, [caption], text, sizes)
                total += float(self.objective.loss(prediction, target, timesteps))
                count += 1
        return total / count
