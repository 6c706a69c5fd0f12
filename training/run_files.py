"""Where a host's training run puts its files, and which resume state it starts from.

A run named by the user (`chars/alice`, with or without `.safetensors`) writes its model files
into a models folder (`<root>/chars/alice.safetensors`, listed by the loaders as
`chars/alice.safetensors`) and its resume states, log and latent cache into a work folder
`<output>/animekit_training/<lora|checkpoint>/chars/alice/`, which keeps the states (themselves
.safetensors files) out of the loaders' lists. Nothing here may leave its root folder.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..files.paths import resolve_inside
from .checkpointing import STATE_NAME, list_states

log = logging.getLogger(__name__)

RUNS_FOLDER = "animekit_training"
SUFFIX = ".safetensors"
OWN_OUTPUT_PREFIX = "output/"  # how a host lists model files it wrote into its output folder


def file_stem(filename: str) -> str:
    """The user's file name without .safetensors; ValueError for names that cannot be a file."""
    stem = (filename or "").strip().replace("\\", "/")
    if stem.lower().endswith(SUFFIX):
        stem = stem[: -len(SUFFIX)]
    parts = stem.split("/")
    if not stem or stem.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"filename: {filename!r} is not a plain file name (subfolders like `chars/alice` are fine)")
    return stem


@dataclass(frozen=True)
class Destination:
    """Where a run's model files go and the name a loader lists the final one under."""

    folder: Path  # save.output_dir
    name: str  # save.name: the file stem, without subfolders
    listed: str  # e.g. "chars/alice.safetensors"


def destination(root: str | Path, stem: str) -> Destination:
    """The final model file `<root>/<stem>.safetensors`, refused if it would leave `root`."""
    root = Path(root)
    path = resolve_inside(root, stem + SUFFIX, what="filename")
    return Destination(path.parent, path.name[: -len(SUFFIX)], Path(os.path.relpath(path, root.resolve())).as_posix())


def run_folder(output_root: str | Path, kind: str, stem: str) -> Path:
    """The work folder of run `stem` of `kind` ("lora" or "checkpoint") under the host's output folder."""
    return resolve_inside(Path(output_root) / RUNS_FOLDER / kind, stem, what="filename")


def own_outputs(root: str | Path) -> list[str]:
    """Model files under `root` (the host's own output folder), as `output/<relative path>`, sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(OWN_OUTPUT_PREFIX + p.relative_to(root).as_posix() for p in root.rglob(f"*{SUFFIX}") if p.is_file())


def own_output_path(root: str | Path, listed: str) -> Path | None:
    """The file an `output/...` name from `own_outputs` stands for; None for any other name."""
    if not listed.startswith(OWN_OUTPUT_PREFIX):
        return None
    return resolve_inside(Path(root), listed[len(OWN_OUTPUT_PREFIX) :], what="continue_from")


def is_state_folder(name: str) -> bool:
    """A complete state (`state-<step>`) or one left half-written or half-replaced (`.state-<step>.partial/.old`)."""
    if STATE_NAME.match(name):
        return True
    stem, dot, ending = name[1:].rpartition(".")
    return name.startswith(".") and dot == "." and ending in ("partial", "old") and bool(STATE_NAME.match(stem))


def clear_states(run: Path) -> int:
    """A fresh run under a reused name: drop the old run's resume states so `resume` cannot mix runs."""
    if not run.is_dir():
        return 0
    removed = 0
    for child in run.iterdir():
        if child.is_dir() and is_state_folder(child.name):
            shutil.rmtree(child, ignore_errors=True)
            removed += 1
    return removed


def start_state(run: Path, resume: bool) -> Path | None:
    """The state to resume from: the newest complete one when `resume` is on (None if there is none);
    off, a fresh run, and the folder's old states are removed."""
    if resume:
        states = list_states(run)
        if not states:
            log.info("AnimeKit trainer: resume is on but %s has no saved state; starting fresh", run)
            return None
        return states[-1]
    removed = clear_states(run)
    if removed:
        log.info("AnimeKit trainer: fresh run, removed %d old resume state(s) in %s", removed, run)
    return None
