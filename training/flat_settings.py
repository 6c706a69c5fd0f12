"""The trainer's settings as one flat set of named inputs (the ComfyUI trainer nodes'), to a TrainConfig.

A node shows each setting as one input (`rank`, `unet_lr`, `cache_latents` ...); the config groups
them by concern and names them by TOML key (`network.rank`). `config_from_inputs` maps the first
onto the second. Every rule stays the config's own (config.py, run.check_bundle): nothing is
checked twice, and `reword` gives the config's errors back in the inputs' names, so a broken rule
reads the same in a node as in a TOML file, only with the name the user sees.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path

from .config import (
    CacheConfig,
    LogConfig,
    ModelConfig,
    NetworkConfig,
    ObjectiveConfig,
    OptimizerConfig,
    PrecisionConfig,
    SampleConfig,
    SaveConfig,
    ScheduleConfig,
    TrainConfig,
)
from .data.dataset import DatasetConfig
from .options import MAX_TOKEN_LENGTH, resolve_noise_offset
from .protocols import ModelBundle
from .run import check_bundle
from .run_files import Destination

# config keys -> the trainer nodes' input names (random_crop is the Dataset node's)
INPUT_NAMES = {
    "network.train_text_encoder": "train_text_encoder",
    "cache.text_encoder_outputs": "cache_text_encoder_outputs",
    "schedule.accumulation_steps": "gradient_accumulation",
    "sample.every_n_steps": "sample_every_n_steps",
    "save.every_n_steps": "save_every_n_steps",
    "schedule.warmup_steps": "warmup_steps",
    "objective.min_snr_gamma": "min_snr_gamma",
    "objective.noise_offset": "noise_offset",
    "network.init_weights": "continue_from",
    "network.conv_alpha": "conv_alpha",
    "network.conv_rank": "conv_rank",
    "schedule.max_steps": "steps",
    "precision.mixed": "mixed_precision",
    "precision.gradient_checkpointing": "gradient_checkpointing",
    "sample.negative_prompt": "sample_negative",
    "sample.cfg_scale": "sample_cfg",
    "sample.prompts": "sample_prompts",
    "sample.steps": "sample_steps",
    "optimizer.lr_te1": "text_encoder_lr",
    "optimizer.type": "optimizer",
    "optimizer.lr": "unet_lr",
    "schedule.name": "lr_scheduler",
    "network.alpha": "alpha",
    "network.rank": "rank",
    "cache.latents": "cache_latents",
    "dataset.batch_size": "batch_size",
    "dataset.random_crop": "random_crop",
    "save.name": "filename",
    "seed": "training_seed",
}
_KEYS = re.compile(r"(?<![\w.])(" + "|".join(re.escape(k) for k in sorted(INPUT_NAMES, key=len, reverse=True)) + r")(?!\w)")


def reword(exc: Exception) -> ValueError:
    """The same error, worded with the nodes' input names instead of TOML keys."""
    return ValueError(_KEYS.sub(lambda m: INPUT_NAMES[m.group(1)], str(exc)))


def sample_prompts(text: str) -> tuple[str, ...]:
    """One prompt per non-empty line."""
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def config_from_inputs(
    values: Mapping,
    *,
    lora: bool,
    dataset: DatasetConfig,
    bundle: ModelBundle,
    clip_skip: int,
    destination: Destination,
    work_dir: Path,
    mixed: str,
    init_weights: str = "",
) -> TrainConfig:
    """The run's TrainConfig from a trainer node's input values (LoRA node: with rank / alpha / conv_*).

    `mixed` is the resolved autocast choice (options.resolve_mixed_precision), `clip_skip` the CLIP's
    (options.clip_skip_from_layer). ValueError in the inputs' words for any setting the trainer
    refuses, including those that contradict the model (run.check_bundle).
    """
    try:
        cfg = _build(values, lora, dataset, bundle, clip_skip, destination, work_dir, mixed, init_weights)
        check_bundle(cfg, bundle)
    except ValueError as exc:
        raise reword(exc) from None
    return cfg


def _build(values, lora, dataset, bundle, clip_skip, destination, work_dir, mixed, init_weights) -> TrainConfig:
    zero_terminal_snr = bool(bundle.extras.get("zero_terminal_snr"))
    side = dataset.buckets.resolution
    return TrainConfig(
        model=ModelConfig(
            arch=bundle.arch,
            prediction=bundle.prediction_type,
            clip_skip=clip_skip,
            max_token_length=MAX_TOKEN_LENGTH,
            name=bundle.name,
        ),
        dataset=dataclasses.replace(dataset, batch_size=values["batch_size"], seed=values["training_seed"]),
        save=SaveConfig(
            output_dir=str(destination.folder), name=destination.name, work_dir=str(work_dir),
            every_n_steps=values["save_every_n_steps"],
        ),  # fmt: skip
        network=NetworkConfig(
            type="lora" if lora else "full",
            rank=values.get("rank", NetworkConfig.rank),
            alpha=values.get("alpha", NetworkConfig.alpha),
            conv_rank=values.get("conv_rank", NetworkConfig.conv_rank),
            conv_alpha=values.get("conv_alpha", NetworkConfig.conv_alpha),
            train_text_encoder=values["train_text_encoder"],
            init_weights=init_weights,
        ),
        objective=ObjectiveConfig(
            noise_offset=resolve_noise_offset(values["noise_offset"], bundle.arch, zero_terminal_snr),
            min_snr_gamma=values["min_snr_gamma"],
            zero_terminal_snr=zero_terminal_snr,
        ),
        optimizer=OptimizerConfig(type=values["optimizer"], lr=values["unet_lr"], lr_te1=values["text_encoder_lr"]),
        schedule=ScheduleConfig(
            name=values["lr_scheduler"],
            warmup_steps=values["warmup_steps"],
            max_steps=values["steps"],
            accumulation_steps=values["gradient_accumulation"],
        ),
        precision=PrecisionConfig(mixed=mixed, gradient_checkpointing=values["gradient_checkpointing"]),
        cache=CacheConfig(latents=values["cache_latents"], text_encoder_outputs=values["cache_text_encoder_outputs"]),
        sample=SampleConfig(
            every_n_steps=values["sample_every_n_steps"],
            prompts=sample_prompts(values["sample_prompts"]),
            negative_prompt=values["sample_negative"],
            width=side,
            height=side,
            steps=values["sample_steps"],
            cfg_scale=values["sample_cfg"],
            seed=values["training_seed"],
        ),
        logging=LogConfig(tensorboard=False),
        seed=values["training_seed"],
    )
