"""Caching text-encoder outputs without freezing shuffle and dropout (SimpleTuner's approach).

Caching one encoding per caption would make tag shuffle, tag dropout and caption dropout do
nothing. Instead each caption gets K processed variants (shuffled / tag-dropped) plus the empty
caption when caption dropout is on; the trainer encodes each variant once and, at every step, uses
the variant `choose_variant` picks for the caption the loader drew. Training the text encoder makes
any cache stale, so that combination is refused.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace

from .captions import CaptionConfig, process_caption


def check_text_cache_allowed(cache_text_encoder_outputs: bool, train_text_encoder: bool) -> None:
    if cache_text_encoder_outputs and train_text_encoder:
        raise ValueError(
            "cache_text_encoder_outputs cannot be used while training the text encoder: the cached outputs "
            "would be those of the untrained encoder; turn off text-encoder training or the cache"
        )


def caption_variants(caption: str, cfg: CaptionConfig, k: int, seed: int) -> list[str]:
    """Up to `k` distinct processed versions of `caption` (shuffle and tag dropout applied, caption
    dropout not), in draw order, then "" when caption dropout is configured. Without shuffle or
    tag dropout all draws are equal, so one variant (plus "") is returned."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"the number of caption variants must be a positive integer, got {k!r}")
    kept = replace(cfg, caption_dropout_rate=0.0, caption_dropout_every_n_epochs=0)
    variants: list[str] = []
    for i in range(k):
        variant = process_caption(caption, kept, random.Random(f"animekit:text-variant:{seed}:{i}:{caption}"), 1)
        if variant not in variants:
            variants.append(variant)
    if cfg.can_drop_caption and "" not in variants:
        variants.append("")
    return variants


def choose_variant(variants: list[str], drawn_caption: str) -> int:
    """Index of the cached variant standing in for the caption the loader drew this step.

    A dropped caption ("") maps to the "" variant, a draw equal to a variant to that variant, and
    any other draw to a non-empty variant picked by a stable hash of the draw, so the choice is as
    random as the draw and as deterministic (resume-exact) as the loader."""
    if not variants:
        raise ValueError("variants must not be empty")
    if drawn_caption in variants:
        return variants.index(drawn_caption)
    candidates = [i for i, v in enumerate(variants) if v] or list(range(len(variants)))
    digest = hashlib.blake2b(drawn_caption.encode("utf-8"), digest_size=8).digest()
    return candidates[int.from_bytes(digest, "big") % len(candidates)]
