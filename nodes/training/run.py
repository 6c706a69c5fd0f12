"""One trainer-node run: check everything cheap first, then train, then build the outputs.

Order matters for the user: every bad input (dataset, architecture, contradicting settings,
unknown choices, not enough GPU memory) is refused before a model is loaded or a latent encoded.
The run itself is the core's `Trainer` over a bundle of ComfyUI's own objects (train_adapter).
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
from ...training.hooks import TrainResult
from ...training.lora_network import LoraTarget
from ...training.memory_estimate import MemoryPlan, check_fits, estimate
from ...training.protocols import ModelBundle
from ...training.run import check_bundle
from . import files
from .adapter import build_bundle, model_arch
from .copies import private_clip, private_model
from .dataset import DatasetSpec
from .progress import TrainingMonitor
from .samples import SampleSettings, render_samples
from .session import training_session
from .settings import (
    MAX_TOKEN_LENGTH,
    MIXED_DTYPES,
    build_config,
    check_choices,
    check_contradictions,
    choose_mixed,
    explain,
    sample_prompts,
)

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


def lora_parameter_count(targets: list[LoraTarget], rank: int, conv_rank: int) -> int:
    """Parameters of a kohya LoRA over `targets` (down + up per layer)."""
    total = 0
    for target in targets:
        module = target.module
        if isinstance(module, nn.Linear):
            total += rank * (module.in_features + module.out_features)
        elif target.is_conv3x3:
            if conv_rank:
                k = module.kernel_size[0] * module.kernel_size[1]
                total += conv_rank * (module.in_channels * k + module.out_channels)
        else:
            total += rank * (module.in_channels + module.out_channels)
    return total


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def memory_plan(values: dict, bundle: ModelBundle, spec: DatasetSpec, lora: bool, mixed: str) -> tuple[MemoryPlan, int]:
    """The run's memory plan and the parameter count a LoRA would have (the full fine-tune's cheaper option)."""
    enc = bundle.text_encoders
    params = {"unet": _count(bundle.denoiser.module), **{p: _count(enc.module(p)) for p in enc.parts}}
    if bundle.vae is not None:
        params["vae"] = _count(bundle.vae.module)
    te = values["train_text_encoder"]
    parts = ("unet",) + (enc.parts if te else ())
    rank, conv_rank = values.get("rank", 16), values.get("conv_rank", 0)
    targets = bundle.denoiser.lora_targets(include_conv=conv_rank > 0)
    lora_params = lora_parameter_count(targets, rank, conv_rank)
    if te:
        lora_params += sum(lora_parameter_count(enc.lora_targets(p), rank, 0) for p in enc.parts)
    trained = lora_params if lora else sum(params[p] for p in parts)
    side = spec.config.buckets.resolution
    plan = MemoryPlan(
        arch=bundle.arch, params=params, trained_params=trained, full=not lora, train_text_encoder=te,
        optimizer=values["optimizer"], mixed=mixed, batch_size=values["batch_size"], width=side, height=side,
        gradient_checkpointing=values["gradient_checkpointing"], text_cached=values["cache_text_encoder_outputs"],
        trained_parts=parts,
    )  # fmt: skip
    return plan, lora_params


def check_memory(plan: MemoryPlan, lora_params: int) -> None:
    mm = comfy.model_management
    device = mm.get_torch_device()
    if device.type != "cuda":
        log.info("AnimeKit trainer: estimated accelerator memory %s (not checked on %s)", estimate(plan).describe(), device)
        return
    mm.unload_all_models()
    mm.soft_empty_cache()
    check_fits(plan, mm.get_free_memory(device), mm.get_torch_device_name(device), lora_params if plan.full else None)


def _resume_from(run: Path, resume: bool) -> str | None:
    if resume:
        state = files.newest_state(run)
        if state is None:
            log.info("AnimeKit trainer: resume is on but %s has no saved state; starting fresh", run)
            return None
        return str(state)
    removed = files.clear_states(run)
    if removed:
        log.info("AnimeKit trainer: fresh run, removed %d old resume state(s) in %s", removed, run)
    return None


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


def _configure(values: dict, lora: bool, spec: DatasetSpec, bundle: ModelBundle, destination, run: Path, init_weights: str):
    """The run's TrainConfig and autocast choice; the trainer's own checks, worded for this node."""
    device = comfy.model_management.get_torch_device()
    mixed = choose_mixed(values["mixed_precision"], device, bundle.denoiser.compute_dtype())
    try:
        cfg = build_config(
            values, lora=lora, spec=spec, bundle=bundle, files=destination, run=run, mixed=mixed, init_weights=init_weights
        )
        check_bundle(cfg, bundle)
    except ValueError as exc:
        raise explain(exc) from None
    return cfg, mixed


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


def _sampler(values: dict, cfg, mixed: str):
    if not cfg.sample.every_n_steps:
        return None
    settings = SampleSettings(
        prompts=sample_prompts(values), negative=values["sample_negative"], width=cfg.sample.width,
        height=cfg.sample.height, steps=values["sample_steps"], cfg=values["sample_cfg"], seed=values["training_seed"],
    )  # fmt: skip
    return lambda bundle: render_samples(bundle, settings, MIXED_DTYPES[mixed])


def run_training(values: dict, *, lora: bool, node_id: str | None, prompt: dict | None, title: str) -> TrainOutcome:
    from ...training.loop import Trainer

    # everything cheap first: a bad input is refused before a model is copied, loaded or trained
    check_choices(values, lora)
    spec = _dataset(values)
    check_contradictions(values, spec)
    stem = files.file_stem(values["filename"])
    destination = files.lora_destination(stem) if lora else files.checkpoint_destination(stem)
    run = files.run_folder("lora" if lora else "checkpoint", stem)
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
    cfg, mixed = _configure(values, lora, spec, bundle, destination, run, init_weights)
    plan, lora_params = memory_plan(values, bundle, spec, lora, mixed)
    check_memory(plan, lora_params)

    private: list[nn.Module] = []
    if not lora:
        if checkpoint_file:
            model, clip = _load_continue_from(checkpoint_file, model, choice)
        model, clip, private = _private_models(model, clip, values["train_text_encoder"])
        name, model_hash = bundle.name, bundle.model_hash
        bundle = build_bundle(model, clip, vae, max_token_length=MAX_TOKEN_LENGTH, name=name)
        bundle.model_hash = model_hash
        bundle.export_checkpoint = _checkpoint_exporter(model, clip, vae)
        cfg, mixed = _configure(values, lora, spec, bundle, destination, run, init_weights)
    resume = _resume_from(run, values["resume"])

    monitor = TrainingMonitor(node_id, title)
    hooks = monitor.hooks(_sampler(values, cfg, mixed))
    hooks.on_save = files.refresh_lists
    with training_session(bundle, MIXED_DTYPES[mixed], private).active():
        try:
            result = Trainer(cfg, bundle, spec.index, hooks, _accelerator(comfy.model_management.get_torch_device())).run(resume)
        except ValueError as exc:
            raise explain(exc) from None
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
