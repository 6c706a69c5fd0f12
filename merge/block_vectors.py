"""Block-weight vectors: which lengths are accepted, and which block each position means.

One table, shared by block-weighted merges and LoRA block weights (LBW), so a vector means the same
in AnimeKit as in the tool it came from. Block names are the MBW ones (`Architecture.blocks`); which
key belongs to which block is merge/blocks.py's table (UNet) and BASE for the text encoder(s).

======  ========  ==================================================================  ===================
length  arch      positions, in order                                                 from
======  ========  ==================================================================  ===================
26      SD1.x     BASE, IN00..IN11, M00, OUT00..OUT11                                 MBW / SuperMerger
20      SDXL      BASE, IN00..IN08, M00, OUT00..OUT08                                 MBW / SuperMerger
26      SDXL      the SD1.x 26, mapped by resolution level (merge/presets.py)          AnimeKit
17      SD1.x     BASE, IN01, IN02, IN04, IN05, IN07, IN08, M00, OUT03..OUT11          A1111 LoRA Block Weight
12      SDXL      BASE, IN04, IN05, IN07, IN08, M00, OUT00..OUT05                     A1111 LoRA Block Weight
======  ========  ==================================================================  ===================

The 17 and 12 forms list the blocks that hold attention layers (where a plain LoRA lives); as in
hako-mikan/sd-webui-lora-block-weight (``to26``), every block they leave out gets 0. A1111's LBW
reads a 26-vector on SDXL by block name (IN09..IN11, OUT09..OUT11 unused); AnimeKit maps it by
resolution level instead, as its merges do (SuperMerger issue #468), so an SD1 "high-res" vector
hits SDXL's high-res blocks.

LBW presets (17 values, SD1.x form, from sd-webui-lora-block-weight's ``DEF_WEIGHT_PRESET``) work on
SDXL through the same resolution-level mapping; the MBW merge presets (merge/presets.py) are accepted
too, by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..checkpoints.architecture import SD15, SDXL, Architecture
from .presets import PresetBook, builtin_presets, for_architecture
from .weights import parse_weight_list

LBW17_BLOCKS = ("BASE", "IN01", "IN02", "IN04", "IN05", "IN07", "IN08", "M00",
                "OUT03", "OUT04", "OUT05", "OUT06", "OUT07", "OUT08", "OUT09", "OUT10", "OUT11")
LBW12_BLOCKS = ("BASE", "IN04", "IN05", "IN07", "IN08", "M00", "OUT00", "OUT01", "OUT02", "OUT03", "OUT04", "OUT05")

# sd-webui-lora-block-weight's default presets (17 values, SD1.x LBW form).
LBW_PRESETS: dict[str, tuple[float, ...]] = {
    "NONE": (0,) * 17,
    "ALL": (1,) * 17,
    "INS": (1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
    "IND": (1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
    "INALL": (1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
    "MIDD": (1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0),
    "OUTD": (1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0),
    "OUTS": (1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1),
    "OUTALL": (1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    "ALL0.5": (0.5,) * 17,
}


@dataclass(frozen=True)
class VectorForm:
    """One accepted vector length for one architecture."""

    length: int
    arch: Architecture
    blocks: tuple[str, ...]  # the block each position means ("SD1 26 on SDXL" lists the SD1 names)
    origin: str


FORMS: tuple[VectorForm, ...] = (
    VectorForm(26, SD15, SD15.blocks, "MBW / SuperMerger"),
    VectorForm(20, SDXL, SDXL.blocks, "MBW / SuperMerger"),
    VectorForm(26, SDXL, SD15.blocks, "SD1.x MBW, mapped by resolution level"),
    VectorForm(17, SD15, LBW17_BLOCKS, "A1111 LoRA Block Weight"),
    VectorForm(12, SDXL, LBW12_BLOCKS, "A1111 LoRA Block Weight"),
)


@dataclass(frozen=True)
class BlockVector:
    """A value per block of `arch` (in `arch.blocks` order) and where the numbers came from."""

    arch: Architecture
    values: tuple[float, ...]
    source: str

    def of(self, block: str) -> float:
        return self.values[self.arch.blocks.index(block)]

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.arch.blocks, self.values))


def accepted_lengths(arch: Architecture) -> str:
    return ", ".join(f"{f.length} ({f.origin}: {', '.join(f.blocks) if f.length < 20 else f.blocks[0] + '..'})"
                     for f in FORMS if f.arch is arch)


def _by_name(values, names, arch: Architecture) -> tuple[float, ...]:
    given = dict(zip(names, values))
    return tuple(float(given.get(block, 0.0)) for block in arch.blocks)


def expand(values, arch: Architecture, *, source: str = "custom") -> BlockVector:
    """A vector of any accepted length as one value per block of `arch`."""
    values = tuple(float(v) for v in values)
    for form in FORMS:
        if form.arch is arch and form.length == len(values):
            if form.blocks == arch.blocks:
                return BlockVector(arch, values, source)
            if form.length == 26:  # SD1.x 26 on SDXL
                return BlockVector(arch, for_architecture(values, arch), f"{source} (SD1.x 26, mapped to SDXL by resolution level)")
            return BlockVector(arch, _by_name(values, form.blocks, arch), f"{source} ({form.length}-value LBW form)")
    if arch is SDXL and len(values) == 17:
        sd1 = _by_name(values, LBW17_BLOCKS, SD15)
        return BlockVector(arch, for_architecture(sd1, SDXL), f"{source} (SD1.x 17-value LBW form, mapped by resolution level)")
    raise ValueError(f"a block-weight vector for {arch.label} has one of these lengths: {accepted_lengths(arch)}; got {len(values)} values")


def resolve_vector(text: str, arch: Architecture, book: PresetBook | None = None) -> BlockVector:
    """A preset name (LBW first, then the MBW merge presets) or comma-separated numbers."""
    name = text.strip()
    if name in LBW_PRESETS:
        return expand(LBW_PRESETS[name], arch, source=f"LBW preset {name}")
    book = book or builtin_presets()
    if name in book.presets:
        return expand(book.get(name), arch, source=f"MBW preset {name}")
    if not name:
        raise ValueError("block weights are empty: give a preset name (e.g. ALL, INS, OUTALL) or comma-separated numbers")
    try:
        values = parse_weight_list(name)
    except ValueError as exc:
        known = ", ".join(list(LBW_PRESETS) + list(book.names))
        raise ValueError(f"block weights {text!r}: not a preset name ({known}) nor a list of numbers ({exc})") from None
    return expand(values, arch)


def preset_names(book: PresetBook | None = None) -> list[str]:
    book = book or builtin_presets()
    return list(LBW_PRESETS) + [n for n in book.names if n not in LBW_PRESETS]
