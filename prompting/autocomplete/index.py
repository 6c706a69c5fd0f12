"""A compact prefix index over about a million tag names and aliases.

Every key (a tag or an alias, in tag_key form: lower case, spaces, unescaped) is one UTF-8 line of
a single sorted byte string; numpy arrays beside it hold each key's category, popularity rank,
count and the row of the tag it stands for. A prefix is two binary searches; the most popular
matches are an argpartition over the matching rows' ranks. This keeps the index at a few tens of
MB where a dict of Python strings costs several times that, and a query in well under a
millisecond for any prefix.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterable, NamedTuple

import numpy as np

from ..tagtext import tag_key

# Every category a suggestion can carry; the array stores the position in this tuple.
CATEGORIES = (
    "general", "character", "series", "artist", "meta",
    "subject", "quality", "rating", "year", "aesthetic", "source",
)
SPECIAL_CATEGORIES = frozenset({"quality", "rating", "year", "aesthetic", "source"})
"""A model family's own vocabulary: suggested first for its profile, marked for the others."""

# Ranking tiers, best first: counted tags (a user's CSV), the built-in common vocabulary, the model
# families' own tags, listed names without counts (tipo-kgen's characters, series and meta: their
# order puts popular names first), then listed names whose order says nothing of popularity
# (tipo-kgen's artists: kantoku is number 40,001).
TIER_COUNTED, TIER_COMMON, TIER_FAMILY, TIER_LISTED, TIER_UNRANKED = range(5)
NO_COUNT = -1


def _key(name: str) -> str:
    """tag_key, skipping its regex for the usual name that is already in key form (a million
    names: seconds saved)."""
    key = name.lower().replace("_", " ")
    if "\\" in key or "  " in key or key != key.strip() or not key.isprintable():
        return tag_key(name)
    return key


class IndexEntry(NamedTuple):
    """One known tag from a source, in the source's order (a tuple: a million are made per build)."""

    name: str
    category: str
    tier: int
    count: int | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Match:
    """One index hit: the canonical tag's row, and the alias typed when it was found by one."""

    row: int
    alias: str | None


class _Keys:
    """The sorted keys as a sequence of bytes, for bisect."""

    def __init__(self, blob: bytes, offsets: np.ndarray):
        self.blob, self.offsets = blob, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, row: int) -> bytes:
        return self.blob[self.offsets[row] : self.offsets[row + 1] - 1]


