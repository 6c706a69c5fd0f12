"""The trainer nodes' inputs (a public API: never rename or reorder) and their TrainConfig.

Both trainer nodes share one input list; the LoRA node adds the network's rank inputs. Defaults
follow the seed cards: Animagine XL 3.0's stage-2 learning rate and noise offset 0.0357 for SDXL,
AnimeDiffusion's noise offset 0.05 for SD1.5 (noise_offset -1 picks per model), min-SNR 5.
Errors from the trainer's config speak its TOML keys; `explain` renames them to these inputs.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from comfy_api.latest import io

import comfy.model_management

from ...training.config import (
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
from ...training.protocols import ModelBundle
from .dataset import DatasetSpec
from .files import Destination

DatasetType = io.Custom("ANIMEKIT_DATASET")

OPTIMIZERS = ("adamw", "adamw8bit", "adafactor", "prodigy")
SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")
PRECISIONS = ("auto", "no", "fp16", "bf16")
LATENT_CACHES = ("memory", "disk", "none")
AUTO_NOISE_OFFSET = {"sd15": 0.05, "sdxl": 0.0357}  # AnimeDiffusion / Animagine XL 3.0 cards
MAX_TOKEN_LENGTH = 225  # three 75-token chunks: long Danbooru captions are not cut at 75
MIXED_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Defaults:
    filename: str
    unet_lr: float
    text_encoder_lr: float
    optimizer: str
    target: str  # where the file goes, for tooltips


LORA = Defaults("animekit_lora", 1e-4, 5e-5, "adamw", "models/loras")
CHECKPOINT = Defaults("animekit_checkpoint", 2e-6, 1e-6, "adafactor", "output/checkpoints")


def lr_input(name: str, default: float, tooltip: str) -> io.Float.Input:
    return io.Float.Input(name, default=default, min=0.0, max=1.0, step=1e-7, round=1e-9, tooltip=tooltip)


def head_inputs(defaults: Defaults, lora: bool) -> list:
    """Sockets, file name and the schedule (inputs 1-11 of both nodes)."""
    te_tooltip = (
        "Also train the text encoder(s) (SD1.5's CLIP-L; SDXL's CLIP-L and CLIP-G) with their own learning rate. "
        + ("Off for most character / style LoRAs." if lora else "Animagine XL 3.0 stage 1 trained them; stage 2 froze them.")
    )
    return [
        io.Model.Input("model", tooltip="The model to train (SD1.5 or SDXL family: Animagine, Pony, NoobAI, Illustrious ...). "
                       "Left unchanged: the trained one comes out of the `model` output."),
        io.Clip.Input("clip", tooltip="The model's CLIP. Its clip skip (CLIPSetLastLayer) is used while training, "
                      "so train with the same one you will prompt with."),
        io.Vae.Input("vae", tooltip="The VAE that encodes the training images into latents (and decodes sample images)."),
        DatasetType.Input("dataset", tooltip="Images and caption settings from an AnimeKit Dataset node."),
        io.String.Input("filename", default=defaults.filename,
                        tooltip=f"File name (no extension; subfolders allowed) in {defaults.target}. Resume states, log.csv "
                        "and the latent cache go to output/animekit_training/ under the same name."),
        io.Int.Input("steps", default=1000, min=1, max=1_000_000,
                     tooltip="Optimizer steps to train (each uses batch_size x gradient_accumulation images)."),
        io.Int.Input("batch_size", default=1, min=1, max=256,
                     tooltip="Images per forward pass (all from one aspect-ratio bucket). Memory grows with it."),
        io.Int.Input("gradient_accumulation", default=1, min=1, max=1024,
                     tooltip="Forward passes per optimizer step: the effective batch is batch_size x this, at batch_size's memory."),
        lr_input("unet_lr", defaults.unet_lr, "Learning rate of the UNet" + (" LoRA. kohya's usual 1e-4." if lora else
                 ". Animagine XL 3.0: 7.5e-6 (stage 1), 2e-6 (stage 2).")),
        io.Boolean.Input("train_text_encoder", default=False, tooltip=te_tooltip),
        lr_input("text_encoder_lr", defaults.text_encoder_lr, "Learning rate of the text encoder(s), used when "
                 "train_text_encoder is on" + (". Often half the UNet's." if lora else ". Animagine XL 3.0 stage 1: 3.75e-6.")),
    ]


def network_inputs() -> list:
    """The LoRA node's network shape (inputs 12-15)."""
    return [
        io.Int.Input("rank", default=16, min=1, max=1024, tooltip="LoRA rank (network dim): capacity and file size."),
        io.Float.Input("alpha", default=8.0, min=0.01, max=1024.0, step=0.01,
                       tooltip="LoRA alpha: the update is scaled by alpha / rank (kohya's network_alpha)."),
        io.Int.Input("conv_rank", default=0, min=0, max=1024,
                     tooltip="Rank for the 3x3 convolutions of the ResNet / up / down blocks (LoCon); 0 = attention layers only."),
        io.Float.Input("conv_alpha", default=1.0, min=0.01, max=1024.0, step=0.01, tooltip="Alpha of the convolution LoRA (conv_rank)."),
    ]


