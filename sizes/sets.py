"""Named size tables (SDXL nine, the SDXL paper's 40, SD 1.5 anime ...) shipped as
`resolution-sets.json`, and the labels the aspect-preset node shows for them."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from .resolutions import Size, parse_size

SETS_FILE = "resolution-sets.json"


@dataclass(frozen=True)
class ResolutionSet:
    name: str
    title: str
    source: str
    sizes: tuple[Size, ...]


def _read_sets() -> dict:
    return json.loads(resources.files(__package__).joinpath(SETS_FILE).read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def _all_sets() -> dict[str, ResolutionSet]:
    found = {}
    for name, entry in _read_sets().items():
        sizes = tuple(parse_size(text, f"{SETS_FILE} [{name}]", multiple=64) for text in entry["sizes"])
        found[name] = ResolutionSet(name=name, title=entry["title"], source=entry["source"], sizes=sizes)
    return found


def resolution_set_names() -> list[str]:
    return list(_all_sets())


def resolution_set(name: str) -> ResolutionSet:
    sets = _all_sets()
    if name not in sets:
        raise ValueError(f"unknown resolution set {name!r}; valid sets: {', '.join(sets)}")
    return sets[name]


def size_label(size: Size) -> str:
    """`832x1216 (13:19 portrait)`: the size first, so a label always names an exact size."""
    width, height = size
    divisor = math.gcd(width, height)
    shape = "square" if width == height else ("landscape" if width > height else "portrait")
    return f"{width}x{height} ({width // divisor}:{height // divisor} {shape})"


def size_from_label(label: str) -> Size:
    """Inverse of size_label; accepts a bare `WxH` too."""
    return parse_size(label.split(" ", 1)[0], "size")
