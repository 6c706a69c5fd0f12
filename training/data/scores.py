"""Aesthetic scores beside the images, and training only on the images above a threshold.

`animekit dataset score` (datasets/aesthetic.py) writes one `aesthetic_scores.json` per image folder:
`{"scorer": ..., "scores": {"image.png": 0.93, ...}}`. The trainer reads it when the dataset config
has `min_aesthetic_score`, and leaves out (never deletes) images scoring below it, as AnimeDiffusion
filtered 730K images to 430K with Cafe-aesthetic.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ...files.atomic import atomic_output

SCORES_FILE = "aesthetic_scores.json"


def read_scores(folder: str | Path) -> dict[str, float]:
    """Image file name -> score for one folder; {} when it has no scores file."""
    path = Path(folder) / SCORES_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable scores file ({exc}); score the folder again") from None
    scores = data.get("scores") if isinstance(data, dict) else None
    if not isinstance(scores, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values()):
        raise ValueError(f"{path}: expected {{\"scores\": {{\"image.png\": number, ...}}}}; score the folder again")
    return {str(name): float(value) for name, value in scores.items()}


def write_scores(folder: str | Path, scores: dict[str, float], scorer: str) -> Path:
    """Merge `scores` into the folder's scores file (atomically); other images' scores stay."""
    for name, value in scores.items():
        if not math.isfinite(value):
            raise ValueError(f"aesthetic score of {name} is {value}; the scorer gave no usable number")
    path = Path(folder) / SCORES_FILE
    merged = read_scores(folder)
    merged.update(scores)
    text = json.dumps({"scorer": scorer, "scores": dict(sorted(merged.items()))}, indent=1, ensure_ascii=False)
    with atomic_output(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return path


def below_threshold(paths: list[str], threshold: float) -> dict[str, str]:
    """Image path -> why it is left out (scored under `threshold`, or not scored at all)."""
    by_folder: dict[str, dict[str, float]] = {}
    left_out = {}
    for image in paths:
        folder, name = str(Path(image).parent), Path(image).name
        if folder not in by_folder:
            by_folder[folder] = read_scores(folder)
        score = by_folder[folder].get(name)
        if score is None:
            left_out[image] = f"no aesthetic score: {name} is not in {SCORES_FILE} (run `animekit dataset score`)"
        elif score < threshold:
            left_out[image] = f"below aesthetic threshold: {score:.4g} < {threshold:g}"
    return left_out
