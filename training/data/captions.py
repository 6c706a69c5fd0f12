"""The caption pipeline, redrawn each time a sample is drawn, in kohya sd-scripts' order.

1. prefix / suffix are added as extra tags; 2. caption dropout: with `caption_dropout_rate` (or on
every Nth epoch) the caption becomes "" and nothing else happens; 3. split on `caption_separator`:
with `keep_tokens_separator` in the caption the part before it is a fixed prefix and the part after
a second one a fixed suffix, otherwise the first `keep_tokens` tags are fixed; 4. the middle tags
are shuffled; 5. tag dropout removes shuffled tags only; 6. re-joined as `", ".join` (see tags.joiner).

Unlike kohya, the caption is always split and re-joined, so spacing is normalised and the
keep-tokens marker never leaks into the prompt even with shuffle and dropout off.

All randomness comes from the `rng` argument, which the loader derives per draw (see loader.py),
so a draw is a pure function of (caption, config, rng seed, epoch).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .tags import join_tags, split_tags


@dataclass(frozen=True)
class CaptionConfig:
    prefix: str = ""
    suffix: str = ""
    caption_dropout_rate: float = 0.0
    caption_dropout_every_n_epochs: int = 0
    keep_tokens: int = 0
    keep_tokens_separator: str = ""
    shuffle_caption: bool = False
    caption_tag_dropout_rate: float = 0.0
    caption_separator: str = ","

    def __post_init__(self):
        for name in ("caption_dropout_rate", "caption_tag_dropout_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        for name in ("caption_dropout_every_n_epochs", "keep_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if not self.caption_separator:
            raise ValueError("caption_separator must not be empty (kohya's default is ',')")
        if self.keep_tokens_separator and self.keep_tokens_separator == self.caption_separator:
            raise ValueError(f"keep_tokens_separator {self.keep_tokens_separator!r} must differ from caption_separator")

    @property
    def can_drop_caption(self) -> bool:
        return self.caption_dropout_rate > 0 or self.caption_dropout_every_n_epochs > 0


def with_prefix_suffix(caption: str, cfg: CaptionConfig) -> str:
    """Prefix and suffix joined as tags; a keep-tokens marker inside them keeps working."""
    sep = cfg.caption_separator
    parts = [cfg.prefix.strip().strip(sep).strip(), caption.strip(), cfg.suffix.strip().strip(sep).strip()]
    return join_tags([p for p in parts if p], sep)


def caption_dropped(cfg: CaptionConfig, rng: random.Random, epoch: int) -> bool:
    every = cfg.caption_dropout_every_n_epochs
    by_rate = cfg.caption_dropout_rate > 0 and rng.random() < cfg.caption_dropout_rate
    return by_rate or (every > 0 and epoch % every == 0)


def split_fixed(caption: str, cfg: CaptionConfig) -> tuple[list[str], list[str], list[str]]:
    """(fixed prefix, shuffleable middle, fixed suffix) tags."""
    sep, marker = cfg.caption_separator, cfg.keep_tokens_separator
    if marker and marker in caption:
        head, rest = caption.split(marker, 1)
        middle, tail = rest.split(marker, 1) if marker in rest else (rest, "")
        tail = tail.replace(marker, sep)
        return split_tags(head, sep), split_tags(middle, sep), split_tags(tail, sep)
    tags = split_tags(caption, sep)
    return tags[: cfg.keep_tokens], tags[cfg.keep_tokens :], []


def process_caption(caption: str, cfg: CaptionConfig, rng: random.Random, epoch: int) -> str:
    """One draw of `caption` for training at `epoch` (1-based)."""
    text = with_prefix_suffix(caption, cfg)
    if caption_dropped(cfg, rng, epoch):
        return ""
    fixed, middle, fixed_suffix = split_fixed(text, cfg)
    if cfg.shuffle_caption:
        rng.shuffle(middle)
    if cfg.caption_tag_dropout_rate > 0:
        middle = [tag for tag in middle if rng.random() >= cfg.caption_tag_dropout_rate]
    return join_tags(fixed + middle + fixed_suffix, cfg.caption_separator)
