"""Named block-weight presets (26 SD1.x-layout values) and their SDXL form by resolution level.

The shipped book (``mbw-presets.tsv`` next to this file) holds the AnimeDiffusion seed's two
presets, HIGHRES_REPLACE and LOWRES_REPLACE, then the SuperMerger preset names. User books use the
same TSV format: a ``preset_name<TAB>preset_weights`` header, then one preset per line with 26
comma-separated numbers, BASE first; each value is the fraction of model B (0 = A, 1 = B).

Why not cut 26 values to 20 by position (SuperMerger, its issue #468): SD1.x has four resolution
levels and SDXL three, so the SD1 output blocks OUT00..OUT08 are its low-resolution half while SDXL's
OUT00..OUT08 cover every level. Presets are mapped by resolution level instead (sizes for a 512 px
SD1 / 1024 px SDXL image; both latents are image/8):

=========================  =====================  ===================
level (latent scale)       SD1.x blocks            SDXL blocks
=========================  =====================  ===================
conv_in + time/label emb   IN00                    IN00
image/8  (64 | 128 px)     IN01-02, IN03 (down)    IN01-02, IN03 (down)
image/16 (32 | 64 px)      IN04-05, IN06 (down)    IN04-05, IN06 (down)
image/32 (16 | 32 px)      IN07-08                 IN07-08
image/64 (8 px, SD1 only)  IN09 (down), IN10-11    -- (dropped)
middle                     M00                     M00
image/64 (SD1 only)        OUT00-02                -- (dropped)
image/32                   OUT03-05                OUT00-02
image/16                   OUT06-08                OUT03-05
image/8 + final out.*      OUT09-11                OUT06-08
=========================  =====================  ===================
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from ..checkpoints.architecture import SD15, SDXL, Architecture

BUILTIN_PRESETS = Path(__file__).with_name("mbw-presets.tsv")

# SDXL block -> the SD1.x block at the same resolution level (table above).
SDXL_FROM_SD1: dict[str, str] = {
    "BASE": "BASE",
    **{f"IN{i:02d}": f"IN{i:02d}" for i in range(9)},
    "M00": "M00",
    **{f"OUT{i:02d}": f"OUT{i + 3:02d}" for i in range(9)},
}


def sd1_to_sdxl(values: Sequence[float]) -> tuple[float, ...]:
    """Map 26 SD1.x-layout weights onto the 20 SDXL blocks by resolution level."""
    if len(values) != SD15.weight_count:
        raise ValueError(f"an SD1.x-layout weight list has {SD15.weight_count} values, got {len(values)}")
    by_block = dict(zip(SD15.blocks, values))
    return tuple(by_block[SDXL_FROM_SD1[block]] for block in SDXL.blocks)


def for_architecture(values: Sequence[float], arch: Architecture) -> tuple[float, ...]:
    """26 SD1.x-layout values as the weight vector of `arch`."""
    return tuple(values) if arch is SD15 else sd1_to_sdxl(values)


@dataclass(frozen=True)
class PresetBook:
    """Preset name -> 26 SD1.x-layout values; `sources` says which file each came from.

    A user file may be broken without breaking the shipped presets: its broken lines are kept in
    `broken` (name -> why) and fail only when that preset is chosen; problems that name no preset
    (a missing or empty file, a line without a name) are in `problems`, for the host to warn about.
    """

    presets: Mapping[str, tuple[float, ...]]
    sources: Mapping[str, str] = field(default_factory=dict)
    broken: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        """Every choosable name: the broken ones too, so choosing one says what is wrong with it."""
        return list(self.presets) + [n for n in self.broken if n not in self.presets]

    def get(self, name: str) -> tuple[float, ...]:
        key = name.strip()
        folded = {n.upper(): n for n in self.names}
        key = key if key in self.names else folded.get(key.upper(), key)
        if key in self.broken:
            raise ValueError(f"preset {key!r} cannot be used: {self.broken[key]}")
        if key in self.presets:
            return self.presets[key]
        unread = f" (not read: {'; '.join(self.problems)})" if self.problems else ""
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(self.names)}{unread}")

    def with_file(self, path: str | os.PathLike) -> "PresetBook":
        """This book plus the presets of a user TSV (a user preset replaces a shipped one of that name).
        Never raises for the file's content: see the class docstring."""
        found = _read_presets(path)
        merged = {name: values for name, values in self.presets.items() if name not in found.broken}
        merged.update(found.presets)
        sources = {name: where for name, where in self.sources.items() if name in merged}
        sources.update({name: str(path) for name in found.presets})
        return PresetBook(merged, sources, {**self.broken, **found.broken}, self.problems + found.problems)


