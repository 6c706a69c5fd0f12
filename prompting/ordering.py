"""Auto-ordering: a free tag list sorted into a profile's slots (subject, character, series,
artist, general, ..., quality) so the prompt reads in the order the model was trained on."""

from __future__ import annotations

from typing import Iterable

from .categories import CategorySource, ChainedSource, ProfileVocabulary
from .profile import Profile
from .tagtext import bare_name, dedupe, is_plain, join_tags, normalize_tag, normalize_tags, tag_key


def classifier(profile: Profile, source: CategorySource | None = None) -> ChainedSource:
    """The profile's own vocabulary first (so `absurdres` is a quality-suffix tag, not just meta),
    then the external source."""
    return ChainedSource([ProfileVocabulary(profile), source])


def order_tags(tags: Iterable[str], profile: Profile, source: CategorySource | None = None) -> dict[str, list[str]]:
    """Normalised tags -> {slot: tags} in the profile's slot order; input order is kept within a
    slot. A plain tag found by an alias is replaced by its canonical name."""
    lookup = classifier(profile, source)
    slots: dict[str, list[str]] = {slot: [] for slot in profile.order}
    for tag in tags:
        info = lookup.lookup(tag_key(bare_name(tag)))
        if info is None:
            slots["general"].append(tag)
            continue
        if info.name and is_plain(tag):
            tag = normalize_tag(info.name)
        slots[info.category].append(tag)
    return slots


def flatten(slots: dict[str, list[str]], profile: Profile) -> list[str]:
    """Slots joined in the profile's order, duplicates dropped (first wins)."""
    return dedupe([tag for slot in profile.order for tag in slots.get(slot, [])])


def format_for_profile(text: str, profile: Profile, source: CategorySource | None = None) -> str:
    """Any tag string -> normalised, deduplicated and ordered for the profile."""
    return join_tags(flatten(order_tags(normalize_tags(text), profile, source), profile))