def tail_inputs(defaults: Defaults, lora: bool, continue_options: list[str]) -> list:
    """Objective, optimizer, precision, caching, saving, samples and resume (shared tail)."""
    continue_tooltip = (
        "Start from an existing LoRA's weights (same layers; its rank / alpha are kept) instead of a fresh one. "
        "none: a new LoRA." if lora else
        "none: fine-tune the model / clip inputs as they are (e.g. stage 1's outputs). Or a checkpoint whose UNet "
        "and text encoders replace them (`output/...` = this node's earlier results)."
    )
    return [
        io.Float.Input("noise_offset", default=-1.0, min=-1.0, max=1.0, step=0.0001,
                       tooltip="Noise offset (darker darks, brighter brights). -1 = auto: 0.05 for SD1.5 (AnimeDiffusion), "
                       "0.0357 for SDXL (Animagine XL 3.0), 0 for zero-terminal-SNR v-prediction models."),
        io.Float.Input("min_snr_gamma", default=5.0, min=0.0, max=100.0, step=0.1,
                       tooltip="Min-SNR-gamma loss weighting (5 is the paper's); 0 = off. The loss is always taken in the "
                       "model's own space (noise or velocity), not ComfyUI TrainLoraNode's x0 space."),
        io.Combo.Input("optimizer", options=list(OPTIMIZERS), default=defaults.optimizer,
                       tooltip="adamw (torch); adamw8bit (bitsandbytes, CUDA; less memory); adafactor (least memory, "
                       "kohya's choice for SDXL fine-tunes); prodigy (prodigyopt; set the learning rates to 1)."),
        io.Combo.Input("lr_scheduler", options=list(SCHEDULERS), default="constant_with_warmup",
                       tooltip="Learning-rate curve over the steps (diffusers' schedules)."),
        io.Int.Input("warmup_steps", default=0, min=0, max=1_000_000, tooltip="Steps to ramp the learning rate up from 0."),
        io.Combo.Input("mixed_precision", options=list(PRECISIONS), default="auto",
                       tooltip="Autocast dtype. auto: the dtype ComfyUI loaded the model in on a GPU (fp16 / bf16), "
                       "float32 (no) on the CPU. fp16 scales the loss; bf16 needs an Ampere or newer GPU."),
        io.Boolean.Input("gradient_checkpointing", default=True,
                         tooltip="Recompute activations in the backward pass: much less memory for ~30% more time."),
        io.Combo.Input("cache_latents", options=list(LATENT_CACHES), default="memory",
                       tooltip="Encode every image once before training: memory (RAM), disk (in the run folder; reused by "
                       "later runs and resumes), none (encode each step; needed for random_crop)."),
        io.Boolean.Input("cache_text_encoder_outputs", default=False,
                         tooltip="Encode captions once (a few shuffled / dropped variants each, so caption shuffle and "
                         "dropout keep working) and move the text encoders off the GPU. Not with train_text_encoder."),
        io.Int.Input("training_seed", default=42, min=0, max=2**31 - 1,
                     tooltip="Seed of the LoRA initialisation, noise, timesteps and caption / crop draws: same seed, same run."),
        io.Int.Input("save_every_n_steps", default=0, min=0, max=1_000_000,
                     tooltip="Also save the model (<filename>-step00000100.safetensors beside the final file) and a "
                     "resume state every N steps; 0 = only at the end."),
        io.Int.Input("sample_every_n_steps", default=0, min=0, max=1_000_000,
                     tooltip="Render sample_prompts every N steps; they show on the node while it trains. 0 = no samples."),
        io.String.Input("sample_prompts", default="", multiline=True,
                        tooltip="One prompt per line for the sample images (at the dataset's resolution)."),
        io.String.Input("sample_negative", default="", multiline=True, tooltip="Negative prompt for the sample images."),
        io.Int.Input("sample_steps", default=20, min=1, max=200, tooltip="Sampling steps per sample image (DPM++ 2M Karras)."),
        io.Float.Input("sample_cfg", default=7.0, min=0.0, max=30.0, step=0.1, tooltip="CFG scale of the sample images."),
        io.Boolean.Input("resume", default=False,
                         tooltip="Continue from the newest resume state saved under this filename (after Cancel or a "
                         "periodic save), exactly where it stopped; starts fresh when there is none. Off: a fresh run "
                         "(old states of this filename are removed)."),
        io.Combo.Input("continue_from", options=continue_options, default="none", tooltip=continue_tooltip),
    ]


