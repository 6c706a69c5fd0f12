"""One trainer-node run: check everything cheap first, then train, then build the outputs.

Order matters for the user: every bad input (dataset, architecture, contradicting settings,
unknown choices, not enough GPU memory) is refused before a model is loaded or a latent encoded.
The run itself is the core's `Trainer` over a bundle of ComfyUI's own objects (adapter.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import comfy.model_management
import comfy.sd
import comfy.utils
import folder_paths

from ...files.hashing import legacy_model_hash
from ...training.config import TrainConfig
from ...training.data.folder_dataset import DatasetSpec
from ...training.flat_settings import config_from_inputs, reword
from ...training.hooks import TrainResult
from ...training.memory_planning import RunMemory, is_checked, plan_run_memory
from ...training.model_setup import AUTOCAST_DTYPES
from ...training.options import MAX_TOKEN_LENGTH, clip_skip_from_layer, resolve_mixed_precision
from ...training.protocols import ModelBundle
from ...training.run_files import Destination, file_stem, start_state
from . import files
from .adapter import build_bundle, model_arch
from .copies import private_clip, private_model
from .progress import TrainingMonitor
from .samples import render_samples
from .session import training_session

log = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    model: object
    clip: object
    name: str  # as the loader nodes list it
    path: Path
    loss_graph: torch.Tensor
    samples: torch.Tensor | None
    result: TrainResult


def _dataset(values: dict) -> DatasetSpec:
    spec = values.get("dataset")
    if not isinstance(spec, DatasetSpec):
        raise ValueError("dataset: connect an AnimeKit Dataset node")
    return spec


def _base_model(bundle: ModelBundle, prompt, node_id, checkpoint_file: str | None) -> None:
    path = checkpoint_file or files.base_model_file(prompt, node_id)
    if path and Path(path).is_file():
        bundle.name = Path(path).stem
        bundle.model_hash = legacy_model_hash(path)


def check_memory(memory: RunMemory) -> None:
    """Refuse a run whose plan does not fit the GPU's free memory (after unloading other models)."""
    mm = comfy.model_management
    device = mm.get_torch_device()
    if not is_checked(device.type):
        log.info("AnimeKit trainer: estimated accelerator memory %s (not checked on %s)", memory.estimate().describe(), device)
        return
    mm.unload_all_models()
    mm.soft_empty_cache()
    found = memory.check(mm.get_free_memory(device), mm.get_torch_device_name(device))
    log.info("AnimeKit trainer: %s", "; ".join(line.strip() for line in found.lines()))


def _accelerator(device: torch.device):
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=device.type == "cpu")
    if accelerator.device.type != device.type or (device.index is not None and accelerator.device.index not in (None, device.index)):
        raise ValueError(f"the trainer would run on {accelerator.device} but ComfyUI uses {device}; start ComfyUI with --cuda-device")
    return accelerator


def _checkpoint_exporter(model, clip, vae):
    def export() -> dict[str, torch.Tensor]:
        return model.model.state_dict_for_saving(clip.get_sd(), None if vae is None else vae.get_sd())

    return export


def _configure(values: dict, lora: bool, spec: DatasetSpec, bundle: ModelBundle, destination: Destination, run: Path,
               init_weights: str) -> TrainConfig:  # fmt: skip
    """The run's TrainConfig; the trainer's own checks, worded with this node's input names."""
    device = comfy.model_management.get_torch_device()
    mixed = resolve_mixed_precision(
        values["mixed_precision"], device.type, bundle.denoiser.compute_dtype(),
        lambda: comfy.model_management.should_use_bf16(device),
    )  # fmt: skip
    return config_from_inputs(
        values, lora=lora, dataset=spec.config, bundle=bundle, clip_skip=clip_skip_from_layer(bundle.arch, bundle.extras["clip"].layer_idx),
        destination=destination, work_dir=run, mixed=mixed, init_weights=init_weights,
    )  # fmt: skip


