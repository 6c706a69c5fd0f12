"""ComfyUI model folders for the dataset tools: `models/animekit_taggers/<name>/` (model.onnx +
selected_tags.csv) and `models/animekit_aesthetic/<name>/` (a transformers folder), registered
with folder_paths (so extra_model_paths.yaml can add more), or any folder given by path."""

from __future__ import annotations

import os
from pathlib import Path

import folder_paths

TAGGERS = "animekit_taggers"
AESTHETIC = "animekit_aesthetic"
BY_PATH = "(use the path below)"
MARKERS = {TAGGERS: "model.onnx", AESTHETIC: "config.json"}


def register() -> None:
    for kind in MARKERS:
        folder_paths.add_model_folder_path(kind, os.path.join(folder_paths.models_dir, kind))


def choices(kind: str) -> list[str]:
    """Model folders found (sub-folders holding the kind's marker file), then the by-path choice."""
    register()
    names = set()
    for base in folder_paths.get_folder_paths(kind):
        if os.path.isdir(base):
            names.update(entry.name for entry in os.scandir(base) if entry.is_dir() and os.path.isfile(os.path.join(entry.path, MARKERS[kind])))
    return sorted(names) + [BY_PATH]


def resolve(kind: str, choice: str, path: str) -> Path:
    """The chosen folder, or the given path when BY_PATH is chosen (or a path is given)."""
    if path.strip():
        folder = Path(path.strip()).expanduser()
        if not folder.is_dir():
            raise ValueError(f"model path: {str(folder)!r} is not a folder")
        return folder
    if choice == BY_PATH:
        raise ValueError(f"model: choose a folder from models/{kind} or give a model path")
    for base in folder_paths.get_folder_paths(kind):
        folder = Path(base) / choice
        if folder.is_dir() and Path(base).resolve() in folder.resolve().parents:
            return folder
    raise ValueError(f"model: {choice!r} is not a folder in models/{kind}")
