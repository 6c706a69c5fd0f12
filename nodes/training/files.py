"""Where the trainer nodes read and write: model files, the run's work folder, the base model.

Model files (final and periodic) go where ComfyUI's loaders look: `models/loras/` for a LoRA, so
the stock LoraLoader lists it at once, `output/checkpoints/` for a checkpoint (as CheckpointSave
does). Resume states, log.csv and the latent cache go to a work folder,
`output/animekit_training/<lora|checkpoint>/<filename>/`, which keeps the states (themselves
.safetensors files) out of ComfyUI's model lists.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import folder_paths

from ...files.paths import resolve_inside
from ...training.checkpointing import list_states

RUNS_FOLDER = "animekit_training"
SUFFIX = ".safetensors"
NONE = "none"
OUTPUT_PREFIX = "output/"  # continue_from names of files in output/checkpoints


def file_stem(filename: str) -> str:
    """The user's file name without .safetensors; ValueError for names that cannot be a file."""
    stem = (filename or "").strip().replace("\\", "/")
    if stem.lower().endswith(SUFFIX):
        stem = stem[: -len(SUFFIX)]
    parts = stem.split("/")
    if not stem or stem.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"filename: {filename!r} is not a plain file name (subfolders like `chars/alice` are fine)")
    return stem


def run_folder(kind: str, stem: str) -> Path:
    root = Path(folder_paths.get_output_directory()) / RUNS_FOLDER / kind
    return resolve_inside(root, stem, what="filename")


@dataclass(frozen=True)
class Destination:
    """Where a run's model files go and the name ComfyUI's loader lists the final one under."""

    folder: Path  # save.output_dir
    name: str  # save.name: the file stem, without subfolders
    listed: str  # e.g. "chars/alice.safetensors"


def _destination(root: Path, stem: str) -> Destination:
    path = resolve_inside(root, stem + SUFFIX, what="filename")
    return Destination(path.parent, path.name[: -len(SUFFIX)], os.path.relpath(path, root.resolve()))


def lora_destination(stem: str) -> Destination:
    """In the first loras folder."""
    return _destination(Path(folder_paths.get_folder_paths("loras")[0]), stem)


def checkpoint_destination(stem: str) -> Destination:
    return _destination(Path(folder_paths.get_output_directory()) / "checkpoints", stem)


def refresh_lists(_path=None) -> None:
    """A new model file: make LoraLoader / CheckpointLoader list it at once (on_save hook)."""
    folder_paths.filename_list_cache.clear()


def newest_state(run: Path) -> Path | None:
    states = list_states(run)
    return states[-1] if states else None


def clear_states(run: Path) -> int:
    """A fresh run under a reused name: drop the old run's resume states so `resume` cannot mix runs."""
    removed = 0
    if not run.is_dir():
        return 0
    for child in run.iterdir():
        if child.is_dir() and (child.name.startswith("state-") or child.name.startswith(".state-")):
            shutil.rmtree(child, ignore_errors=True)
            removed += 1
    return removed


def lora_choices() -> list[str]:
    return [NONE] + list(folder_paths.get_filename_list("loras"))


def checkpoint_choices() -> list[str]:
    own = Path(folder_paths.get_output_directory()) / "checkpoints"
    produced = sorted(
        OUTPUT_PREFIX + p.relative_to(own).as_posix() for p in own.rglob(f"*{SUFFIX}") if p.is_file()
    ) if own.is_dir() else []
    return [NONE] + list(folder_paths.get_filename_list("checkpoints")) + produced


def lora_path(name: str) -> str:
    if name not in lora_choices():
        raise ValueError(f"continue_from: no LoRA named {name!r} in the loras folder")
    return folder_paths.get_full_path_or_raise("loras", name)


def checkpoint_path(name: str) -> str:
    if name not in checkpoint_choices():
        raise ValueError(f"continue_from: no checkpoint named {name!r}")
    if name.startswith(OUTPUT_PREFIX):
        own = Path(folder_paths.get_output_directory()) / "checkpoints"
        return str(resolve_inside(own, name[len(OUTPUT_PREFIX):], what="continue_from"))
    return folder_paths.get_full_path_or_raise("checkpoints", name)


def base_model_file(prompt: dict | None, node_id: str | None, max_hops: int = 12) -> str | None:
    """The checkpoint file upstream of this node's `model` input in the prompt graph, if any."""
    if not prompt or node_id is None or str(node_id) not in prompt:
        return None
    link = prompt[str(node_id)].get("inputs", {}).get("model")
    for _ in range(max_hops):
        if not isinstance(link, list) or not link:
            return None
        node = prompt.get(str(link[0]), {})
        inputs = node.get("inputs", {})
        for key, kind in (("ckpt_name", "checkpoints"), ("unet_name", "diffusion_models")):
            if isinstance(inputs.get(key), str):
                return folder_paths.get_full_path(kind, inputs[key])
        link = inputs.get("model")
    return None