def _load_continue_from(path: str, model, name: str):
    """MODEL and CLIP of the checkpoint a fine-tune continues from (same architecture as `model`)."""
    loaded = comfy.sd.load_checkpoint_guess_config(
        path, output_vae=False, output_clip=True, embedding_directory=folder_paths.get_folder_paths("embeddings")
    )
    if model_arch(loaded[0]) != model_arch(model):
        raise ValueError(f"continue_from: {name!r} is an {model_arch(loaded[0])} checkpoint but model is {model_arch(model)}")
    return loaded[0], loaded[1]


def _private_models(model, clip, train_text_encoder: bool):
    """A fine-tune trains copies, so the inputs stay as they are for the rest of the graph."""
    model = private_model(model)
    private: list[nn.Module] = [model.model.diffusion_model]
    if train_text_encoder:
        clip = private_clip(clip)
        private += [getattr(clip.cond_stage_model, name).transformer for name in ("clip_l", "clip_g") if hasattr(clip.cond_stage_model, name)]
    return model, clip, private


def _sampler(cfg: TrainConfig):
    if not cfg.sample.every_n_steps:
        return None
    return lambda bundle: render_samples(bundle, cfg.sample, AUTOCAST_DTYPES[cfg.precision.mixed])


def run_training(values: dict, *, lora: bool, node_id: str | None, prompt: dict | None, title: str) -> TrainOutcome:
    from ...training.loop import Trainer

    # everything cheap first: a bad input is refused before a model is copied, loaded or trained
    spec = _dataset(values)
    stem = file_stem(values["filename"])
    destination = files.lora_destination(stem) if lora else files.checkpoint_destination(stem)
    run = files.work_folder("lora" if lora else "checkpoint", stem)
    model, clip, vae = values["model"], values["clip"], values["vae"]
    if model is None:
        raise ValueError("model: no MODEL connected")
    if vae is None:
        raise ValueError("vae: no VAE connected (the checkpoint has none; load one with a VAE loader)")
    bundle = build_bundle(model, clip, vae, max_token_length=MAX_TOKEN_LENGTH)  # refuses unsupported architectures
    if not lora:
        bundle.export_checkpoint = _checkpoint_exporter(model, clip, vae)
    choice = values["continue_from"]
    init_weights = files.lora_path(choice) if lora and choice != files.NONE else ""
    checkpoint_file = files.checkpoint_path(choice) if not lora and choice != files.NONE else None
    _base_model(bundle, prompt, node_id, checkpoint_file)
    cfg = _configure(values, lora, spec, bundle, destination, run, init_weights)
    check_memory(plan_run_memory(cfg, bundle))

    private: list[nn.Module] = []
    if not lora:
        if checkpoint_file:
            model, clip = _load_continue_from(checkpoint_file, model, choice)
        model, clip, private = _private_models(model, clip, values["train_text_encoder"])
        name, model_hash = bundle.name, bundle.model_hash
        bundle = build_bundle(model, clip, vae, max_token_length=MAX_TOKEN_LENGTH, name=name)
        bundle.model_hash = model_hash
        bundle.export_checkpoint = _checkpoint_exporter(model, clip, vae)
        cfg = _configure(values, lora, spec, bundle, destination, run, init_weights)
    state = start_state(run, values["resume"])

    monitor = TrainingMonitor(node_id, title)
    hooks = monitor.hooks(_sampler(cfg))
    hooks.on_save = files.refresh_lists
    with training_session(bundle, AUTOCAST_DTYPES[cfg.precision.mixed], private).active():
        try:
            accelerator = _accelerator(comfy.model_management.get_torch_device())
            result = Trainer(cfg, bundle, spec.index, hooks, accelerator).run(None if state is None else str(state))
        except ValueError as exc:
            raise reword(exc) from None
        if result.network is not None:
            result.network.detach()
    if result.stopped:
        log.info("AnimeKit trainer: cancelled at step %d; resume state %s", result.steps, result.state)
        monitor.raise_if_cancelled()
    if result.output is None:
        raise RuntimeError(f"training ended at step {result.steps} without writing a model file")
    path = Path(result.output)
    if lora:
        tensors = comfy.utils.load_torch_file(str(path), safe_load=True)
        model, clip = comfy.sd.load_lora_for_models(values["model"], values["clip"], tensors, 1.0, 1.0)
    return TrainOutcome(model, clip, destination.listed, path, monitor.loss_graph(), monitor.sample_images(), result)