def finite_numbers(parts: Sequence[str], label: str) -> list[float]:
    """Parse each part as a finite float; errors name the item as `<label> <position>`."""
    values = []
    for index, part in enumerate(parts, 1):
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"{label} {index} ({part!r}) is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{label} {index} ({part!r}) is not a finite number")
        values.append(value)
    return values


def parse_preset_values(text: str, *, where: str) -> tuple[float, ...]:
    values = finite_numbers([p.strip() for p in text.split(",")], f"{where}: value")
    if len(values) != SD15.weight_count:
        raise ValueError(
            f"{where}: a preset needs {SD15.weight_count} values in the SD1.x layout "
            f"({SD15.layout_text()}), got {len(values)}"
        )
    return tuple(values)


@dataclass(frozen=True)
class _PresetFile:
    presets: dict[str, tuple[float, ...]]
    broken: dict[str, str]  # name -> "<file> line N: why"
    problems: tuple[str, ...]  # problems that name no preset
    errors: tuple[str, ...] = ()  # every problem, in file order
    missing: bool = False


def _read_presets(path: str | os.PathLike) -> _PresetFile:
    """Every line of a preset TSV on its own: good presets, broken ones by name, and other problems."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        why = f"preset file {str(source)!r} does not exist"
        return _PresetFile({}, {}, (why,), (why,), missing=True)
    except (OSError, UnicodeDecodeError) as exc:
        why = f"preset file {str(source)!r} cannot be read ({exc})"
        return _PresetFile({}, {}, (why,), (why,))
    presets: dict[str, tuple[float, ...]] = {}
    broken: dict[str, str] = {}
    problems: list[str] = []
    errors: list[str] = []
    header_seen = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not header_seen:
            header_seen = True
            if line.split("\t")[0].strip().lower() == "preset_name":
                continue
        cells = [c for c in raw.rstrip("\r\n").split("\t") if c.strip()]
        where = f"{source.name} line {number}"
        name = cells[0].strip() if len(cells) == 2 else None
        try:
            if name is None:
                raise ValueError(f"{where}: expected 'name<TAB>comma-separated weights', got {line!r}")
            if name in presets or name in broken:
                raise ValueError(f"{where}: preset {name!r} is defined twice")
            presets[name] = parse_preset_values(cells[1], where=f"{where} ({name})")
        except ValueError as exc:
            errors.append(str(exc))
            if name is None:
                problems.append(str(exc))
            else:
                presets.pop(name, None)  # defined twice: neither definition is trusted
                broken[name] = str(exc)
    if not presets and not broken and not problems:
        problems.append(f"preset file {str(source)!r} holds no presets")
        errors.append(problems[-1])
    return _PresetFile(presets, broken, tuple(problems), tuple(errors))


def read_preset_file(path: str | os.PathLike) -> dict[str, tuple[float, ...]]:
    """Read a preset TSV (header, then ``name<TAB>v1,...,v26``; blank lines and ``#`` comments
    skipped), strictly: the first problem raises, naming the file and line."""
    found = _read_presets(path)
    if found.errors:
        raise (FileNotFoundError if found.missing else ValueError)(found.errors[0])
    return found.presets


_BUILTIN: PresetBook | None = None


def builtin_presets() -> PresetBook:
    """The shipped presets: the seed's two first, then SuperMerger's names."""
    global _BUILTIN
    if _BUILTIN is None:
        presets = read_preset_file(BUILTIN_PRESETS)
        _BUILTIN = PresetBook(presets, {name: "shipped" for name in presets})
    return _BUILTIN


def load_presets(user_file: str | os.PathLike | None = None) -> PresetBook:
    book = builtin_presets()
    return book.with_file(user_file) if user_file else book
