"""Cached text-encoder outputs that keep caption shuffle and dropout working.

Each image's caption is expanded into its processed variants (data/text_cache.caption_variants),
each distinct text is encoded once, and every step uses the variant `choose_variant` maps the
loader's drawn caption to. Stored on the CPU in the autocast dtype; the encoders can then leave
the GPU.
"""

from __future__ import annotations

from typing import Callable

import torch

from .data.dataset import DatasetIndex
from .data.text_cache import caption_variants, choose_variant
from .protocols import TextConditioning, TextEncoders


class TextOutputCache:
    def __init__(
        self,
        encoders: TextEncoders,
        index: DatasetIndex,
        variants: int,
        seed: int,
        device: torch.device,
        dtype: torch.dtype,
        batch_size: int = 16,
        progress: Callable[[int, int], None] | None = None,
    ):
        self.variants: dict[str, list[str]] = {
            record.path: caption_variants(record.caption, record.captions, variants, seed) for record in index.records
        }
        texts = sorted({text for options in self.variants.values() for text in options})
        self.outputs: dict[str, TextConditioning] = {}
        if progress is not None:
            progress(0, len(texts))
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                chunk = texts[start : start + batch_size]
                encoded = encoders.encode(chunk, device).to("cpu", dtype)
                self.outputs.update(zip(chunk, encoded.split()))
                if progress is not None:
                    progress(min(start + batch_size, len(texts)), len(texts))

    def __len__(self) -> int:
        return len(self.outputs)

    def lookup(self, paths: list[str], drawn: list[str], device: torch.device) -> TextConditioning:
        items = []
        for path, caption in zip(paths, drawn):
            options = self.variants[path]
            items.append(self.outputs[options[choose_variant(options, caption)]])
        return TextConditioning.stack(items).to(device)
