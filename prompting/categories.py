"""Where a tag's category comes from: character / series / artist / meta / general, and the
profile's own special tags (subject count, quality, rating, year, aesthetic, source).

Sources, asked in turn by the tag orderer:
- the profile's vocabulary and the Danbooru subject-count tags (always; built in),
- a user's a1111 tagcomplete `danbooru.csv` (`name,type,count,"aliases"`),
- `tipo-kgen`'s name lists when that package is installed (its data files only: the model code,
  which pulls in torch and transformers, is never imported).
Anything no source knows is a general tag.
"""

from __future__ import annotations

import csv
import importlib.util
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Protocol

from .profile import Profile
from .tagtext import tag_key

CHARACTER, SERIES, ARTIST, META, GENERAL = "character", "series", "artist", "meta", "general"

# a1111 tagcomplete's Danbooru type numbers (2 is unused; e621 extras count as general).
CSV_TYPES = {0: GENERAL, 1: ARTIST, 3: SERIES, 4: CHARACTER, 5: META}

# tipo-kgen's plain name lists, one name per line, spaces for underscores.
KGEN_LISTS = {"characters.txt": CHARACTER, "copyrights.txt": SERIES, "artist.txt": ARTIST, "meta.txt": META}

SUBJECT_TAGS = (
    "1girl", "2girls", "3girls", "4girls", "5girls", "6+girls", "multiple girls",
    "1boy", "2boys", "3boys", "4boys", "5boys", "6+boys", "multiple boys",
    "1other", "2others", "3others", "4others", "5others", "6+others", "multiple others",
    "no humans",
)
COMMON_META_TAGS = ("highres", "absurdres", "incredibly absurdres", "lowres")


@dataclass(frozen=True)
class TagInfo:
    category: str
    name: str | None = None
    """The canonical name when the tag was looked up by an alias (prompt form: spaces)."""


class CategorySource(Protocol):
    def lookup(self, key: str) -> TagInfo | None:
        """`key` is tag_key(name): lower case, spaces, unescaped."""


class ChainedSource:
    """Ask each source in turn; the first that knows the tag wins."""

    def __init__(self, sources: Iterable[CategorySource]):
        self.sources = [s for s in sources if s is not None]

    def lookup(self, key: str) -> TagInfo | None:
        for source in self.sources:
            info = source.lookup(key)
            if info is not None:
                return info
        return None


class ProfileVocabulary:
    """The built-in fallback: what the profile itself names plus Danbooru's subject-count tags."""

    def __init__(self, profile: Profile):
        self.profile = profile
        known: dict[str, str] = {}

        def add(tags: Iterable[str], category: str) -> None:
            for tag in tags:
                known.setdefault(tag_key(tag), category)

        add(SUBJECT_TAGS, "subject")
        add(profile.sfw_guard.positive, "rating")
        for tags in profile.ratings.values():
            add(tags, "rating")
        add(profile.quality_tags, "quality")
        add(profile.aesthetic_tags, "aesthetic")
        add(profile.source_tags, "source")
        add((p.tag for p in profile.periods), "year")
        add(COMMON_META_TAGS, META)
        self.known = known
        self.year_pattern = None
        if profile.year_tags is not None:  # `year {year}` -> `year \d{4}`, in tag_key form
            marker = "yearplaceholder"
            escaped = re.escape(tag_key(profile.year_tags.format.format(year=marker)))
            self.year_pattern = re.compile(escaped.replace(marker, r"\d{4}"))

    def lookup(self, key: str) -> TagInfo | None:
        category = self.known.get(key)
        if category is None and self.year_pattern is not None and self.year_pattern.fullmatch(key):
            category = "year"
        return TagInfo(category) if category is not None else None


class CsvTagCategories:
    """An a1111 tagcomplete `danbooru.csv`: `name,type,count,"alias1,alias2"` per line (count and
    aliases optional). Aliases resolve to their tag's category and canonical name."""

    def __init__(self, names: dict[str, str], aliases: dict[str, tuple[str, str]], path: Path):
        self.names = names
        self.aliases = aliases
        self.path = path

    @classmethod
    def from_file(cls, path: str | Path) -> "CsvTagCategories":
        path = Path(path)
        names: dict[str, str] = {}
        aliases: dict[str, tuple[str, str]] = {}
        try:
            with path.open(encoding="utf-8-sig", newline="") as handle:
                for line_no, row in enumerate(csv.reader(handle), start=1):
                    if not row or not "".join(row).strip():
                        continue
                    if line_no == 1 and row[0].strip().lower() == "name":
                        continue  # a header line
                    name, category = cls._parse_row(row, path, line_no)
                    key = tag_key(name)
                    names.setdefault(key, category)
                    if len(row) >= 4:
                        for alias in row[3].split(","):
                            if alias.strip():
                                aliases.setdefault(tag_key(alias), (category, name.replace("_", " ")))
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        except csv.Error as exc:
            raise ValueError(f"{path}: unreadable CSV: {exc}") from exc
        except IsADirectoryError as exc:
            raise ValueError(f"{path}: is a folder, expected a tagcomplete CSV file") from exc
        return cls(names, aliases, path)

    @staticmethod
    def _parse_row(row: list[str], path: Path, line_no: int) -> tuple[str, str]:
        if len(row) < 2 or not row[0].strip():
            raise ValueError(f"{path}:{line_no}: expected 'name,type,count,\"aliases\"', got {','.join(row)!r}")
        try:
            type_number = int(row[1].strip())
        except ValueError:
            raise ValueError(f"{path}:{line_no}: tag type must be a number (0 general, 1 artist, 3 copyright, "
                             f"4 character, 5 meta), got {row[1]!r}") from None
        return row[0].strip(), CSV_TYPES.get(type_number, GENERAL)

    def lookup(self, key: str) -> TagInfo | None:
        category = self.names.get(key)
        if category is not None:
            return TagInfo(category)
        alias = self.aliases.get(key)
        if alias is not None:
            return TagInfo(alias[0], alias[1])
        return None


class KgenTagLists:
    """tipo-kgen's `kgen/tag-list/*.txt`, found with find_spec (which does not run the package)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.names = _read_name_lists(str(folder))

    @classmethod
    def discover(cls, package: str = "kgen") -> "KgenTagLists | None":
        """The installed package's lists, or None when it is not installed or ships none."""
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        for location in spec.submodule_search_locations:
            folder = Path(location) / "tag-list"
            if any((folder / name).is_file() for name in KGEN_LISTS):
                return cls(folder)
        return None

    def lookup(self, key: str) -> TagInfo | None:
        category = self.names.get(key)
        return TagInfo(category) if category is not None else None


@lru_cache(maxsize=4)
def _read_name_lists(folder: str) -> dict[str, str]:
    """About 900k names in the full lists: read once per process."""
    names: dict[str, str] = {}
    for file_name, category in KGEN_LISTS.items():
        path = Path(folder) / file_name
        if not path.is_file():
            continue
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.strip():
                    names.setdefault(tag_key(line), category)
    return names


def category_source(csv_path: str | Path | None = None, use_kgen: bool = True) -> ChainedSource:
    """The external sources a prompt is ordered with: the user's CSV first, then tipo-kgen."""
    sources: list[CategorySource] = []
    if csv_path:
        sources.append(CsvTagCategories.from_file(csv_path))
    if use_kgen:
        kgen = KgenTagLists.discover()
        if kgen is not None:
            sources.append(kgen)
    return ChainedSource(sources)
