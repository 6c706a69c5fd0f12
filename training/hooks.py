"""How a host (CLI, ComfyUI node, test) watches and steers a run without touching the loop."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .protocols import ModelBundle


@dataclass
class Progress:
    phase: str  # "cache_latents" | "cache_text" | "train"
    done: int  # steps (train) or items (caches) done
    total: int
    epoch: int = 0
    loss: float | None = None  # last step's loss (train)


@dataclass
class Hooks:
    """Optional callbacks; every one runs on the main process only (should_stop is asked on all)."""

    on_step: Callable[[int, float, dict[str, float]], None] | None = None  # (step, loss, lr per part)
    on_sample: Callable[[int, ModelBundle], None] | None = None  # render sample images (sample.every_n_steps)
    on_save: Callable[[Path], None] | None = None  # a model file was written
    should_stop: Callable[[], bool] | None = None  # True: save a resume state and stop (cancel)
    progress: Callable[[Progress], None] | None = None  # drive a progress bar


@dataclass
class TrainResult:
    output: Path | None  # the final model file (None when stopped early)
    steps: int  # optimizer steps done in total
    epoch: int
    stopped: bool  # should_stop ended the run
    state: Path | None  # newest resume state written
    last_loss: float | None
    saved: list[Path]  # every model file written, in order
    network: Any = None  # the trained LoraNetwork, still hooked onto the bundle (network.detach() removes it)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; nothing was saved after the last good state."""
