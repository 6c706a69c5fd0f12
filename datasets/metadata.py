"""A post's metadata beside its image: the Danbooru score, rating and date that Animagine's quality,
rating and year tags were made from.

Read from `<image name>.json` (gallery-dl's `--write-metadata` layout: `a.png.json`) or
`<image stem>.json` (`a.json`), the first that exists. Keys: `score` (a number); `rating`
(`g`/`s`/`q`/`e` as Danbooru has them since 2022, or `general` / `sensitive` / `questionable` /
`explicit`; the older `safe` counts as general); the date as `date` or `created_at` (ISO text, the
year is taken) or `year` (a number).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

RATINGS = {"g": "general", "s": "sensitive", "q": "questionable", "e": "explicit", "safe": "general",
           "general": "general", "sensitive": "sensitive", "questionable": "questionable", "explicit": "explicit"}
_YEAR = re.compile(r"^\s*(\d{4})")


@dataclass(frozen=True)
class PostMetadata:
    score: float | None = None
    rating: str | None = None  # general / sensitive / questionable / explicit
    year: int | None = None


def metadata_path(image: Path) -> Path | None:
    for candidate in (image.with_name(image.name + ".json"), image.with_suffix(".json")):
        if candidate.is_file():
            return candidate
    return None


def read_metadata(image: Path) -> PostMetadata | None:
    """The image's metadata, None when it has no sidecar; ValueError naming the file and the key
    when a value is unusable."""
    path = metadata_path(image)
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object with score / rating / date")
    return PostMetadata(_score(data, path), _rating(data, path), _year(data, path))


def _score(data: dict, path: Path) -> float | None:
    value = data.get("score")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{path}: 'score' must be a number, got {value!r}")
    return value


def _rating(data: dict, path: Path) -> str | None:
    value = data.get("rating")
    if value is None:
        return None
    rating = RATINGS.get(str(value).strip().lower())
    if rating is None:
        raise ValueError(f"{path}: 'rating' must be one of g, s, q, e (or general, sensitive, questionable, explicit), got {value!r}")
    return rating


def _year(data: dict, path: Path) -> int | None:
    if isinstance(data.get("year"), int) and not isinstance(data.get("year"), bool):
        return data["year"]
    for key in ("date", "created_at"):
        value = data.get(key)
        if value is None:
            continue
        match = _YEAR.match(str(value))
        if match is None:
            raise ValueError(f"{path}: '{key}' must be a date such as 2023-01-31, got {value!r}")
        return int(match.group(1))
    return None
