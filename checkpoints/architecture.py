"""The supported architectures, named once: ``sd15`` and ``sdxl`` everywhere (configs, profiles,
merge, trainer, nodes). ``sd1`` is accepted as an alias where users typed it before.

Each architecture also carries the facts more than one feature needs: the ldm UNet's block counts
(so the block names that block-weighted merges and LoRA block weights use), the SAI model-spec
architecture id, and the native resolution.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    """One supported UNet family."""

    name: str  # the one identifier: "sd15" | "sdxl"
    label: str  # what users call it in messages
    input_blocks: int  # ldm UNet input_blocks.N count
    output_blocks: int  # ldm UNet output_blocks.N count
    modelspec: str  # SAI model spec "modelspec.architecture" (without "/lora")
    resolution: int  # native training / sampling side in pixels

    @property
    def blocks(self) -> tuple[str, ...]:
        """Block names in weight-vector order: BASE (text encoders), IN.., M00, OUT.."""
        return (
            ("BASE",)
            + tuple(f"IN{i:02d}" for i in range(self.input_blocks))
            + ("M00",)
            + tuple(f"OUT{i:02d}" for i in range(self.output_blocks))
        )

    @property
    def weight_count(self) -> int:
        return 1 + self.input_blocks + 1 + self.output_blocks

    @property
    def final_block(self) -> str:
        return f"OUT{self.output_blocks - 1:02d}"

    def layout_text(self) -> str:
        return f"BASE, IN00..IN{self.input_blocks - 1:02d}, M00, OUT00..OUT{self.output_blocks - 1:02d}"


SD15 = Architecture("sd15", "SD1.x", 12, 12, "stable-diffusion-v1", 512)
SDXL = Architecture("sdxl", "SDXL", 9, 9, "stable-diffusion-xl-v1-base", 1024)
ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (SD15, SDXL)}
ARCHITECTURE_NAMES: tuple[str, ...] = tuple(ARCHITECTURES)
ALIASES: dict[str, str] = {"sd1": "sd15", "sd1.5": "sd15", "sd1.x": "sd15"}


def canonical_name(name: str, *, what: str = "architecture") -> str:
    """The canonical name for `name` (aliases such as 'sd1' -> 'sd15'); ValueError naming `what` otherwise."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in ARCHITECTURES:
        raise ValueError(f"{what} must be one of {', '.join(ARCHITECTURE_NAMES)}, got {name!r}")
    return key


def architecture(name: str, *, what: str = "architecture") -> Architecture:
    """The Architecture for a name or alias; ValueError naming `what` for anything else."""
    return ARCHITECTURES[canonical_name(name, what=what)]
