"""Prefix query -> suggestions: the chosen profile's own tags first, then the most popular tags;
other families' tags marked (and put after the rest); each with the text to insert in ComfyUI's
form."""

from __future__ import annotations

import ctypes
import re
import threading
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path

from ..categories import category_source
from ..profile import load_profile
from ..tagtext import literal_tag, tag_key
from .index import TagIndex
from .sources import all_family_keys, family_keys, family_tags, index_entries

MAX_LIMIT = 100
NO_PROFILE = "none"
_QUALIFIER = re.compile(r"^(?P<name>.+) \((?P<qualifier>[^()]+)\)$")


@dataclass(frozen=True)
class CompletionSettings:
    """What the editor asks for: how many, which family, which spelling."""

    limit: int = 20
    profile: str = NO_PROFILE
    underscores: bool = False

    def __post_init__(self):
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {self.limit!r}")
        if self.profile != NO_PROFILE:
            load_profile(self.profile)  # names the valid profiles when unknown


@dataclass(frozen=True)
class Suggestion:
    tag: str
    """The tag as a tag list spells it (`ganyu (genshin impact)`, `score_9`)."""
    insert: str
    """What the editor puts in the prompt: ComfyUI form (`ganyu \\(genshin impact\\)`)."""
    category: str
    count: int | None = None
    alias: str | None = None
    """The alias the query matched, when it matched one (the tag is what gets inserted)."""
    series: str | None = None
    """A character's series, when the index knows it."""
    family: bool = False
    """One of the chosen profile's own quality / rating / year / aesthetic / source tags."""
    unused: bool = False
    """A model family's tag that the chosen profile was not trained on."""

    def to_json(self) -> dict:
        return asdict(self)


def query_key(text: str) -> str:
    """What the user typed (maybe `Ganyu_\\(gen`) in index form; a trailing space or underscore
    is kept, since it says the word is finished."""
    key = tag_key(text)
    if key and text[-1:] in (" ", "_"):
        key += " "
    return key


def insert_text(name: str, underscores: bool, own_spelling: bool = False) -> str:
    """ComfyUI form of a tag name. A family tag keeps its card's spelling (`rating: general`,
    `score_9`); Danbooru names get underscores only when asked for."""
    text = literal_tag(name)
    if underscores and not own_spelling:
        text = text.replace(" ", "_")
    return text


def series_of(index: TagIndex, name: str) -> str | None:
    """`ganyu (genshin impact)` -> `genshin impact` when that is a known series; `artoria
    pendragon (fate)` -> `fate (series)` where only that spelling is known."""
    match = _QUALIFIER.match(name)
    if match is None:
        return None
    qualifier = match.group("qualifier").strip()
    for candidate in (qualifier, f"{qualifier} (series)"):
        row = index.find(tag_key(candidate))
        if row is not None and index.category_of(row) == "series":
            return index.name(row)
    return None


def suggest(index: TagIndex, query: str, settings: CompletionSettings) -> list[Suggestion]:
    key = query_key(query)
    if not key:
        return []
    own = family_keys(settings.profile) if settings.profile != NO_PROFILE else frozenset()
    foreign = all_family_keys() - own if settings.profile != NO_PROFILE else frozenset()

    first: list[Suggestion] = []
    if settings.profile != NO_PROFILE:
        for tag in family_tags(load_profile(settings.profile)):
            if tag_key(tag.name).startswith(key):
                first.append(Suggestion(tag.name, insert_text(tag.name, settings.underscores, own_spelling=True),
                                        tag.category, family=True))
    taken = {tag_key(s.tag) for s in first}
    demotable = sum(1 for k in foreign if k.startswith(key))
    rest: list[Suggestion] = []
    for match in index.top(key, settings.limit + len(taken) + demotable):
        name = index.name(match.row)
        tag = tag_key(name)
        if tag in taken:
            continue
        category = index.category_of(match.row)
        is_family = tag in all_family_keys()
        rest.append(Suggestion(
            tag=name,
            insert=insert_text(name, settings.underscores, own_spelling=is_family),
            category=category,
            count=index.count_of(match.row),
            alias=match.alias,
            series=series_of(index, name) if category == "character" else None,
            unused=tag in foreign,
        ))
    rest.sort(key=lambda s: s.unused)  # stable: popularity order within each group
    return (first + rest)[: settings.limit]


_lock = threading.Lock()
_builds: dict[str | None, Future] = {}


def _build(csv_path: str | Path | None) -> TagIndex:
    index = TagIndex.build(index_entries(category_source(csv_path)))
    _release_freed_memory()
    return index


def _release_freed_memory() -> None:
    """The build frees about a million small objects; glibc keeps their pages unless asked to give
    them back (measured: the process keeps ~180 MB without this, ~50 MB with it)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass  # not glibc (macOS, Windows): nothing to do


def _index_build(csv_path: str | Path | None) -> Future:
    """The one build per process and CSV, started on first use in a background thread."""
    key = None if csv_path is None else str(csv_path)
    with _lock:
        future = _builds.get(key)
        if future is None:
            future = Future()
            _builds[key] = future

            def run() -> None:
                try:
                    future.set_result(_build(csv_path))
                except BaseException as exc:  # kept for every caller: a bad CSV is reported, not retried
                    future.set_exception(exc)

            threading.Thread(target=run, name="animekit-tag-index", daemon=True).start()
        return future


def default_index(csv_path: str | Path | None = None) -> TagIndex:
    """The process's index over every known tag (tipo-kgen, the user's CSV, the families' tags),
    built once (seconds) and kept; waits for the build."""
    return _index_build(csv_path).result()


def ready_index(csv_path: str | Path | None = None) -> TagIndex | None:
    """The index when built, else None (and the build under way): for a server that must not
    keep a request waiting for seconds. A failed build raises its error."""
    future = _index_build(csv_path)
    return future.result() if future.done() else None
