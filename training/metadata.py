"""`ss_*` (kohya sd-scripts) and `modelspec.*` (Stability AI ModelSpec) metadata for saved files.

A1111 / Forge's "training info", Civitai's uploader and kohya's own tools read the ss_* keys; the
modelspec keys tell loaders the architecture and prediction type. Values are strings, as the
safetensors header requires.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import time
from dataclasses import dataclass, field

from ..checkpoints.architecture import ARCHITECTURES
from ..files.hashing import legacy_hash_from
from .config import TrainConfig

BASE_VERSIONS = {"sd15": "sd_v1", "sdxl": "sdxl_base_v1-0"}
IMPL_STABILITY_AI = "https://github.com/Stability-AI/generative-models"
IMPL_DIFFUSERS = "diffusers"
IMPLEMENTATION = "animekit"


@dataclass
class RunFacts:
    """What the metadata says about the run beyond its config."""

    arch: str
    prediction_type: str
    base_model_name: str = ""
    base_model_hash: str = ""
    session_id: int = 0
    started_at: float = field(default_factory=time.time)
    num_train_images: int = 0  # images x repeats per epoch
    num_batches_per_epoch: int = 0
    num_epochs: int = 0
    max_steps: int = 0
    tag_frequency: dict = field(default_factory=dict)
    dataset_dirs: dict = field(default_factory=dict)  # folder name -> {"n_repeats": r, "img_count": n}
    bucket_info: dict = field(default_factory=dict)
    world_size: int = 1


def _optimizer_string(cfg: TrainConfig) -> str:
    opt = cfg.optimizer
    names = {
        "adamw": "torch.optim.AdamW",
        "adamw8bit": "bitsandbytes.optim.AdamW8bit",
        "adafactor": "transformers.optimization.Adafactor",
        "prodigy": "prodigyopt.Prodigy",
    }
    args = {"weight_decay": opt.weight_decay, **({"betas": tuple(opt.betas)} if opt.type != "adafactor" else {}), **opt.args}
    return f"{names[opt.type]}({','.join(f'{k}={v}' for k, v in args.items())})"


def training_metadata(cfg: TrainConfig, facts: RunFacts, *, step: int, epoch: int, lora: bool) -> dict[str, str]:
    """ss_* keys for a file saved at `step` / `epoch`."""
    net, obj, data, caps = cfg.network, cfg.objective, cfg.dataset, cfg.dataset.captions
    train_te = net.train_text_encoder
    meta = {
        "ss_session_id": facts.session_id,
        "ss_training_started_at": facts.started_at,
        "ss_training_finished_at": time.time(),
        "ss_output_name": cfg.save.name,
        "ss_learning_rate": cfg.optimizer.lr,
        "ss_unet_lr": cfg.optimizer.lr if net.train_unet else 0.0,
        "ss_text_encoder_lr": cfg.optimizer.te1_lr if train_te else 0.0,
        "ss_num_train_images": facts.num_train_images,
        "ss_num_reg_images": 0,
        "ss_num_batches_per_epoch": facts.num_batches_per_epoch,
        "ss_num_epochs": facts.num_epochs,
        "ss_epoch": epoch,
        "ss_steps": step,
        "ss_max_train_steps": facts.max_steps,
        "ss_batch_size_per_device": data.batch_size,
        "ss_total_batch_size": data.batch_size * cfg.schedule.accumulation_steps * facts.world_size,
        "ss_gradient_checkpointing": cfg.precision.gradient_checkpointing,
        "ss_gradient_accumulation_steps": cfg.schedule.accumulation_steps,
        "ss_lr_warmup_steps": cfg.schedule.warmup_steps,
        "ss_lr_scheduler": cfg.schedule.name,
        "ss_optimizer": _optimizer_string(cfg),
        "ss_max_grad_norm": cfg.optimizer.max_grad_norm,
        "ss_mixed_precision": cfg.precision.mixed,
        "ss_full_fp16": False,
        "ss_full_bf16": cfg.precision.full_bf16,
        "ss_v2": False,
        "ss_base_model_version": BASE_VERSIONS[facts.arch],
        "ss_v_parameterization": facts.prediction_type == "v_prediction",
        "ss_clip_skip": cfg.model.clip_skip if facts.arch == "sd15" else None,
        "ss_max_token_length": cfg.model.max_token_length,
        "ss_cache_latents": cfg.cache.latents != "none",
        "ss_seed": cfg.seed,
        "ss_noise_offset": obj.noise_offset or None,
        "ss_adaptive_noise_scale": obj.adaptive_noise_scale or None,
        "ss_multires_noise_iterations": obj.multires_iterations or None,
        "ss_multires_noise_discount": obj.multires_discount if obj.multires_iterations else None,
        "ss_min_snr_gamma": obj.min_snr_gamma or None,
        "ss_debiased_estimation": obj.debiased_estimation,
        "ss_zero_terminal_snr": obj.zero_terminal_snr,
        "ss_scale_v_pred_loss_like_noise_pred": obj.scale_v_pred_loss_like_noise_pred,
        "ss_min_timestep": obj.timestep_min,
        "ss_max_timestep": obj.timestep_max,
        "ss_loss_type": "l2",
        "ss_caption_dropout_rate": caps.caption_dropout_rate,
        "ss_caption_dropout_every_n_epochs": caps.caption_dropout_every_n_epochs,
        "ss_caption_tag_dropout_rate": caps.caption_tag_dropout_rate,
        "ss_keep_tokens": caps.keep_tokens,
        "ss_keep_tokens_separator": caps.keep_tokens_separator,
        "ss_shuffle_caption": caps.shuffle_caption,
        "ss_flip_aug": data.flip,
        "ss_random_crop": data.random_crop,
        "ss_color_aug": False,
        "ss_resolution": f"({data.buckets.resolution}, {data.buckets.resolution})",
        "ss_enable_bucket": True,
        "ss_min_bucket_reso": data.buckets.min_size,
        "ss_max_bucket_reso": data.buckets.max_size,
        "ss_bucket_no_upscale": data.buckets.no_upscale,
        "ss_bucket_info": json.dumps(facts.bucket_info),
        "ss_tag_frequency": json.dumps(facts.tag_frequency),
        "ss_dataset_dirs": json.dumps(facts.dataset_dirs),
        "ss_sd_model_name": facts.base_model_name,
        "ss_sd_model_hash": facts.base_model_hash,
        "ss_training_comment": f"trained with {IMPLEMENTATION}",
    }
    if lora:
        network_args = {}
        if net.conv_rank:
            network_args = {"conv_dim": str(net.conv_rank), "conv_alpha": str(net.conv_alpha)}
        meta.update(
            {
                "ss_network_module": "networks.lora",
                "ss_network_dim": net.rank,
                "ss_network_alpha": net.alpha,
                "ss_network_dropout": net.dropout or None,
                "ss_network_args": json.dumps(network_args) if network_args else None,
                "ss_network_train_unet_only": not train_te,
                "ss_network_train_text_encoder_only": not net.train_unet,
            }
        )
    return {k: _text(v) for k, v in meta.items() if v is not None}


def modelspec_metadata(cfg: TrainConfig, facts: RunFacts, *, lora: bool, title: str) -> dict[str, str]:
    arch = ARCHITECTURES[facts.arch].modelspec + ("/lora" if lora else "")
    implementation = IMPL_STABILITY_AI if (not lora or facts.arch == "sdxl") else IMPL_DIFFUSERS
    resolution = cfg.dataset.buckets.resolution
    meta = {
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": arch,
        "modelspec.implementation": implementation,
        "modelspec.title": title,
        "modelspec.resolution": f"{resolution}x{resolution}",
        "modelspec.date": datetime.datetime.fromtimestamp(int(time.time())).isoformat(),
        "modelspec.prediction_type": "v" if facts.prediction_type == "v_prediction" else "epsilon",
    }
    obj = cfg.objective
    if (obj.timestep_min, obj.timestep_max) != (0, 1000):
        meta["modelspec.timestep_range"] = f"{obj.timestep_min},{obj.timestep_max}"
    if facts.arch == "sd15" and cfg.model.clip_skip != 1:
        meta["modelspec.encoder_layer"] = str(cfg.model.clip_skip)
    return meta


def _text(value) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def addnet_hashes(tensors: dict, metadata: dict[str, str]) -> dict[str, str]:
    """kohya's sshs_model_hash / sshs_legacy_hash (read by A1111's additional-networks and Civitai).

    Hashes the safetensors bytes after the header, serialised with only the ss_* training keys,
    so the hash does not change when user-facing metadata is edited later.
    """
    from safetensors.torch import save

    blob = io.BytesIO(save(tensors, {k: v for k, v in metadata.items() if k.startswith("ss_")}))
    header = int.from_bytes(blob.read(8), "little")
    blob.seek(8 + header)
    model_hash = hashlib.sha256(blob.read()).hexdigest()
    data = blob.getbuffer()
    legacy_hash = legacy_hash_from(lambda offset, nbytes: bytes(data[offset:offset + nbytes]))
    return {"sshs_model_hash": model_hash, "sshs_legacy_hash": legacy_hash}
