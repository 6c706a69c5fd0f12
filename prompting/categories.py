"""Where a tag's category comes from: character / series / artist / meta / general, and the
profile's own special tags (subject count, quality, rating, year, aesthetic, source).

Sources, asked in turn by the tag orderer:
- the profile's vocabulary and the Danbooru subject-count tags (always; built in),
- a user's a1111 tagcomplete `danbooru.csv` (`name,type,count,"aliases"`),
- `tipo-kgen`'s name lists (a dependency; its data files only: the model code, which pulls in
  torch and transformers, is never imported).
Anything no source knows is a general tag. Every source can also list what it knows (`entries()`),
for tools such as autocomplete that build their own index on top.
"""

from __future__ import annotations

import csv
import importlib.util
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator, Protocol

import numpy as np

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


@dataclass(frozen=True)
class TagEntry:
    """One known tag, as `entries()` lists it: its name (prompt form: spaces), its category, its
    post count when the source has one, and the aliases that resolve to it."""

    name: str
    category: str
    count: int | None = None
    aliases: tuple[str, ...] = ()


class CategorySource(Protocol):
    def lookup(self, key: str) -> TagInfo | None:
        """`key` is tag_key(name): lower case, spaces, unescaped."""

    def entries(self) -> Iterator[TagEntry]:
        """Every tag this source knows, once each."""


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

    def entries(self) -> Iterator[TagEntry]:
        """Each source's entries in turn; a tag an earlier source already knows (by name or alias)
        is skipped, so every entry has the category `lookup` gives it."""
        for position, source in enumerate(self.sources):
            earlier = self.sources[:position]
            for entry in source.entries():
                key = tag_key(entry.name)
                if not any(other.lookup(key) is not None for other in earlier):
                    yield entry


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

    def entries(self) -> Iterator[TagEntry]:
        for key, category in self.known.items():
            yield TagEntry(key, category)


class CsvTagCategories:
    """An a1111 tagcomplete `danbooru.csv`: `name,type,count,"alias1,alias2"` per line (count and
    aliases optional). Aliases resolve to their tag's category and canonical name."""

    def __init__(self, names: dict[str, str], aliases: dict[str, tuple[str, str]], path: Path,
                 rows: list[TagEntry] | None = None):
        self.names = names
        self.aliases = aliases
        self.path = path
        self.rows = rows if rows is not None else [TagEntry(key, category) for key, category in names.items()]

    @classmethod
    def from_file(cls, path: str | Path) -> "CsvTagCategories":
        path = Path(path)
        names: dict[str, str] = {}
        aliases: dict[str, tuple[str, str]] = {}
        rows: list[TagEntry] = []
        try:
            with path.open(encoding="utf-8-sig", newline="") as handle:
                for line_no, row in enumerate(csv.reader(handle), start=1):
                    if not row or not "".join(row).strip():
                        continue
                    if line_no == 1 and row[0].strip().lower() == "name":
                        continue  # a header line
                    name, category = cls._parse_row(row, path, line_no)
                    key = tag_key(name)
                    if key in names:
                        continue  # first row wins
                    names[key] = category
                    prompt_name = name.replace("_", " ")
                    row_aliases = []
                    if len(row) >= 4:
                        for alias in row[3].split(","):
                            if alias.strip():
                                aliases.setdefault(tag_key(alias), (category, prompt_name))
                                row_aliases.append(alias.strip().replace("_", " "))
                    rows.append(TagEntry(prompt_name, category, cls._parse_count(row, path, line_no), tuple(row_aliases)))
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        except csv.Error as exc:
            raise ValueError(f"{path}: unreadable CSV: {exc}") from exc
        except IsADirectoryError as exc:
            raise ValueError(f"{path}: is a folder, expected a tagcomplete CSV file") from exc
        return cls(names, aliases, path, rows)

    @staticmethod
    def _parse_count(row: list[str], path: Path, line_no: int) -> int | None:
        text = row[2].strip() if len(row) >= 3 else ""
        if not text:
            return None
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{path}:{line_no}: post count must be a whole number, got {row[2]!r}") from None

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

    def entries(self) -> Iterator[TagEntry]:
        """The CSV's rows in file order (tagcomplete files are sorted by post count)."""
        return iter(self.rows)


