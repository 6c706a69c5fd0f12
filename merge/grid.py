"""Merge comparison grids: what each cell of an X / Y grid merges, and the labelled grid picture.

An axis is a kind and its values: ``preset`` (names), ``weights`` (block-weight lists, one per value),
``alpha`` (one weight for every block), ``method`` (registry names), ``density`` (TIES / DARE), ``beta``
(triple-sum / sum-twice) or ``none``. Values are separated by ``;`` or new lines (``alpha``, ``density``
and ``beta`` also by commas). Each cell starts from the base settings and takes its X and Y values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .methods import METHODS, MergeMethod
from .weights import CUSTOM, parse_weight_list

AXIS_KINDS = ("none", "preset", "weights", "alpha", "method", "density", "beta")


@dataclass(frozen=True)
class CellSettings:
    """One merge: a preset or a weights text (one of them), and the method's knobs."""

    preset: str
    weights: str
    method: str
    density: float
    seed: int
    beta: float

    def merge_method(self) -> MergeMethod:
        return MergeMethod(self.method, density=self.density, seed=self.seed, beta=self.beta)


@dataclass(frozen=True)
class Axis:
    kind: str
    values: tuple[str, ...]  # as typed, also the labels

    def apply(self, settings: CellSettings, value: str) -> CellSettings:
        if self.kind == "preset":
            return replace(settings, preset=value, weights="")
        if self.kind == "weights":
            return replace(settings, preset=CUSTOM, weights=value)
        if self.kind == "alpha":
            return replace(settings, preset=CUSTOM, weights=value)
        if self.kind == "method":
            return replace(settings, method=value)
        if self.kind == "density":
            return replace(settings, density=float(value))
        if self.kind == "beta":
            return replace(settings, beta=float(value))
        return settings

    def label(self, value: str) -> str:
        return "" if self.kind == "none" else f"{self.kind}: {value}"


def parse_axis(kind: str, text: str, *, name: str = "axis") -> Axis:
    """Check the kind and split the values (each one checked, so a typo fails before any sampling)."""
    if kind not in AXIS_KINDS:
        raise ValueError(f"{name} kind must be one of {', '.join(AXIS_KINDS)}, got {kind!r}")
    if kind == "none":
        return Axis("none", ("",))
    splitter = r"[;\n]+" if kind in ("preset", "weights", "method") else r"[;,\n\s]+"
    values = tuple(v.strip() for v in re.split(splitter, text or "") if v.strip())
    if not values:
        raise ValueError(f"{name} ({kind}) has no values; separate them with ';' or new lines")
    for value in values:
        if kind == "method" and value not in METHODS:
            raise ValueError(f"{name}: unknown method {value!r}; choose from {', '.join(METHODS)}")
        if kind in ("alpha", "density", "beta"):
            parse_weight_list(value)
        if kind == "weights":
            parse_weight_list(value)
        if kind == "density" and not 0.0 < float(value) <= 1.0:
            raise ValueError(f"{name}: density {value} must be in (0, 1]")
    return Axis(kind, values)


def grid_cells(base: CellSettings, x: Axis, y: Axis) -> list[tuple[int, int, CellSettings]]:
    """(row, column, settings) in row-major order."""
    return [(r, c, y.apply(x.apply(base, xv), yv)) for r, yv in enumerate(y.values) for c, xv in enumerate(x.values)]


def draw_grid(cells, x: Axis, y: Axis):
    """A labelled grid (PIL image) from row-major cells (PIL images of one size)."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = cells[0].size
    font = ImageFont.load_default()
    top = 0 if x.kind == "none" else 24
    left = 0 if y.kind == "none" else max(96, 8 + 7 * max(len(y.label(v)) for v in y.values))
    cols, rows = len(x.values), len(y.values)
    grid = Image.new("RGB", (left + cols * width, top + rows * height), "white")
    draw = ImageDraw.Draw(grid)
    for c, value in enumerate(x.values):
        if top:
            draw.text((left + c * width + 4, 6), _fit(x.label(value), width), fill="black", font=font)
    for r, value in enumerate(y.values):
        if left:
            draw.text((4, top + r * height + height // 2 - 6), y.label(value)[: left // 6], fill="black", font=font)
    for index, cell in enumerate(cells):
        r, c = divmod(index, cols)
        grid.paste(cell, (left + c * width, top + r * height))
    return grid


def _fit(text: str, width: int) -> str:
    limit = max(4, width // 6)
    return text if len(text) <= limit else text[: limit - 1] + "~"
