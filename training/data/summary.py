"""A scanned dataset in a few lines: what the Dataset node shows before anything trains."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from .captions import process_caption
from .dataset import DatasetConfig, DatasetIndex

TOP_TAGS = 15
SKIPPED_SHOWN = 5


def describe(index: DatasetIndex, config: DatasetConfig, folder: Path) -> str:
    """Images and samples per epoch, folders with repeats, buckets, top tags, skipped files, one caption draw."""
    records = index.records
    per_epoch = sum(r.repeats for r in records)
    lines = [f"{len(records)} images in {folder} ({per_epoch} samples per epoch with repeats)"]
    groups = Counter((Path(r.folder).name, r.repeats) for r in records)
    lines.append("folders: " + ", ".join(f"{name} ({n} x {rep})" for (name, rep), n in sorted(groups.items())))
    b = config.buckets
    bounds = "no upscale" if b.no_upscale else f"{b.min_size}..{b.max_size}"
    counts = sorted(index.bucket_counts().items(), key=lambda item: -item[1])
    lines.append(
        f"buckets (resolution {b.resolution}, {bounds}, step {b.step}): " + ", ".join(f"{w}x{h}: {n}" for (w, h), n in counts)
    )
    tags: Counter = Counter()
    for folder_tags in index.tag_frequency().values():
        tags.update(folder_tags)
    if tags:
        lines.append("top tags: " + ", ".join(f"{tag} ({n})" for tag, n in tags.most_common(TOP_TAGS)))
    if index.skipped:
        shown = "; ".join(f"{Path(p).name}: {why}" for p, why in index.skipped[:SKIPPED_SHOWN])
        more = f" (+{len(index.skipped) - SKIPPED_SHOWN} more)" if len(index.skipped) > SKIPPED_SHOWN else ""
        lines.append(f"skipped {len(index.skipped)}: {shown}{more}")
    example = records[0]
    drawn = process_caption(example.caption, example.captions, random.Random(0), 1)
    lines.append(f"caption as trained (one draw): {drawn!r}" if drawn else "caption as trained (one draw): '' (dropped)")
    return "\n".join(lines)
