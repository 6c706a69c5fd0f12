"""Resume states: everything needed to continue a run bit for bit.

A state is a folder `state-<step>/` in the output folder:
- `trainable.safetensors`   the trained weights (LoRA network or the fine-tuned modules, float32)
- `optimizer.pt`            optimizer state (tensors, numbers: loaded with weights_only=True)
- `training.pt`             LR schedule, fp16 loss scaler, EMA
- `rank<r>.pt`, `rank<r>.json`  each process's RNG states and data position
- `state.json`              step, epoch, world size and the run's settings (written last)

It is written into a hidden `.state-<step>.partial` folder and renamed into place only when
complete, so a crash mid-save never leaves a state that looks usable. Only state.json marks a
folder as a state, and `--resume` picks the newest complete one.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..files.atomic import atomic_output, save_safetensors_atomic
from .config import RESUMABLE_CHANGES, TrainConfig

FORMAT = "animekit-train-state-v1"
STATE_NAME = re.compile(r"^state-(\d+)$")


def state_folder_name(step: int) -> str:
    return f"state-{step:08d}"


# ------------------------------------------------------------------------------------------ RNG


def capture_rng(generator: torch.Generator) -> dict:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generator": generator.get_state(),
    }


def restore_rng(state: dict, generator: torch.Generator) -> None:
    random.setstate(_as_tuple(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator.set_state(state["generator"])


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


# ---------------------------------------------------------------------------------------- write


@dataclass
class SharedState:
    """What the main process writes once for all ranks."""

    step: int
    epoch: int
    world_size: int
    config: dict
    trainable: dict[str, torch.Tensor]
    optimizer: dict
    training: dict  # {"scheduler": ..., "scaler": ... | None, "ema": ... | None}


def _torch_save(obj, path: Path) -> None:
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def _json_save(obj, path: Path) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1), encoding="utf-8")


def partial_folder(folder: Path, step: int) -> Path:
    return folder / f".{state_folder_name(step)}.partial"


def begin_state(folder: Path, step: int) -> Path:
    """Main process: a fresh partial folder for the state at `step`."""
    tmp = partial_folder(folder, step)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def write_rank_state(tmp: Path, rank: int, rng: dict, data_state: dict) -> None:
    _torch_save(rng, tmp / f"rank{rank}.pt")
    _json_save(data_state, tmp / f"rank{rank}.json")


def finish_state(folder: Path, tmp: Path, shared: SharedState) -> Path:
    """Main process: write the shared files, then rename the folder into place."""
    save_safetensors_atomic({k: v.detach().to("cpu") for k, v in shared.trainable.items()}, tmp / "trainable.safetensors")
    _torch_save(shared.optimizer, tmp / "optimizer.pt")
    _torch_save(shared.training, tmp / "training.pt")
    _json_save(
        {"format": FORMAT, "step": shared.step, "epoch": shared.epoch, "world_size": shared.world_size, "config": shared.config},
        tmp / "state.json",
    )
    final = folder / state_folder_name(shared.step)
    if final.exists():  # a resumed run saving the same step again
        trash = folder / f".{final.name}.old"
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    return final


def list_states(folder: Path) -> list[Path]:
    """Complete state folders, oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = STATE_NAME.match(child.name)
        if match and child.is_dir() and (child / "state.json").is_file():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def prune_states(folder: Path, keep_last: int) -> None:
    if keep_last <= 0:
        return
    for old in list_states(folder)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------- read


@dataclass
class LoadedState:
    folder: Path
    step: int
    epoch: int
    world_size: int
    config: dict
    trainable: dict[str, torch.Tensor]
    optimizer: dict
    training: dict
    rng: dict
    data: dict


class DamagedState(ValueError):
    """A state folder whose files cannot be read back (truncated, edited, half-copied)."""


def load_state(path: str | Path, rank: int) -> LoadedState:
    """The state at `path`: a state folder itself, or the newest intact state in an output folder.

    From an output folder a damaged newest state is passed over for the newest intact one, with a
    warning naming both; a state folder given directly must itself be intact."""
    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"resume path {str(folder)!r} does not exist")
    if (folder / "state.json").exists() or STATE_NAME.match(folder.name):
        return _read_state(folder, rank)
    states = list_states(folder)
    if not states:
        raise FileNotFoundError(f"no complete training state (state-*/state.json) in {str(folder)!r}")
    problems = []
    for candidate in reversed(states):
        try:
            state = _read_state(candidate, rank)
        except DamagedState as exc:
            problems.append(str(exc))
            continue
        if problems:
            message = f"{problems[0]}; resuming from the newest intact state instead: {candidate.name}"
            logging.getLogger(__name__).warning(message)
            warnings.warn(message, stacklevel=2)
        return state
    raise DamagedState(f"no intact training state in {str(folder)!r}: " + "; ".join(problems))


def _read_state(folder: Path, rank: int) -> LoadedState:
    from safetensors.torch import load_file

    def read(name: str, loader):
        file = folder / name
        try:
            return loader(file)
        except FileNotFoundError:
            raise DamagedState(f"training state {str(folder)!r} is damaged: {name} is missing") from None
        except Exception as exc:  # noqa: BLE001 - any decoder failure means "damaged", named by file
            raise DamagedState(f"training state {str(folder)!r} is damaged: {name} cannot be read "
                               f"({type(exc).__name__}: {str(exc)[:120]})") from None

    def torch_file(file: Path):
        return torch.load(file, map_location="cpu", weights_only=True)

    def json_file(file: Path):
        return json.loads(file.read_text(encoding="utf-8"))

    meta = read("state.json", json_file)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{folder}: not an animekit training state (format {found!r})")
    if not (folder / f"rank{rank}.pt").is_file() and isinstance(meta.get("world_size"), int):
        raise ValueError(
            f"{folder} was saved by {meta['world_size']} process(es) and has no state for rank {rank}; "
            "resume with the same number of processes"
        )
    try:
        step, epoch, world_size, config = int(meta["step"]), int(meta["epoch"]), int(meta["world_size"]), meta["config"]
    except (KeyError, TypeError, ValueError) as exc:
        raise DamagedState(f"training state {str(folder)!r} is damaged: state.json lacks {exc}") from None
    return LoadedState(
        folder=folder,
        step=step,
        epoch=epoch,
        world_size=world_size,
        config=config,
        trainable=read("trainable.safetensors", lambda f: load_file(str(f))),
        optimizer=read("optimizer.pt", torch_file),
        training=read("training.pt", torch_file),
        rng=read(f"rank{rank}.pt", torch_file),
        data=read(f"rank{rank}.json", json_file),
    )


def check_resumable(saved_config: dict, cfg: TrainConfig) -> None:
    """Refuse a resume whose settings differ beyond RESUMABLE_CHANGES (exact resume would be a lie)."""
    keys = [k for k in cfg.changed_keys(saved_config) if not k.startswith(RESUMABLE_CHANGES)]
    if keys:
        raise ValueError(
            "cannot resume exactly: these settings differ from the saved run: "
            + ", ".join(keys[:8])
            + (" ..." if len(keys) > 8 else "")
            + " (only schedule.max_steps / schedule.epochs, save.*, sample.*, logging.* and cache.vae_batch_size may change)"
        )
