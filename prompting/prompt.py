"""Structured prompt building: subject, characters, series, artists, general tags and the
profile's modifiers (quality, rating, year, aesthetic, SFW guard) -> positive and negative text
in the order the profile's model was trained on."""

from __future__ import annotations

from dataclasses import dataclass

from .categories import CategorySource
from .ordering import classifier, flatten, order_tags
from .profile import RATING_LEVELS, Profile
from .tagtext import join_tags, normalize_tag, normalize_tags, split_tags, tag_key

QUALITY_CHOICES = ("default", "none")
NEGATIVE_CHOICES = ("default", "none")
SUBJECT_CHOICES = (
    "none", "1girl", "1boy", "1other", "2girls", "2boys", "1girl, 1boy", "3girls",
    "multiple girls", "multiple boys", "no humans",
)


@dataclass(frozen=True)
class PromptRequest:
    """What the user asked for; every text field is a comma-separated tag list."""

    subject: str = "none"
    solo: bool = False
    characters: str = ""
    series: str = ""
    artists: str = ""
    tags: str = ""
    quality: str = "default"
    """`default`: the profile's quality tags (from its card); `none`: only what `tags` holds."""
    rating: str = "none"
    year: str = "none"
    """`none`, a period (newest, recent, mid, early, oldest) or a year such as `2020`."""
    aesthetic: str = "none"
    sfw_guard: bool = True
    """The card's advice against NSFW drift from quality tags: the general rating in the positive,
    NSFW ratings in the negative."""
    negative: str = "default"
    """`default`: the profile's negative prompt; `none`: only extra_negative (and the SFW guard)."""
    extra_negative: str = ""


@dataclass(frozen=True)
class BuiltPrompt:
    positive: str
    negative: str


def _check(request: PromptRequest) -> None:
    if request.quality not in QUALITY_CHOICES:
        raise ValueError(f"quality must be one of {', '.join(QUALITY_CHOICES)}, got {request.quality!r}")
    if request.negative not in NEGATIVE_CHOICES:
        raise ValueError(f"negative preset must be one of {', '.join(NEGATIVE_CHOICES)}, got {request.negative!r}")
    if request.rating not in ("none", "", *RATING_LEVELS):
        raise ValueError(f"rating must be one of none, {', '.join(RATING_LEVELS)}; got {request.rating!r}")
    if request.sfw_guard and request.rating not in ("none", "", RATING_LEVELS[0]):
        raise ValueError(f"rating {request.rating!r} contradicts the SFW guard (which asks for a general rating); "
                         f"turn the SFW guard off (node input sfw_guard, CLI --no-sfw-guard) to use it")


def build_positive(profile: Profile, request: PromptRequest, source: CategorySource | None = None) -> str:
    _check(request)
    chosen = {
        "rating": list(profile.rating_tags(request.rating)),
        "year": list(profile.year_tag(request.year)),
        "aesthetic": list(profile.aesthetic_tag(request.aesthetic)),
    }
    slots: dict[str, list[str]] = {slot: [] for slot in profile.order}
    if request.quality == "default":
        lookup = classifier(profile)
        for tag in profile.default_quality:
            info = lookup.lookup(tag_key(tag))
            slot = info.category if info else "general"
            if not chosen.get(slot):  # an explicit choice replaces the default in its slot
                slots[slot].append(tag)
    for slot, tags in chosen.items():
        slots[slot].extend(tags)
    if request.sfw_guard:
        slots["rating"].extend(profile.sfw_guard.positive)
    if request.subject.strip() not in ("", "none"):
        slots["subject"].extend(split_tags(request.subject))
    if request.solo:  # first of the general tags: `1girl, solo` (SD 1.5 card) or after the series (Animagine cards)
        slots["general"].append("solo")
    for slot, text in (("character", request.characters), ("series", request.series), ("artist", request.artists)):
        slots[slot].extend(split_tags(text))
    for slot, tags in order_tags(normalize_tags(request.tags), profile, source).items():
        slots[slot].extend(tags)
    normalised = {slot: [normalize_tag(tag) for tag in tags] for slot, tags in slots.items()}
    return join_tags(flatten(normalised, profile))


def build_negative(profile: Profile, request: PromptRequest) -> str:
    _check(request)
    parts = []
    if request.negative == "default":
        parts.append(profile.negative)
    if request.sfw_guard:
        parts.append(", ".join(profile.sfw_guard.negative))
    parts.append(request.extra_negative)
    return join_tags(normalize_tags(", ".join(part for part in parts if part.strip())))


def build_prompt(profile: Profile, request: PromptRequest, source: CategorySource | None = None) -> BuiltPrompt:
    return BuiltPrompt(positive=build_positive(profile, request, source), negative=build_negative(profile, request))
