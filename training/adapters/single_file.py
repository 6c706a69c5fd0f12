"""A single-file SD1.5 / SDXL checkpoint (A1111 / ComfyUI layout) as a training bundle, offline.

The component configs ship with the pack (training/configs/{sd15,sdxl}.json: UNet, CLIP text
encoders, VAE, noise schedule), the weights are converted with diffusers' own single-file
converters (ldm_checkpoint.py), the tokenizers come from the local CLIP vocabulary
(clip_vocab.py): nothing is fetched from a hub. A full fine-tune exports the same layout back,
with the v-prediction / zero-terminal-SNR marker keys the input had, so ComfyUI loads the result
as the same kind of model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import torch

from ...checkpoints.keys import TEXT_ENCODER_PREFIXES, UNET_PREFIX, VAE_PREFIX
from ..config import ModelConfig
from ..ldm_checkpoint import clip_from_ldm, open_clip_from_ldm, unet_from_ldm, vae_from_ldm
from ..model_facts import V_PRED_KEY, ZTSNR_KEY, ModelFacts
from ..objective import NoiseSchedule
from ..protocols import ModelBundle
from .clip_vocab import clip_tokenizers, find_clip_vocab
from .reference_models import reference_config


def _take(checkpoint: dict, prefix: str) -> dict:
    """Remove and return the tensors under `prefix` (so each part's source is freed once converted)."""
    keys = [k for k in checkpoint if k.startswith(prefix)]
    return {k: checkpoint.pop(k) for k in keys}


def load_single_file_bundle(
    cfg: ModelConfig, facts: ModelFacts, progress: Callable[..., None] | None = None, config: dict | None = None
) -> ModelBundle:
    """Load `cfg.path` (float32, CPU). `config`: component configs (default: the shipped real ones)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import load_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from ...files.hashing import legacy_model_hash
    from .diffusers_models import _load_strict, _PartSteps, make_bundle

    arch, file = facts.arch, Path(cfg.path)
    config = config or reference_config(arch)
    text_parts = [("te1", "text_encoder", CLIPTextModel)]
    if arch == "sdxl":
        text_parts.append(("te2", "text_encoder_2", CLIPTextModelWithProjection))
    step = _PartSteps(["tokenizers", "checkpoint file", "unet", *(sub for _, sub, _ in text_parts), "vae"], progress)

    step("tokenizers")
    tokenizers = clip_tokenizers(arch, find_clip_vocab(cfg.tokenizer))
    step("checkpoint file")
    checkpoint = load_file(str(file))

    step("unet")
    unet = UNet2DConditionModel.from_config(config["unet"])
    _load_strict(unet, unet_from_ldm(_take(checkpoint, UNET_PREFIX), unet.config), "UNet", file)
    text_models = []
    for part, sub, cls in text_parts:
        step(sub)
        model = cls(CLIPTextConfig(**config[sub]))
        prefix = TEXT_ENCODER_PREFIXES[arch][part]
        flattened = not hasattr(model, "text_model")
        selected = _take(checkpoint, prefix)
        if part == "te1":
            state = clip_from_ldm(selected, prefix, flattened)
        else:
            state = open_clip_from_ldm(selected, prefix, model, flattened)
        _load_strict(model, state, f"text encoder {part}", file)
        text_models.append(model)
    step("vae")
    vae = AutoencoderKL.from_config(config["vae"])
    _load_strict(vae, vae_from_ldm(_take(checkpoint, VAE_PREFIX), vae.config), "VAE", file)
    step.finish()
    del checkpoint
    for model in (unet, *text_models, vae):
        model.requires_grad_(False)

    scheduler = config.get("scheduler", {})
    prediction = cfg.prediction if cfg.prediction != "auto" else facts.prediction
    bundle = make_bundle(
        arch,
        unet,
        text_models,
        tokenizers,
        vae,
        prediction_type=prediction,
        noise_schedule=NoiseSchedule(
            num_train_timesteps=int(scheduler.get("num_train_timesteps", 1000)),
            beta_start=float(scheduler.get("beta_start", 0.00085)),
            beta_end=float(scheduler.get("beta_end", 0.012)),
            beta_schedule=str(scheduler.get("beta_schedule", "scaled_linear")),
        ),
        max_token_length=cfg.max_token_length,
        clip_skip=cfg.clip_skip,
        name=cfg.name or file.stem,
        model_hash=legacy_model_hash(file),
        vae_identity=f"{file.resolve()}#vae",
    )
    markers = {V_PRED_KEY: prediction == "v_prediction", ZTSNR_KEY: prediction == "v_prediction" and facts.zero_terminal_snr}
    return dataclasses.replace(bundle, export_checkpoint=_with_markers(bundle.export_checkpoint, markers))


def _with_markers(export: Callable[[], dict], markers: dict[str, bool]) -> Callable[[], dict]:
    """The exporter plus ComfyUI's empty marker tensors (`v_pred`, `ztsnr`) the source model had."""

    def export_marked() -> dict[str, torch.Tensor]:
        state = export()
        state.update({key: torch.tensor([]) for key, on in markers.items() if on})
        return state

    return export_marked
