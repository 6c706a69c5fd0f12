"""The trainer's outputs never touch its inputs: checked from the settings, before any work.

A full fine-tune of `out/model.safetensors` named `model` would replace its own base at the end; a
LoRA continued from `out/animekit-step00000100.safetensors` would be pruned by `keep_last` as an old
periodic save. Both are refused by name, with the same rule the merge uses (files/output_checks.py).
"""

from __future__ import annotations

from pathlib import Path

from ..files.output_checks import check_output_path
from .config import TrainConfig
from .outputs import final_name, periodic_files


def input_files(cfg: TrainConfig) -> dict[str, str]:
    """Every model file the run reads, by its settings key."""
    found = {"model.path": cfg.model.path, "model.checkpoint": cfg.model.checkpoint,
             "network.init_weights": cfg.network.init_weights}
    return {key: path for key, path in found.items() if path and Path(path).is_file()}


def check_outputs(cfg: TrainConfig) -> None:
    """Refuse settings under which a save would overwrite or prune an input file."""
    inputs = input_files(cfg)
    output_dir = Path(cfg.save.output_dir)
    check_output_path(output_dir / final_name(cfg.save.name), {f"the input {k}": v for k, v in inputs.items()},
                      overwrite=True, suffix=".safetensors")
    periodic = {p.resolve() for p in periodic_files(output_dir, cfg.save.name)}
    for key, path in inputs.items():
        if Path(path).resolve() in periodic:
            raise ValueError(f"{key} {path!r} is one of this run's periodic saves (save.name = {cfg.save.name!r} in "
                             f"{str(output_dir)!r}) and would be pruned by save.keep_last; choose another save.name "
                             f"or output_dir")
