"""Where the trainer nodes read and write, in ComfyUI's folders (naming rules: training/run_files.py).

Model files (final and periodic) go where ComfyUI's loaders look: `models/loras/` for a LoRA, so
the stock LoraLoader lists it at once, `output/checkpoints/` for a checkpoint (as CheckpointSave
does). Resume states, log.csv and the latent cache go to the run's work folder under `output/`.
"""

from __future__ import annotations

from pathlib import Path

import folder_paths

from ...training.run_files import Destination, destination, own_output_path, own_outputs, run_folder

NONE = "none"


def _own_checkpoints() -> Path:
    return Path(folder_paths.get_output_directory()) / "checkpoints"


def lora_destination(stem: str) -> Destination:
    """In the first loras folder."""
    return destination(folder_paths.get_folder_paths("loras")[0], stem)


def checkpoint_destination(stem: str) -> Destination:
    return destination(_own_checkpoints(), stem)


def work_folder(kind: str, stem: str) -> Path:
    return run_folder(folder_paths.get_output_directory(), kind, stem)


def refresh_lists(_path=None) -> None:
    """A new model file: make LoraLoader / CheckpointLoader list it at once (on_save hook)."""
    folder_paths.filename_list_cache.clear()


def lora_choices() -> list[str]:
    return [NONE] + list(folder_paths.get_filename_list("loras"))


def checkpoint_choices() -> list[str]:
    return [NONE] + list(folder_paths.get_filename_list("checkpoints")) + own_outputs(_own_checkpoints())


def lora_path(name: str) -> str:
    if name not in lora_choices():
        raise ValueError(f"continue_from: no LoRA named {name!r} in the loras folder")
    return folder_paths.get_full_path_or_raise("loras", name)


def checkpoint_path(name: str) -> str:
    if name not in checkpoint_choices():
        raise ValueError(f"continue_from: no checkpoint named {name!r}")
    own = own_output_path(_own_checkpoints(), name)
    return str(own) if own is not None else folder_paths.get_full_path_or_raise("checkpoints", name)


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
