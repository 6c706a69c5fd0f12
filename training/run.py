"""The one call a host makes: `train(config, bundle=..., hooks=..., resume=...)`.

Without a bundle the model is read from `model.path` (a diffusers folder, see
adapters/diffusers_models.py); a ComfyUI node passes a bundle over its MODEL / CLIP / VAE instead.
"""

from __future__ import annotations

import os
from typing import Callable

from .config import TrainConfig
from .data.dataset import scan_dataset
from .hooks import Hooks, Progress, TrainResult
from .output_guard import check_outputs
from .protocols import ModelBundle


def check_bundle(cfg: TrainConfig, bundle: ModelBundle) -> None:
    """Refuse settings that contradict the model itself (only known once it is loaded)."""
    if cfg.model.arch != "auto" and cfg.model.arch != bundle.arch:
        raise ValueError(f"model.arch = {cfg.model.arch!r} but the model is {bundle.arch}")
    if bundle.arch == "sdxl" and cfg.model.clip_skip != 1:
        raise ValueError("model.clip_skip applies to SD1.5 only: SDXL always conditions on the penultimate layer")
    if cfg.objective.zero_terminal_snr and bundle.prediction_type != "v_prediction":
        raise ValueError(
            "objective.zero_terminal_snr needs a v-prediction model (this one predicts noise); "
            "set model.prediction = 'v_prediction' if it really is one"
        )
    if cfg.network.type == "full" and bundle.export_checkpoint is None:
        raise ValueError("network.type = 'full' needs a model host that can export a checkpoint")


def phase_reporter(hooks: Hooks | None, accelerator=None) -> Callable[[str], Callable[..., None] | None]:
    """phase -> a `(done, total, item="")` callback feeding `hooks.progress` (None when nobody listens).

    These phases run before the Trainer (and its Accelerator) exist, so the main process is told by
    the launcher's RANK (accelerate and torchrun set it) unless an accelerator is given."""
    if hooks is None or hooks.progress is None:
        return lambda phase: None
    main = accelerator.is_main_process if accelerator is not None else os.environ.get("RANK", "0") == "0"
    if not main:
        return lambda phase: None

    def for_phase(phase: str):
        return lambda done, total, item="": hooks.progress(Progress(phase, done, total, item=item))

    return for_phase


def train(
    cfg: TrainConfig,
    *,
    bundle: ModelBundle | None = None,
    hooks: Hooks | None = None,
    resume: str | None = None,
    accelerator=None,
) -> TrainResult:
    """Train per `cfg`; returns where the files went. Raises ValueError for bad settings before any work,
    TrainingDiverged when the loss stops being finite."""
    check_outputs(cfg)
    report = phase_reporter(hooks, accelerator)
    index = scan_dataset(cfg.dataset, progress=report("scan_dataset"))
    if bundle is None:
        from .adapters.diffusers_models import load_bundle

        bundle = load_bundle(cfg.model, progress=report("load_model"))
    check_bundle(cfg, bundle)
    from .loop import Trainer

    return Trainer(cfg, bundle, index, hooks, accelerator).run(resume)
