"""How a message names what the user sets: a CLI flag (`--vae merge`) or a node input (`vae = merge`).

The core writes each piece of advice once and asks a `Naming` for the words; the CLI passes `CLI`,
the merge nodes pass `NODES`. A setting one side does not have is named in words.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Naming:
    style: str  # "cli" | "nodes"
    options: dict[str, str]  # setting -> flag or input name
    values: dict[tuple[str, str], str] = field(default_factory=dict)  # (setting, value) -> how it is chosen

    def __call__(self, setting: str, value: str | None = None) -> str:
        """`--vae merge` / `vae = 'merge (BASE weight)'`; just the flag or input name without a value."""
        name = self.options.get(setting, setting)
        if value is None:
            return name
        shown = self.values.get((setting, value), value)
        return f"{name} {shown}" if self.style == "cli" else f"{name} = {shown}"


CLI = Naming(
    "cli",
    {"vae": "--vae", "base": "--base", "preset": "--preset", "weights": "--weights", "overwrite": "--overwrite",
     "explain_keys": "--explain-keys", "output": "-o"},
    {("vae", "file"): "FILE.safetensors", ("output", "file"): "OUTPUT.safetensors"},
)  # fmt: skip
NODES = Naming(
    "nodes",
    {"base": "model_c / ckpt_c", "overwrite": "a new filename_prefix"},
    # the Block Merge Checkpoint Files node's vae combo: its labels (nodes/merge_nodes.py VAE_*_LABEL)
    {("vae", "merge"): "'merge (BASE weight)'", ("vae", "file"): "a file from models/vae"},
)
