"""Model-family profiles: what each model was trained to read, as data (`<id>.profile.json`).

A profile names its tag slots in training order, its quality / aesthetic / rating / year
vocabularies, defaults from its card (quality tags, negative prompt, sampler settings, clip skip),
its size table and its training buckets. Prompt building, tag ordering, the CLI and the nodes all
read profiles from here, so a new model family is a new JSON file.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from ..checkpoints.architecture import ARCHITECTURE_NAMES
from ..sizes.sets import resolution_set, size_from_label, size_label
from ..sizes.resolutions import Size, kohya_buckets
from .tagtext import split_tags

PROFILES_FOLDER = "profiles"
PROFILE_SUFFIX = ".profile.json"
DEFAULT_PROFILE = "animagine-xl-3.0"
SLOTS = ("subject", "character", "series", "artist", "general", "source", "rating", "year", "aesthetic", "quality", "meta")
RATING_LEVELS = ("general", "sensitive", "questionable", "explicit")
PERIOD_LEVELS = ("newest", "recent", "mid", "early", "oldest")
EARLIEST_YEAR = 1900  # a year before this is a typo, not an old drawing
# the year list the prompt nodes offer, one for every profile (each checks a year against its own table)
YEAR_CHOICES = ("none", *PERIOD_LEVELS, *(str(year) for year in range(2025, 2004, -1)))
FAMILIES = ARCHITECTURE_NAMES  # a profile's "family" is the architecture name


@dataclass(frozen=True)
class Period:
    tag: str
    level: str
    first_year: int
    last_year: int


@dataclass(frozen=True)
class QualityScore:
    """One row of a card's score table: posts scoring at least `min_score` (None: any score, the
    last row) get `tag`; rows run from the highest score down."""

    tag: str
    min_score: float | None


@dataclass(frozen=True)
class YearTags:
    """`year 2023`-style tags: the format and the years the model has seen."""

    format: str
    min_year: int
    max_year: int

    def tag(self, year: int) -> str:
        return self.format.format(year=year)


@dataclass(frozen=True)
class Sampling:
    cfg: float
    cfg_range: tuple[float, float]
    steps: int
    steps_range: tuple[int, int]
    sampler: str
    scheduler: str
    clip_skip: int | None
    """Layers to skip in ComfyUI terms (CLIPSetLastLayer -N); None where the text encoder's
    default already matches the card (SDXL uses the penultimate layer)."""


@dataclass(frozen=True)
class BucketSettings:
    resolution: int
    min_size: int
    max_size: int
    step: int

    def buckets(self) -> list[Size]:
        return kohya_buckets(self.resolution, self.min_size, self.max_size, self.step)


@dataclass(frozen=True)
class SfwGuard:
    positive: tuple[str, ...]
    negative: tuple[str, ...]


@dataclass(frozen=True)
class Profile:
    id: str
    name: str
    family: str
    source: str
    notes: str
    order: tuple[str, ...]
    quality_tags: tuple[str, ...]
    aesthetic_tags: tuple[str, ...]
    source_tags: tuple[str, ...]
    ratings: dict[str, tuple[str, ...]]
    periods: tuple[Period, ...]
    year_tags: YearTags | None
    default_quality: tuple[str, ...]
    negative: str
    sfw_guard: SfwGuard
    sampling: Sampling
    resolution_set: str
    buckets: BucketSettings
    quality_scores: tuple[QualityScore, ...] = ()
    """The card's Danbooru-score -> quality-tag table (for dataset captions); () when it has none."""

    @property
    def quality_position(self) -> str:
        """`prefix` or `suffix`: where the card puts quality tags relative to the general tags."""
        return "prefix" if self.order.index("quality") < self.order.index("general") else "suffix"

    @property
    def sizes(self) -> tuple[Size, ...]:
        return resolution_set(self.resolution_set).sizes

    def size(self, label: str) -> Size:
        """The size a label (`832x1216 (13:19 portrait)` or a bare `WxH`) names; ValueError listing this
        profile's sizes when it is not one of them."""
        size = size_from_label(label)
        if size not in self.sizes:
            raise ValueError(f"size {label!r} is not one of {self.id}'s sizes: {', '.join(size_label(s) for s in self.sizes)}")
        return size

    def rating_tags(self, level: str) -> tuple[str, ...]:
        """Tags for a rating level (general / sensitive / questionable / explicit); `none` -> ()."""
        if level in ("", "none"):
            return ()
        if level not in RATING_LEVELS:
            raise ValueError(f"rating must be one of none, {', '.join(RATING_LEVELS)}; got {level!r}")
        if level not in self.ratings:
            offered = ", ".join(self.ratings) or "none (this model has no rating tags)"
            raise ValueError(f"profile {self.id} has no {level!r} rating; its ratings: {offered}")
        return self.ratings[level]

    def year_tag(self, value: str | int) -> tuple[str, ...]:
        """A period level (newest ... oldest) or a year (`2019`) as this model's tag: `year 2019`
        where it has year tags, else the period whose years contain it (clamped to the ends)."""
        text = str(value).strip().lower()
        if text in ("", "none"):
            return ()
        if text in PERIOD_LEVELS:
            for period in self.periods:
                if period.level == text:
                    return (period.tag,)
            raise ValueError(f"profile {self.id} has no period tags; year must be none or {self._year_help()}")
        if not text.isdigit():
            raise ValueError(f"year must be none, a period ({', '.join(PERIOD_LEVELS)}) or a year such as 2020; got {value!r}")
        year = int(text)
        if self.year_tags is not None:
            if not self.year_tags.min_year <= year <= self.year_tags.max_year:
                raise ValueError(f"profile {self.id} knows years {self.year_tags.min_year}-{self.year_tags.max_year}; got {year}")
            return (self.year_tags.tag(year),)
        if self.periods:
            by_start = sorted(self.periods, key=lambda p: p.first_year)
            # Older than the table is still "oldest" and newer is "newest"; a year before the first
            # drawings or after this year is a typo, not a period: refused rather than mapped silently.
            this_year = max(datetime.date.today().year, by_start[-1].last_year)
            if not EARLIEST_YEAR <= year <= this_year:
                raise ValueError(f"profile {self.id} takes years {EARLIEST_YEAR}-{this_year} (before "
                                 f"{by_start[0].first_year}: {by_start[0].tag}); got {year} "
                                 f"(or give a period: {', '.join(PERIOD_LEVELS)})")
            for period in by_start:
                if year <= period.last_year:
                    return (period.tag,)
            return (by_start[-1].tag,)
        raise ValueError(f"profile {self.id} has no year or period tags; year must be none")

    def _year_help(self) -> str:
        if self.year_tags is None:
            return "none"
        return f"a year {self.year_tags.min_year}-{self.year_tags.max_year}"

    def quality_for_score(self, score: float) -> str:
        """The quality tag the card gives a post with this Danbooru score."""
        if not self.quality_scores:
            raise ValueError(f"profile {self.id} has no score -> quality table")
        for row in self.quality_scores:
            if row.min_score is None or score >= row.min_score:
                return row.tag
        raise ValueError(f"profile {self.id}: score {score} is below its lowest quality row")

    def aesthetic_tag(self, value: str) -> tuple[str, ...]:
        if value in ("", "none"):
            return ()
        if value not in self.aesthetic_tags:
            offered = ", ".join(self.aesthetic_tags) or "none (this model has no aesthetic tags)"
            raise ValueError(f"profile {self.id} has no aesthetic tag {value!r}; its aesthetic tags: {offered}")
        return (value,)