class TagIndex:
    """Built once from entries (first source to name a key wins); read-only after."""

    def __init__(self, blob: bytes, offsets: np.ndarray, target: np.ndarray, category: np.ndarray,
                 rank: np.ndarray, count: np.ndarray, display: dict[int, str]):
        self.keys = _Keys(blob, offsets)
        self.target = target  # row of the canonical tag (a canonical row points at itself)
        self.category = category
        self.rank = rank  # lower is more popular; an alias ranks just after its tag
        self.count = count
        self.display = display  # rows whose prompt spelling differs from their key (`score_9`)

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def build(cls, entries: Iterable[IndexEntry]) -> "TagIndex":
        keys: list[bytes] = []
        categories: list[int] = []
        tiers: list[int] = []
        counts: list[int] = []
        places: list[int] = []  # position among the same tier and category, in source order
        display: dict[int, str] = {}
        seen: dict[bytes, int] = {}
        pending_aliases: list[tuple[bytes, int]] = []
        category_codes = {name: code for code, name in enumerate(CATEGORIES)}
        positions: dict[tuple[int, str], int] = {}
        for entry in entries:
            key_text = _key(entry.name)
            key = key_text.encode("utf-8")
            if not key or key in seen:
                continue
            if entry.category not in category_codes:
                raise ValueError(f"tag {entry.name!r}: unknown category {entry.category!r}; expected one of {', '.join(CATEGORIES)}")
            entry_id = len(keys)
            seen[key] = entry_id
            keys.append(key)
            categories.append(category_codes[entry.category])
            tiers.append(entry.tier)
            position = positions.get((entry.tier, entry.category), 0)
            positions[(entry.tier, entry.category)] = position + 1
            places.append(position)
            counts.append(NO_COUNT if entry.count is None else int(entry.count))
            spelled = entry.name.strip()
            if spelled != key_text:
                display[entry_id] = spelled
            for alias in entry.aliases:
                alias_key = _key(alias).encode("utf-8")
                if alias_key:
                    pending_aliases.append((alias_key, entry_id))
        canonical_count = len(keys)
        targets = list(range(canonical_count))
        for alias_key, entry_id in pending_aliases:  # after every name, so an alias never hides a tag
            if alias_key not in seen:
                seen[alias_key] = len(keys)
                keys.append(alias_key)
                targets.append(entry_id)
        del seen, pending_aliases

        tier = np.asarray(tiers, dtype=np.int8)
        count = np.asarray(counts, dtype=np.int64)
        # Popularity: tier, then count (highest first), then position in its own list (so the
        # 100th character and the 100th series are neighbours), then source order.
        place = np.asarray(places, dtype=np.int64)
        by_popularity = np.lexsort((np.arange(canonical_count), place, -count, tier))
        canonical_rank = np.empty(canonical_count, dtype=np.int64)
        canonical_rank[by_popularity] = np.arange(canonical_count)
        target = np.asarray(targets, dtype=np.int64)
        is_alias = np.arange(len(keys)) >= canonical_count
        entry_rank = canonical_rank[target] * 2 + is_alias

        order = sorted(range(len(keys)), key=keys.__getitem__)
        new_row = np.empty(len(keys), dtype=np.int64)
        new_row[order] = np.arange(len(keys))
        sorted_keys = [keys[i] for i in order]
        blob = b"\n".join(sorted_keys) + b"\n"
        lengths = np.fromiter(map(len, sorted_keys), dtype=np.int64, count=len(keys)) + 1
        del sorted_keys
        offsets = np.zeros(len(keys) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        del keys
        order_array = np.asarray(order, dtype=np.int64)
        canonical_category = np.asarray(categories, dtype=np.uint8)
        return cls(
            blob=blob,
            offsets=offsets.astype(np.uint32 if offsets[-1] < 2**32 else np.int64),
            target=new_row[target[order_array]].astype(np.int32),
            category=canonical_category[target[order_array]],
            rank=entry_rank[order_array].astype(np.int32),
            count=count[target[order_array]].astype(np.int32 if count.max(initial=0) < 2**31 else np.int64),
            display={int(new_row[row]): text for row, text in display.items()},
        )

    def key(self, row: int) -> str:
        return self.keys[row].decode("utf-8")

    def name(self, row: int) -> str:
        """The tag's spelling: its key, or how its source writes it where that differs."""
        return self.display.get(row) or self.key(row)

    def category_of(self, row: int) -> str:
        return CATEGORIES[self.category[row]]

    def count_of(self, row: int) -> int | None:
        value = int(self.count[row])
        return None if value == NO_COUNT else value

    def find(self, key: str) -> int | None:
        """The canonical row of an exact key (tag or alias), or None."""
        wanted = key.encode("utf-8")
        row = bisect.bisect_left(self.keys, wanted)
        if row < len(self.keys) and self.keys[row] == wanted:
            return int(self.target[row])
        return None

    def prefix_range(self, prefix: str) -> tuple[int, int]:
        low_key = prefix.encode("utf-8")
        low = bisect.bisect_left(self.keys, low_key)
        high = bisect.bisect_left(self.keys, low_key + b"\xff", low)  # no UTF-8 byte is 0xff
        return low, high

    def top(self, prefix: str, limit: int) -> list[Match]:
        """The `limit` most popular tags whose name or alias starts with `prefix` (tag_key form),
        each tag once (found by its name rather than an alias when both match)."""
        if limit <= 0:
            return []
        low, high = self.prefix_range(prefix)
        wanted = limit
        while True:
            matches = self._best(low, high, wanted)
            if len(matches) >= limit or wanted >= high - low:
                return matches[:limit]
            wanted *= 4  # aliases of tags already taken crowded the first pick

    def _best(self, low: int, high: int, wanted: int) -> list[Match]:
        ranks = self.rank[low:high]
        if high - low > wanted:
            picked = np.argpartition(ranks, wanted)[:wanted]
            picked = picked[np.argsort(ranks[picked], kind="stable")]
        else:
            picked = np.argsort(ranks, kind="stable")
        found: list[Match] = []
        taken: set[int] = set()
        for offset in picked.tolist():
            row = low + offset
            canonical = int(self.target[row])
            if canonical in taken:
                continue
            taken.add(canonical)
            found.append(Match(canonical, None if canonical == row else self.key(row)))
        return found

    def nbytes(self) -> int:
        """Memory held by the index's arrays and key bytes (what a query needs)."""
        arrays = (self.keys.offsets, self.target, self.category, self.rank, self.count)
        return len(self.keys.blob) + sum(a.nbytes for a in arrays) + sum(len(t) + 60 for t in self.display.values())
