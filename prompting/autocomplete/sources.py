"""What the autocomplete index is built from, in priority order (the first to name a tag gives
its category): the common Danbooru vocabulary built in, every model family's own tags (quality,
rating, year, aesthetic, source), then the category sources prompts are ordered with (a user's
tagcomplete CSV with counts and aliases, tipo-kgen's lists)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Iterator

from ..categories import ARTIST, COMMON_META_TAGS, META, SUBJECT_TAGS, CategorySource
from ..profile import Profile, load_profile, profile_ids
from ..tagtext import split_tags, tag_key
from .index import TIER_COMMON, TIER_COUNTED, TIER_FAMILY, TIER_LISTED, TIER_UNRANKED, IndexEntry

# The order a profile's own tags are suggested in (the quality, rating, year, aesthetic, score).
FAMILY_KINDS = ("quality", "rating", "year", "aesthetic", "source")


@dataclass(frozen=True)
class FamilyTag:
    name: str
    category: str


def family_tags(profile: Profile) -> tuple[FamilyTag, ...]:
    """A profile's own vocabulary as its card writes it, in suggestion order, each tag once."""
    by_kind: dict[str, list[str]] = {
        "quality": list(profile.quality_tags),
        "rating": [*(t for tags in profile.ratings.values() for t in tags), *profile.sfw_guard.positive],
        "year": [p.tag for p in profile.periods],
        "aesthetic": list(profile.aesthetic_tags),
        "source": list(profile.source_tags),
    }
    if profile.year_tags is not None:  # newest first: the years people ask for most
        years = range(profile.year_tags.max_year, profile.year_tags.min_year - 1, -1)
        by_kind["year"] += [profile.year_tags.tag(year) for year in years]
    seen: set[str] = set()
    tags: list[FamilyTag] = []
    for kind in FAMILY_KINDS:
        for name in by_kind[kind]:
            for piece in split_tags(name):
                if tag_key(piece) not in seen:
                    seen.add(tag_key(piece))
                    tags.append(FamilyTag(piece, kind))
    return tuple(tags)


def common_tags() -> tuple[str, ...]:
    """Danbooru tags every family reads: subject counts and the resolution meta tags."""
    return (*SUBJECT_TAGS, *COMMON_META_TAGS)


@lru_cache(maxsize=None)
def common_keys() -> frozenset[str]:
    return frozenset(tag_key(t) for t in common_tags())


@lru_cache(maxsize=None)
def family_keys(profile_id: str) -> frozenset[str]:
    """tag_key of a profile's own tags that are not common Danbooru tags."""
    return frozenset(tag_key(t.name) for t in family_tags(load_profile(profile_id))) - common_keys()


@lru_cache(maxsize=None)
def all_family_keys() -> frozenset[str]:
    return frozenset().union(*(family_keys(pid) for pid in profile_ids()))


def built_in_entries(profiles: Iterable[Profile]) -> Iterator[IndexEntry]:
    for tag in SUBJECT_TAGS:
        yield IndexEntry(tag, "subject", TIER_COMMON)
    for tag in COMMON_META_TAGS:
        yield IndexEntry(tag, META, TIER_COMMON)
    for profile in profiles:
        for tag in family_tags(profile):
            yield IndexEntry(tag.name, tag.category, TIER_FAMILY)


def source_entries(source: CategorySource) -> Iterator[IndexEntry]:
    """A category source's entries: counted ones rank by count, the rest by the source's order
    (artists without counts last: tipo-kgen's artist list is not in order of use)."""
    for entry in source.entries():
        if entry.count is not None:
            tier = TIER_COUNTED
        else:
            tier = TIER_UNRANKED if entry.category == ARTIST else TIER_LISTED
        yield IndexEntry(entry.name, entry.category, tier, entry.count, tuple(entry.aliases))


def index_entries(source: CategorySource | None) -> Iterator[IndexEntry]:
    yield from built_in_entries(load_profile(pid) for pid in profile_ids())
    if source is not None:
        yield from source_entries(source)