def _field(data: dict, key: str, kind, where: str):
    if key not in data:
        raise ValueError(f"{where}: missing {key!r}")
    value = data[key]
    if kind is not None and not isinstance(value, kind):
        raise ValueError(f"{where}: {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _strings(data: dict, key: str, where: str) -> tuple[str, ...]:
    values = _field(data, key, list, where)
    if not all(isinstance(v, str) and v.strip() for v in values):
        raise ValueError(f"{where}: {key!r} must be a list of non-empty strings")
    return tuple(values)


def _quality_scores(data: dict, quality_tags: tuple[str, ...], where: str) -> tuple[QualityScore, ...]:
    rows = []
    for entry in data.get("quality_scores", []):
        tag, low = entry.get("tag"), entry.get("min_score")
        if tag not in quality_tags:
            raise ValueError(f"{where}: quality_scores tag {tag!r} is not one of its quality_tags")
        if low is not None and (isinstance(low, bool) or not isinstance(low, (int, float))):
            raise ValueError(f"{where}: quality_scores min_score for {tag!r} must be a number or null, got {low!r}")
        rows.append(QualityScore(tag, low))
    lows = [row.min_score for row in rows]
    if None in lows[:-1] or any(a <= b for a, b in zip(lows, lows[1:]) if a is not None and b is not None):
        raise ValueError(f"{where}: quality_scores must run from the highest min_score down (null only last)")
    return tuple(rows)


def parse_profile(data: dict, where: str) -> Profile:
    """Build and check a Profile from its JSON object; `where` names the file in errors."""
    order = _strings(data, "order", where)
    if sorted(order) != sorted(SLOTS):
        raise ValueError(f"{where}: 'order' must list each slot once: {', '.join(SLOTS)}; got {', '.join(order)}")
    family = _field(data, "family", str, where)
    if family not in FAMILIES:
        raise ValueError(f"{where}: 'family' must be one of {', '.join(FAMILIES)}, got {family!r}")
    ratings = {}
    for level, text in _field(data, "ratings", dict, where).items():
        if level not in RATING_LEVELS:
            raise ValueError(f"{where}: rating level {level!r} is not one of {', '.join(RATING_LEVELS)}")
        ratings[level] = tuple(split_tags(text))
    periods = []
    for entry in _field(data, "periods", list, where):
        if entry.get("level") not in PERIOD_LEVELS:
            raise ValueError(f"{where}: period level {entry.get('level')!r} is not one of {', '.join(PERIOD_LEVELS)}")
        first, last = entry["years"]
        periods.append(Period(tag=entry["tag"], level=entry["level"], first_year=int(first), last_year=int(last)))
    years = data.get("year_tags")
    year_tags = None if years is None else YearTags(years["format"], int(years["min"]), int(years["max"]))
    guard = _field(data, "sfw_guard", dict, where)
    s = _field(data, "sampling", dict, where)
    clip_skip = s.get("clip_skip")
    if clip_skip is not None and (not isinstance(clip_skip, int) or clip_skip < 1):
        raise ValueError(f"{where}: sampling.clip_skip must be null or a positive integer, got {clip_skip!r}")
    b = _field(data, "buckets", dict, where)
    buckets = BucketSettings(int(b["resolution"]), int(b["min_size"]), int(b["max_size"]), int(b["step"]))
    buckets.buckets()  # checks the numbers
    profile = Profile(
        id=_field(data, "id", str, where),
        name=_field(data, "name", str, where),
        family=family,
        source=_field(data, "source", str, where),
        notes=data.get("notes", ""),
        order=order,
        quality_tags=_strings(data, "quality_tags", where),
        aesthetic_tags=_strings(data, "aesthetic_tags", where),
        source_tags=_strings(data, "source_tags", where),
        ratings=ratings,
        periods=tuple(periods),
        year_tags=year_tags,
        default_quality=_strings(data, "default_quality", where),
        negative=_field(data, "negative", str, where),
        sfw_guard=SfwGuard(_strings(guard, "positive", where), _strings(guard, "negative", where)),
        sampling=Sampling(
            cfg=float(s["cfg"]), cfg_range=tuple(s["cfg_range"]), steps=int(s["steps"]),
            steps_range=tuple(s["steps_range"]), sampler=s["sampler"], scheduler=s["scheduler"], clip_skip=clip_skip,
        ),
        resolution_set=_field(data, "resolutions", str, where),
        buckets=buckets,
        quality_scores=_quality_scores(data, _strings(data, "quality_tags", where), where),
    )
    resolution_set(profile.resolution_set)  # must name a shipped table
    return profile


@lru_cache(maxsize=None)
def _all_profiles() -> dict[str, Profile]:
    found: dict[str, Profile] = {}
    for entry in sorted(resources.files(__package__).joinpath(PROFILES_FOLDER).iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(PROFILE_SUFFIX):
            continue
        data = json.loads(entry.read_text(encoding="utf-8"))
        profile = parse_profile(data, entry.name)
        if entry.name != profile.id + PROFILE_SUFFIX:
            raise ValueError(f"{entry.name}: id {profile.id!r} does not match the file name")
        found[profile.id] = profile
    return found


def profile_ids() -> list[str]:
    """Valid profile ids, the default (Animagine XL 3.0) first."""
    ids = sorted(_all_profiles())
    return sorted(ids, key=lambda i: i != DEFAULT_PROFILE)


def load_profile(profile_id: str) -> Profile:
    profiles = _all_profiles()
    if profile_id not in profiles:
        raise ValueError(f"unknown profile {profile_id!r}; valid profiles: {', '.join(profile_ids())}")
    return profiles[profile_id]


def size_labels() -> list[str]:
    """Every profile's sizes as labels, one list: portrait first, then by width."""
    sizes = {size for pid in profile_ids() for size in load_profile(pid).sizes}
    return [size_label(size) for size in sorted(sizes, key=lambda s: (s[0] / s[1], s[0]))]


def aesthetic_choices() -> list[str]:
    """`none` and every profile's aesthetic tags (profiles in profile_ids order, each tag once)."""
    choices = ["none"]
    for pid in profile_ids():
        choices += [tag for tag in load_profile(pid).aesthetic_tags if tag not in choices]
    return choices
