"""How a host (CLI, ComfyUI node, test) watches and steers a run without touching the loop."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .protocols import ModelBundle


# Every slow phase of a run, in the order they happen, with what a user is told (one source for
# the CLI's bars and the nodes' progress text) and what its counts count.
PHASES = {
    "scan_dataset": "scanning the dataset",
    "load_model": "loading the model",
    "cache_latents": "caching latents",
    "cache_text": "caching text-encoder outputs",
    "train": "training",
}
PHASE_UNITS = {"scan_dataset": "image", "load_model": "part", "cache_latents": "latent", "cache_text": "caption", "train": "step"}


@dataclass
class Progress:
    phase: str  # a key of PHASES
    done: int  # steps (train), model parts (load_model) or items (scan, caches) done
    total: int
    epoch: int = 0
    loss: float | None = None  # last step's loss (train)
    item: str = ""  # what is being worked on now, e.g. the model part being loaded ("unet")

    @property
    def label(self) -> str:
        """E.g. "loading the model (unet)"."""
        text = PHASES.get(self.phase, self.phase)
        return f"{text} ({self.item})" if self.item else text



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
