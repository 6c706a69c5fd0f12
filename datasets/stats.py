"""Inspecting a dataset before training: one report of what would go wrong or be wasted.

- tag frequencies (over the caption files, separators ignored);
- the bucket histogram (kohya buckets, nearest by aspect ratio, as the trainer assigns them);
- captions longer than CLIP's 75-token window and than 225 (three windows, kohya's
  max_token_length): counted exactly with a CLIP tokenizer when one is given (a folder with
  vocab.json + merges.txt), else with an approximation, stated in the report: the number of pieces
  CLIP's pre-tokeniser splits the text into (words, single digits, punctuation runs), a lower bound
  since its BPE may split a rare word further;
- images smaller than the smallest bucket on both sides (they would be enlarged to train);
- exact duplicates (same bytes, sha256) and near duplicates (64-bit difference hash of the
  decoded image within a Hamming distance, default 4).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..sizes.resolutions import nearest_bucket
from ..training.data.dataset import BucketConfig
from .caption_format import KEEP_TOKENS_SEPARATOR
from .images import caption_path, dataset_images, read_image

TOKEN_LIMITS = (75, 225)
# CLIP's pre-tokeniser pattern (letters, single digits, other non-space runs), without \p classes.
_CLIP_PIECES = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+", re.IGNORECASE)
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


@dataclass(frozen=True)
class StatsConfig:
    buckets: BucketConfig = BucketConfig()
    caption_extension: str = ".txt"
    near_distance: int = 4  # near duplicates: dHash bits that may differ (of 64)
    top_tags: int = 30
    tokenizer: str | None = None  # a folder with CLIP's vocab.json + merges.txt for exact counts


class TokenCounter:
    """Tokens of a caption as the text encoder sees them (without the start/end tokens)."""

    def __init__(self, folder: str | None):
        self.exact = False
        self.tokenizer = None
        if folder:
            vocab, merges = Path(folder) / "vocab.json", Path(folder) / "merges.txt"
            if not (vocab.is_file() and merges.is_file()):
                raise ValueError(f"tokenizer: {folder!r} needs CLIP's vocab.json and merges.txt")
            from transformers import CLIPTokenizer

            self.tokenizer = CLIPTokenizer(str(vocab), str(merges))
            self.exact = True

    @property
    def method(self) -> str:
        return "CLIP tokenizer" if self.exact else "approximate (CLIP pre-tokeniser pieces; a lower bound)"

    def __call__(self, text: str) -> int:
        if self.tokenizer is not None:
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return len(_CLIP_PIECES.findall(text.lower()))


def difference_hash(image: Image.Image) -> int:
    """64-bit dHash: a 9x8 grey thumbnail, one bit per left-right brightness step."""
    grey = np.asarray(image.convert("L").resize((9, 8), Image.BILINEAR), dtype=np.int16)
    bits = (grey[:, 1:] > grey[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


def near_pairs(hashes: list[int], distance: int) -> list[tuple[int, int, int]]:
    """(i, j, bits differing) for every pair within `distance`, i < j; chunked, all in numpy."""
    values = np.array(hashes, dtype=np.uint64)
    found = []
    for start in range(0, len(values), 512):
        block = values[start : start + 512]
        xor = block[:, None] ^ values[None, :]
        bits = _POPCOUNT[xor.view(np.uint8).reshape(*xor.shape, 8)].sum(-1)
        for i, j in zip(*np.nonzero(bits <= distance)):
            if start + i < j:
                found.append((int(start + i), int(j), int(bits[i, j])))
    return found


@dataclass
class StatsReport:
    folder: Path
    images: int = 0
    captioned: int = 0
    tag_counts: Counter = field(default_factory=Counter)
    buckets: Counter = field(default_factory=Counter)
    token_method: str = ""
    over_limits: dict[int, list[tuple[str, int]]] = field(default_factory=dict)  # limit -> (caption, tokens)
    too_small: list[tuple[str, int, int]] = field(default_factory=list)
    smallest_side: int = 0
    exact_duplicates: list[list[str]] = field(default_factory=list)
    near_duplicates: list[tuple[str, str, int]] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    top_tags: int = 30

    def to_dict(self) -> dict:
        return {
            "folder": str(self.folder), "images": self.images, "captioned": self.captioned,
            "tags": dict(self.tag_counts.most_common()),
            "buckets": {f"{w}x{h}": n for (w, h), n in sorted(self.buckets.items())},
            "token_method": self.token_method,
            "over_tokens": {str(limit): [{"caption": c, "tokens": n} for c, n in found] for limit, found in self.over_limits.items()},
            "too_small": [{"image": p, "width": w, "height": h} for p, w, h in self.too_small],
            "smallest_bucket_side": self.smallest_side,
            "exact_duplicates": self.exact_duplicates,
            "near_duplicates": [{"a": a, "b": b, "distance": d} for a, b, d in self.near_duplicates],
            "unreadable": [{"image": p, "error": e} for p, e in self.unreadable],
        }  # fmt: skip

    def text(self) -> str:
        lines = [f"{self.images} images in {self.folder}, {self.captioned} with captions"]
        top = ", ".join(f"{tag} ({n})" for tag, n in self.tag_counts.most_common(self.top_tags))
        lines.append(f"tags: {len(self.tag_counts)} distinct; most used: {top or 'none'}")
        lines.append("buckets: " + (", ".join(f"{w}x{h}: {n}" for (w, h), n in sorted(self.buckets.items())) or "none"))
        for limit, found in self.over_limits.items():
            worst = ", ".join(f"{Path(c).name} ({n})" for c, n in sorted(found, key=lambda x: -x[1])[:5])
            lines.append(f"captions over {limit} tokens: {len(found)}" + (f" (longest: {worst})" if found else ""))
        lines.append(f"  token counts: {self.token_method}")
        smalls = ", ".join(f"{Path(p).name} {w}x{h}" for p, w, h in self.too_small[:5])
        lines.append(f"smaller than the smallest bucket side ({self.smallest_side}): {len(self.too_small)}" + (f" ({smalls})" if smalls else ""))
        lines.append(f"exact duplicates: {len(self.exact_duplicates)} groups" + "".join(
            f"\n  {' = '.join(Path(p).name for p in group)}" for group in self.exact_duplicates[:10]))
        lines.append(f"near duplicates: {len(self.near_duplicates)} pairs" + "".join(
            f"\n  {Path(a).name} ~ {Path(b).name} ({d} bits)" for a, b, d in self.near_duplicates[:10]))
        if self.unreadable:
            lines.append(f"unreadable images: {len(self.unreadable)} (first: {self.unreadable[0][0]}: {self.unreadable[0][1]})")
        return "\n".join(lines)


def dataset_stats(folder: str | Path, cfg: StatsConfig = StatsConfig(), *,
                  progress: Callable[[int, int], None] | None = None,
                  check_cancel: Callable[[], None] | None = None) -> StatsReport:  # fmt: skip
    """Read every image and caption of `folder` once and report."""
    images = dataset_images(folder)
    counter = TokenCounter(cfg.tokenizer)
    buckets = None if cfg.buckets.no_upscale else cfg.buckets.buckets()
    least = cfg.buckets.step if cfg.buckets.no_upscale else cfg.buckets.min_size
    report = StatsReport(Path(folder), images=len(images), token_method=counter.method, smallest_side=least,
                         over_limits={limit: [] for limit in TOKEN_LIMITS}, top_tags=cfg.top_tags)  # fmt: skip
    by_digest: dict[str, list[str]] = {}
    hashed: list[tuple[str, int]] = []
    for done, image in enumerate(images, start=1):
        if check_cancel is not None:
            check_cancel()
        _caption_stats(image, cfg, counter, report)
        try:
            data = image.read_bytes()
            pixels = read_image(image)
        except (OSError, ValueError) as exc:
            report.unreadable.append((str(image), str(exc)))
        else:
            by_digest.setdefault(hashlib.sha256(data).hexdigest(), []).append(str(image))
            hashed.append((str(image), difference_hash(pixels)))
            width, height = pixels.size
            if buckets is not None:
                report.buckets[nearest_bucket(width, height, buckets)] += 1
            if width < least and height < least:
                report.too_small.append((str(image), width, height))
        if progress is not None:
            progress(done, len(images))
    report.exact_duplicates = [group for group in by_digest.values() if len(group) > 1]
    same = {path: digest for digest, group in by_digest.items() for path in group}
    for i, j, bits in near_pairs([h for _, h in hashed], cfg.near_distance):
        a, b = hashed[i][0], hashed[j][0]
        if same[a] != same[b]:  # exact copies are listed above
            report.near_duplicates.append((a, b, bits))
    return report


def _caption_stats(image: Path, cfg: StatsConfig, counter: TokenCounter, report: StatsReport) -> None:
    path = caption_path(image, cfg.caption_extension)
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8-sig", errors="replace").strip()
    report.captioned += 1
    tags = [t.strip().lower() for t in text.replace(KEEP_TOKENS_SEPARATOR, ",").split(",") if t.strip()]
    report.tag_counts.update(list(dict.fromkeys(tags)))  # once per caption
    tokens = counter(", ".join(tags))
    for limit in TOKEN_LIMITS:
        if tokens > limit:
            report.over_limits[limit].append((str(path), tokens))
