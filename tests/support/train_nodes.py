"""Shared pieces of the trainer-node host tests (tests/test_train_nodes_*.py).

`comfy_prediction` recovers what a MODEL predicts (noise or velocity) from ComfyUI's own model
call, so the trainer's denoiser and a LoraLoader-patched model can be compared in one space.
The prompt builders make the API-format graphs the tests run through ComfyUI's executor.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from support.executor import TINY_MODELS_NODE
from support.training_images import noise, write_image

DATASET_DEFAULTS = dict(
    repeats=0, caption_extension=".txt", resolution=256, min_bucket_size=0, max_bucket_size=0, bucket_step=64,
    bucket_no_upscale=False, shuffle_caption=True, keep_tokens=1, keep_tokens_separator="", caption_separator=",",
    caption_prefix="", caption_suffix="", caption_dropout_rate=0.1, caption_dropout_every_n_epochs=0,
    caption_tag_dropout_rate=0.0, flip=False, random_crop=False,
)  # fmt: skip

TRAIN_DEFAULTS = dict(
    steps=3, batch_size=1, gradient_accumulation=1, unet_lr=1e-3, train_text_encoder=False, text_encoder_lr=1e-3,
    noise_offset=-1.0, min_snr_gamma=5.0, optimizer="adamw", lr_scheduler="constant_with_warmup", warmup_steps=0,
    mixed_precision="auto", gradient_checkpointing=True, cache_latents="memory", cache_text_encoder_outputs=False,
    training_seed=1, save_every_n_steps=0, sample_every_n_steps=0, sample_prompts="", sample_negative="",
    sample_steps=2, sample_cfg=5.0, resume=False, continue_from="none",
)  # fmt: skip
LORA_DEFAULTS = dict(TRAIN_DEFAULTS, rank=4, alpha=4.0, conv_rank=0, conv_alpha=1.0)


def pack(host, name: str):
    """A module of the pack as ComfyUI loaded it (e.g. "nodes.training.adapter")."""
    return importlib.import_module(f"{host.pack_module}.{name}")


def write_dataset(folder: Path, count: int = 3, size: int = 256) -> Path:
    for i in range(count):
        write_image(folder / f"img{i}.png", size=(size, size), caption=f"1girl, solo, tag{i}", image=noise(size, size, i))
    return folder


def train_prompt(node: str, arch: str, folder: str, model_seed: int = 0, **settings) -> dict:
    """Tiny models -> AnimeKitDataset -> trainer node `node` (ids "models", "dataset", "train")."""
    defaults = LORA_DEFAULTS if node == "AnimeKitTrainLora" else TRAIN_DEFAULTS
    inputs = {**defaults, "filename": "run", **settings}
    inputs.update(model=["models", 0], clip=["models", 1], vae=["models", 2], dataset=["dataset", 0])
    return {
        "models": {"class_type": TINY_MODELS_NODE, "inputs": {"arch": arch, "seed": model_seed}},
        "dataset": {"class_type": "AnimeKitDataset", "inputs": dict(DATASET_DEFAULTS, folder=folder)},
        "train": {"class_type": node, "inputs": inputs},
    }


def add_sampling(prompt: dict, text: str = "1girl, solo") -> dict:
    """KSampler -> VAEDecode -> PreviewImage on the trainer's model / clip outputs (ids "sampler", "decode", ...)."""
    prompt["positive"] = {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["train", 1]}}
    prompt["negative"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["train", 1]}}
    prompt["latent"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    prompt["sampler"] = {
        "class_type": "KSampler",
        "inputs": {"model": ["train", 0], "seed": 0, "steps": 2, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal",
                   "denoise": 1.0, "positive": ["positive", 0], "negative": ["negative", 0], "latent_image": ["latent", 0]},
    }  # fmt: skip
    prompt["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["sampler", 0], "vae": ["models", 2]}}
    prompt["preview"] = {"class_type": "PreviewImage", "inputs": {"images": ["decode", 0]}}
    return prompt


def comfy_prediction(model, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, y: torch.Tensor | None = None):
    """What ComfyUI's own call of `model` (patches applied) implies its UNet predicted at DDPM timesteps t."""
    import comfy.model_management
    import comfy.model_sampling

    comfy.model_management.load_models_gpu([model])  # applies weight and object patches (LoRA, v-prediction)
    sampling = model.get_model_object("model_sampling")
    sigma = sampling.sigmas[t]
    s = sigma.view(-1, 1, 1, 1)
    x_in = x * (s**2 + 1).sqrt()  # DDPM x_t -> ComfyUI's sigma-space input
    with torch.no_grad():
        out = model.model.apply_model(x_in, sigma, c_crossattn=context, **({} if y is None else {"y": y}))
    if isinstance(sampling, comfy.model_sampling.V_PREDICTION):  # denoised = x_in/(s²+1) - v·s/sqrt(s²+1)
        return (x_in / (s**2 + 1) - out) * (s**2 + 1).sqrt() / s
    return (x_in - out) / s


def sdxl_adm(model, pooled: torch.Tensor, sizes) -> torch.Tensor:
    """ComfyUI's own SDXL ADM vector per sample (SDXL.encode_adm)."""
    rows = []
    for i in range(pooled.shape[0]):
        (oh, ow), (ct, cl), (th, tw) = sizes.original_size[i].tolist(), sizes.crop_top_left[i].tolist(), sizes.target_size[i].tolist()
        rows.append(model.model.encode_adm(pooled_output=pooled[i : i + 1], height=oh, width=ow, crop_h=ct, crop_w=cl,
                                           target_height=th, target_width=tw))  # fmt: skip
    return torch.cat(rows)


def literal(caption: str) -> str:
    """A caption in ComfyUI prompt syntax with its parentheses taken literally."""
    return caption.replace("(", r"\(").replace(")", r"\)")