def choose_mixed(requested: str, device: torch.device, weight_dtype: torch.dtype) -> str:
    """`auto`: keep the dtype ComfyUI loaded the weights in, so frozen weights are never re-rounded."""
    if requested != "auto":
        return requested
    if device.type == "cpu":
        return "no"
    if weight_dtype == torch.bfloat16:
        return "bf16"
    if weight_dtype == torch.float16:
        return "fp16"
    return "bf16" if comfy.model_management.should_use_bf16(device) else "fp16"


def noise_offset(value: float, bundle: ModelBundle) -> float:
    if value >= 0:
        return value
    if bundle.extras.get("zero_terminal_snr"):
        return 0.0
    return AUTO_NOISE_OFFSET[bundle.arch]


def check_choices(values: dict, lora: bool) -> None:
    """ComfyUI 0.3.64 does not validate V3 combo values: refuse unknown ones by input name."""
    for name, options in (("optimizer", OPTIMIZERS), ("lr_scheduler", SCHEDULERS), ("mixed_precision", PRECISIONS),
                          ("cache_latents", LATENT_CACHES)):  # fmt: skip
        if values[name] not in options:
            raise ValueError(f"{name}: {values[name]!r} is not one of {', '.join(options)}")


def check_contradictions(values: dict, spec: DatasetSpec) -> None:
    if values["cache_text_encoder_outputs"] and values["train_text_encoder"]:
        raise ValueError(
            "cache_text_encoder_outputs and train_text_encoder contradict each other: cached outputs come from frozen "
            "text encoders. Turn one of them off."
        )
    if values["cache_latents"] != "none" and spec.config.random_crop:
        raise ValueError(
            "cache_latents would freeze one crop per image, but the dataset's random_crop is on: set cache_latents = none "
            "or turn random_crop off"
        )
    if values["sample_every_n_steps"] and not sample_prompts(values):
        raise ValueError("sample_every_n_steps is set but sample_prompts is empty: write one prompt per line")


def sample_prompts(values: dict) -> tuple[str, ...]:
    return tuple(line.strip() for line in values["sample_prompts"].splitlines() if line.strip())


def build_config(
    values: dict, *, lora: bool, spec: DatasetSpec, bundle: ModelBundle, files: Destination, run: Path, mixed: str,
    init_weights: str = "",
) -> TrainConfig:
    arch = bundle.arch
    clip = bundle.extras["clip"]
    resolution = spec.config.buckets.resolution
    return TrainConfig(
        model=ModelConfig(
            source="comfyui",
            arch=arch,
            prediction=bundle.prediction_type,
            clip_skip=2 if arch == "sd15" and clip.layer_idx == -2 else 1,
            max_token_length=MAX_TOKEN_LENGTH,
            name=bundle.name,
        ),
        dataset=dataclasses.replace(spec.config, batch_size=values["batch_size"], seed=values["training_seed"]),
        save=SaveConfig(
            output_dir=str(files.folder), name=files.name, work_dir=str(run), every_n_steps=values["save_every_n_steps"],
            precision="fp16",
        ),
        network=NetworkConfig(
            type="lora" if lora else "full",
            rank=values.get("rank", 16),
            alpha=values.get("alpha", 8.0),
            conv_rank=values.get("conv_rank", 0),
            conv_alpha=values.get("conv_alpha", 1.0),
            train_text_encoder=values["train_text_encoder"],
            init_weights=init_weights,
        ),
        objective=ObjectiveConfig(
            noise_offset=noise_offset(values["noise_offset"], bundle),
            min_snr_gamma=values["min_snr_gamma"],
            zero_terminal_snr=bool(bundle.extras.get("zero_terminal_snr")),
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
            prompts=sample_prompts(values),
            negative_prompt=values["sample_negative"],
            width=resolution,
            height=resolution,
            steps=values["sample_steps"],
            cfg_scale=values["sample_cfg"],
            seed=values["training_seed"],
        ),
        logging=LogConfig(tensorboard=False),
        seed=values["training_seed"],
    )


# trainer config keys -> this node's inputs, for error messages (longest first)
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
    "dataset.random_crop": "random_crop",
    "save.name": "filename",
    "seed": "training_seed",
}
_KEYS = re.compile(r"(?<![\w.])(" + "|".join(re.escape(k) for k in sorted(INPUT_NAMES, key=len, reverse=True)) + r")(?!\w)")


def explain(exc: Exception) -> ValueError:
    """The same error, worded with this node's input names instead of TOML keys."""
    return ValueError(_KEYS.sub(lambda m: INPUT_NAMES[m.group(1)], str(exc)))