class KgenTagLists:
    """tipo-kgen's `kgen/tag-list/*.txt`, found with find_spec (which does not run the package).

    About 957k names. Holding them as Python strings costs about 90 MB and seconds to build, so the
    index keeps only each name's hash (Python's own `hash`, valid for this process) in one sorted
    int64 array with the category in its low bits: 8 bytes a name (7.7 MB), built in a few tenths
    of a second, looked up in about a microsecond. A false match needs a 62-bit collision with one
    of ~1M names (odds ~2e-13 per lookup). `entries()` re-reads the files for the names
    (benchmarks/bench_tag_index.py measures all of this against kgen's own set-of-strings load)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.index = _hashed_name_lists(str(folder))

    @classmethod
    def discover(cls, package: str = "kgen") -> "KgenTagLists | None":
        """The installed package's lists, or None when it is not installed or ships none."""
        folder = _kgen_folder(package)
        return cls(folder) if folder is not None else None

    def lookup(self, key: str) -> TagInfo | None:
        return self.index.lookup(key)

    def entries(self) -> Iterator[TagEntry]:
        """Names in file order, list by list (the shipped files run from most to least used);
        a name in two lists is listed once, under the category lookup gives it."""
        for file_name, category in KGEN_LISTS.items():
            path = self.folder / file_name
            if not path.is_file():
                continue
            with path.open(encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    key = tag_key(line)
                    if key and self.index.lookup(key) == TagInfo(category):  # not in an earlier list
                        yield TagEntry(line.strip(), category)


def _kgen_folder(package: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "tag-list"
        if any((folder / name).is_file() for name in KGEN_LISTS):
            return folder
    return None


# Whitespace tag_key() folds into one space (str.isspace, as `\\s` in re), newline aside.
_OTHER_WHITESPACE = tuple(ch for ch in map(chr, range(0x3001)) if ch.isspace() and ch not in " \n")


def _keys_of_lines(path: Path) -> list[str]:
    """tag_key() of every line of a name list, done on the whole text at once: per line it costs
    seconds for ~1M names. Only the few lines with stray spaces or a backslash (an escape to
    undo) are passed through tag_key() one by one."""
    text = path.read_text(encoding="utf-8", errors="replace")  # universal newlines: \r\n -> \n
    for ch in _OTHER_WHITESPACE:
        if ch in text:
            text = text.replace(ch, " ")
    text = text.replace("_", " ").lower()
    keys = text.split("\n")
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    space, newline = data == 32, data == 10
    after = np.append(space[1:] | newline[1:], True)  # a space followed by a space, a newline or the end
    before = np.insert(newline[:-1], 0, True)  # a space at the start of a line
    untidy = np.flatnonzero((space & (after | before)) | (data == 92))
    if len(untidy):
        line_numbers = np.searchsorted(np.flatnonzero(newline), untidy)
        for number in np.unique(line_numbers).tolist():
            keys[number] = tag_key(keys[number])
    return keys


class HashedNames:
    """Sorted 64-bit values, one per name: the name's hash with its low bits replaced by the
    category's code. Sorting puts a name's earliest list first, which is the category it gets."""

    CATEGORIES = tuple(dict.fromkeys(KGEN_LISTS.values()))
    _INFOS = tuple(TagInfo(category) for category in CATEGORIES)
    CODE_BITS = max(1, (len(CATEGORIES) - 1).bit_length())
    CODE_MASK = (1 << CODE_BITS) - 1

    def __init__(self, values: np.ndarray):
        self.values = values

    @classmethod
    def from_files(cls, files: Iterable[tuple[Path, str]]) -> "HashedNames":
        parts = [np.zeros(0, np.int64)]
        empty = hash("") & ~cls.CODE_MASK
        for path, category in files:
            keys = _keys_of_lines(path)
            values = np.fromiter(map(hash, keys), dtype=np.int64, count=len(keys))
            values &= ~cls.CODE_MASK
            parts.append(values[values != empty] | cls.CATEGORIES.index(category))
        return cls(np.sort(np.concatenate(parts)))

    def __len__(self) -> int:
        """Names held (one per list a name is in)."""
        return len(self.values)

    @property
    def nbytes(self) -> int:
        return self.values.nbytes

    def lookup(self, key: str) -> TagInfo | None:
        value = hash(key) & ~self.CODE_MASK
        position = int(self.values.searchsorted(value))
        if position < len(self.values):
            found = int(self.values[position])
            if found & ~self.CODE_MASK == value:
                return self._INFOS[found & self.CODE_MASK]
        return None


@lru_cache(maxsize=4)
def _hashed_name_lists(folder: str) -> HashedNames:
    """Built once per process and folder."""
    files = [(Path(folder) / name, category) for name, category in KGEN_LISTS.items()]
    return HashedNames.from_files([(path, category) for path, category in files if path.is_file()])


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
