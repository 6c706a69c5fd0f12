"""The trainer's protocols over diffusers / transformers models (headless CLI, tests, benchmark).

`load_bundle` reads a local diffusers-format folder (no downloads). With `model.checkpoint` the
folder gives only configs and tokenizers and the weights come from a single-file checkpoint,
converted with diffusers' own converters — that is how stage 2 of a two-stage recipe continues
from stage 1's output file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn

from ..config import ModelConfig
from ..model_facts import inspect_model
from ...checkpoints.detect import identify
from ...checkpoints.keys import TEXT_ENCODER_PREFIXES
from ...files.hashing import legacy_model_hash
from ..ldm_checkpoint import (
    clip_from_ldm,
    clip_to_ldm,
    open_clip_from_ldm,
    open_clip_to_ldm,
    unet_from_ldm,
    unet_to_ldm,
    vae_from_ldm,
    vae_to_ldm,
)
from ..lora_network import LoraTarget, find_targets
from ..objective import NoiseSchedule
from ..protocols import ModelBundle, SizeConditioning, TextConditioning
from ..unet_names import unet_names
from .clip_text import encode_sd15, encode_sdxl

# kohya's selection: layers inside these classes get a LoRA
UNET_ATTENTION_CLASSES = ("Transformer2DModel",)
UNET_CONV_CLASSES = ("ResnetBlock2D", "Downsample2D", "Upsample2D")
TEXT_CLASSES = ("CLIPAttention", "CLIPSdpaAttention", "CLIPFlashAttention2", "CLIPMLP")


class DiffusersDenoiser:
    """A diffusers UNet2DConditionModel behind the Denoiser protocol."""

    def __init__(self, unet: nn.Module, arch: str):
        self.module = unet
        self.arch = arch

    def __call__(self, noisy_latents, timesteps, text: TextConditioning, sizes: SizeConditioning | None):
        added = None
        if self.arch == "sdxl":
            if sizes is None or text.pooled is None:
                raise ValueError("SDXL needs pooled text embeddings and size conditioning")
            added = {"text_embeds": text.pooled, "time_ids": sizes.time_ids().to(noisy_latents.device)}
        return self.module(
            noisy_latents, timesteps, encoder_hidden_states=text.hidden_states, added_cond_kwargs=added, return_dict=False
        )[0]

    def lora_targets(self, include_conv: bool) -> list[LoraTarget]:
        classes = UNET_ATTENTION_CLASSES + (UNET_CONV_CLASSES if include_conv else ())
        rename = unet_names(self.module.config).to_ldm if self.arch == "sdxl" else (lambda path: path)
        return find_targets(self.module, "unet", classes, rename)

    def enable_gradient_checkpointing(self) -> None:
        self.module.enable_gradient_checkpointing()


def _kohya_text_path(path: str) -> str:
    return path if path.startswith("text_model.") else f"text_model.{path}"


class ClipTextEncoders:
    """One (SD1.5) or two (SDXL) CLIP text encoders with their tokenizers."""

    def __init__(self, arch: str, tokenizers: list, models: list[nn.Module], max_token_length: int = 75, clip_skip: int = 1):
        self.arch = arch
        self.parts = ("te1", "te2") if arch == "sdxl" else ("te1",)
        if len(models) != len(self.parts) or len(tokenizers) != len(self.parts):
            raise ValueError(f"{arch} needs {len(self.parts)} text encoders and tokenizers, got {len(models)}")
        self.tokenizers = tokenizers
        self.models = dict(zip(self.parts, models))
        self.max_token_length = max_token_length
        self.clip_skip = clip_skip

    def module(self, part: str) -> nn.Module:
        return self.models[part]

    def encode(self, captions: list[str], device) -> TextConditioning:
        if self.arch == "sdxl":
            hidden, pooled = encode_sdxl(
                self.tokenizers, [self.models["te1"], self.models["te2"]], captions, self.max_token_length, device
            )
            return TextConditioning(hidden, pooled)
        hidden = encode_sd15(self.tokenizers[0], self.models["te1"], captions, self.max_token_length, self.clip_skip, device)
        return TextConditioning(hidden)

    def lora_targets(self, part: str) -> list[LoraTarget]:
        return find_targets(self.models[part], part, TEXT_CLASSES, _kohya_text_path)

    def enable_gradient_checkpointing(self) -> None:
        for model in self.models.values():
            enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
            enable()


class DiffusersVae:
    """AutoencoderKL -> scaled latents (the distribution's mean, so caches and resumes are deterministic)."""

    def __init__(self, vae: nn.Module, identity: str = ""):
        self.module = vae
        self.identity = identity or "diffusers-vae"

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        param = next(self.module.parameters())
        latents = self.module.encode(pixels.to(param.device, param.dtype)).latent_dist.mode()
        shift = getattr(self.module.config, "shift_factor", None) or 0.0
        return ((latents - shift) * self.module.config.scaling_factor).float()


# ---------------------------------------------------------------------------------- assembling


def make_bundle(
    arch: str,
    unet: nn.Module,
    text_models: list[nn.Module],
    tokenizers: list,
    vae: nn.Module | None,
    *,
    prediction_type: str = "epsilon",
    noise_schedule: NoiseSchedule = NoiseSchedule(),
    max_token_length: int = 75,
    clip_skip: int = 1,
    name: str = "",
    model_hash: str = "",
    vae_identity: str = "",
) -> ModelBundle:
    """A bundle over in-memory diffusers / transformers models, with a full-checkpoint exporter."""
    denoiser = DiffusersDenoiser(unet, arch)
    encoders = ClipTextEncoders(arch, tokenizers, text_models, max_token_length, clip_skip)
    latent = DiffusersVae(vae, vae_identity) if vae is not None else None

    def export() -> dict[str, torch.Tensor]:
        state = unet_to_ldm(unet.state_dict(), unet.config)
        prefixes = TEXT_ENCODER_PREFIXES[arch]
        state.update(clip_to_ldm(text_models[0].state_dict(), prefixes["te1"]))
        if arch == "sdxl":
            state.update(open_clip_to_ldm(text_models[1].state_dict(), prefixes["te2"]))
        if vae is not None:
            state.update(vae_to_ldm(vae.state_dict(), vae.config))
        return state

    return ModelBundle(
        arch=arch,
        prediction_type=prediction_type,
        denoiser=denoiser,
        text_encoders=encoders,
        vae=latent,
        noise_schedule=noise_schedule,
        name=name,
        model_hash=model_hash,
        export_checkpoint=export,
        extras={"unet": unet, "text_models": text_models, "tokenizers": tokenizers, "vae": vae},
    )


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def folder_arch(folder: Path) -> str:
    return "sdxl" if (folder / "text_encoder_2").is_dir() else "sd15"


def load_bundle(cfg: ModelConfig, progress: Callable[..., None] | None = None) -> ModelBundle:
    """Load SD1.5 / SDXL from a local diffusers folder (float32, CPU); see the module docstring.
    `progress(done, total, part)` is called before each part is loaded and once when all are."""
    facts = inspect_model(cfg)  # headers only: a missing or unsupported model fails here, naming model.path
    if facts.kind == "single-file":
        from .single_file import load_single_file_bundle

        return load_single_file_bundle(cfg, facts, progress)
    folder = Path(cfg.path)
    arch = folder_arch(folder)
    parts = ["libraries", "tokenizers", "checkpoint file" if cfg.checkpoint else None, "unet", "text_encoder",
             "text_encoder_2" if arch == "sdxl" else None, "vae"]  # fmt: skip
    step = _PartSteps([p for p in parts if p], progress)
    step("libraries")  # importing diffusers and transformers alone takes seconds
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    if cfg.arch != "auto" and cfg.arch != arch:
        raise ValueError(f"model.arch = {cfg.arch!r} but the folder {str(folder)!r} holds an {arch} model")
    text_parts = [("text_encoder", "tokenizer", CLIPTextModel)]
    if arch == "sdxl":
        text_parts.append(("text_encoder_2", "tokenizer_2", CLIPTextModelWithProjection))
    step("tokenizers")
    tokenizers = [CLIPTokenizer.from_pretrained(folder / tok, local_files_only=True) for _, tok, _ in text_parts]

    if cfg.checkpoint:
        unet, text_models, vae = _load_single_file(cfg.checkpoint, arch, folder, text_parts, step)
    else:
        step("unet")
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", local_files_only=True)
        text_models = []
        for sub, _, cls in text_parts:
            step(sub)
            text_models.append(cls.from_pretrained(folder / sub, local_files_only=True))
        step("vae")
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", local_files_only=True)
    step.finish()
    for model in (unet, *text_models, vae):
        model.requires_grad_(False)

    scheduler = _read_json(folder / "scheduler" / "scheduler_config.json")
    prediction = cfg.prediction if cfg.prediction != "auto" else scheduler.get("prediction_type", "epsilon")
    schedule = NoiseSchedule(
        num_train_timesteps=int(scheduler.get("num_train_timesteps", 1000)),
        beta_start=float(scheduler.get("beta_start", 0.00085)),
        beta_end=float(scheduler.get("beta_end", 0.012)),
        beta_schedule=str(scheduler.get("beta_schedule", "scaled_linear")),
    )
    source = Path(cfg.checkpoint) if cfg.checkpoint else folder
    name = cfg.name or (source.stem if source.is_file() else source.name)
    return make_bundle(
        arch,
        unet,
        text_models,
        tokenizers,
        vae,
        prediction_type=prediction,
        noise_schedule=schedule,
        max_token_length=cfg.max_token_length,
        clip_skip=cfg.clip_skip,
        name=name,
        model_hash=legacy_model_hash(source) if source.is_file() else "",
        vae_identity=f"{source.resolve()}#vae",
    )


class _PartSteps:
    """Reports loading progress part by part: `step(name)` as a part starts, `finish()` at the end."""

    def __init__(self, parts: list[str], progress: Callable[..., None] | None):
        self.parts, self.progress, self.done = parts, progress, 0

    def __call__(self, part: str) -> None:
        if self.progress is not None:
            self.done = self.parts.index(part)
            self.progress(self.done, len(self.parts), part)

    def finish(self) -> None:
        if self.progress is not None:
            self.progress(len(self.parts), len(self.parts), "")


def _load_single_file(path: str, arch: str, folder: Path, text_parts, step: _PartSteps):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import load_file
    from transformers import CLIPTextConfig

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"model.checkpoint {str(file)!r} does not exist")
    if file.suffix != ".safetensors":
        raise ValueError(f"model.checkpoint must be a .safetensors file (pickled checkpoints are not loaded), got {file.name!r}")
    step("checkpoint file")
    checkpoint = load_file(str(file))
    # the folder defines the architecture; a file that is recognisably the other one is refused here, anything
    # else (a non-standard size) by the strict load below, which names the weights it lacks
    ident = identify({k: tuple(v.shape) for k, v in checkpoint.items()})
    found = ident.arch.name if ident.arch is not None else arch
    if found != arch:
        raise ValueError(f"model.checkpoint {file.name!r} is an {found} checkpoint but model.path holds an {arch} model")

    step("unet")
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder, subfolder="unet", local_files_only=True))
    _load_strict(unet, unet_from_ldm(checkpoint, unet.config), "UNet", file)
    text_models = []
    prefixes = TEXT_ENCODER_PREFIXES[arch]
    for (sub, _, cls), part in zip(text_parts, ("te1", "te2")):
        step(sub)
        model = cls(CLIPTextConfig.from_pretrained(folder / sub, local_files_only=True))
        flattened = not hasattr(model, "text_model")
        if part == "te1":
            state = clip_from_ldm(checkpoint, prefixes["te1"], flattened)
        else:
            state = open_clip_from_ldm(checkpoint, prefixes["te2"], model, flattened)
        _load_strict(model, state, f"text encoder {part}", file)
        text_models.append(model)
    step("vae")
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder, subfolder="vae", local_files_only=True))
    _load_strict(vae, vae_from_ldm(checkpoint, vae.config), "VAE", file)
    return unet, text_models, vae


def _load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], what: str, file: Path) -> None:
    expected = set(model.state_dict().keys())
    missing = sorted(expected - set(state))
    if missing:
        raise ValueError(f"{file.name}: the {what} is missing {len(missing)} weights, e.g. {missing[0]!r}")
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=True)
