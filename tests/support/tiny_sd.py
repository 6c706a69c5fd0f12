"""Tiny SD1.5- and SDXL-shaped diffusers models for the trainer tests (CPU, seconds, no downloads).

Same classes and structure as the real models (UNet2DConditionModel with cross-attention and, for
SDXL, "text_time" embeddings and two CLIP encoders, the second with projection; AutoencoderKL with
the 8x latent stride), with channel counts cut down. A tokenizer with a character-level vocabulary
is written into the folder, so everything loads through the same from_pretrained calls as a real
model folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

CHARS = "abcdefghijklmnopqrstuvwxyz0123456789!,.()_-:' "
TEXT_DIM = 32
POOLED_DIM = 16
TIME_DIM = 8


def write_tokenizer(folder: Path) -> Path:
    """A CLIPTokenizer over single characters (BOS and EOS last, so EOS has the largest id)."""
    from transformers import CLIPTokenizer

    raw = folder / "_raw"
    raw.mkdir(parents=True, exist_ok=True)
    chars = [c for c in CHARS if c != " "]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({f"{c}</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (raw / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (raw / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(str(raw / "vocab.json"), str(raw / "merges.txt"), model_max_length=77)
    tokenizer.save_pretrained(folder)
    for file in raw.iterdir():
        file.unlink()
    raw.rmdir()
    return folder


def text_config(projection: bool):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(CHARS) * 2,
        hidden_size=TEXT_DIM,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        projection_dim=POOLED_DIM if projection else TEXT_DIM,
        hidden_act="gelu" if projection else "quick_gelu",
        bos_token_id=len(CHARS) * 2 - 2,
        eos_token_id=2,  # the legacy id: CLIP pools at the argmax id, which is EOS in this vocabulary
        pad_token_id=1,
    )


def unet_config(arch: str) -> dict:
    base = dict(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    if arch == "sd15":
        return {
            **base,
            "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
            "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
            "cross_attention_dim": TEXT_DIM,
        }
    return {
        **base,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "cross_attention_dim": TEXT_DIM * 2,
        "transformer_layers_per_block": (1, 2),
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": TIME_DIM,
        "projection_class_embeddings_input_dim": POOLED_DIM + 6 * TIME_DIM,
    }


def vae_config() -> dict:
    return dict(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=0.5,
    )


def build_models(arch: str, seed: int = 0):
    """(unet, [text models], vae) with seeded random weights."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_config(arch))
    texts = [CLIPTextModel(text_config(False))]
    if arch == "sdxl":
        texts.append(CLIPTextModelWithProjection(text_config(True)))
    vae = AutoencoderKL(**vae_config())
    return unet, texts, vae


def make_model_folder(folder: Path, arch: str = "sd15", prediction: str = "epsilon", seed: int = 0) -> Path:
    """A diffusers-format folder (unet/, text_encoder[_2]/, tokenizer[_2]/, vae/, scheduler/)."""
    folder = Path(folder)
    unet, texts, vae = build_models(arch, seed)
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    for i, model in enumerate(texts):
        suffix = "" if i == 0 else "_2"
        model.save_pretrained(folder / f"text_encoder{suffix}")
        write_tokenizer(folder / f"tokenizer{suffix}")
    scheduler = {
        "_class_name": "EulerDiscreteScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "prediction_type": prediction,
    }
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler), encoding="utf-8")
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionXLPipeline" if arch == "sdxl" else "StableDiffusionPipeline"}),
        encoding="utf-8",
    )
    return folder


def make_dataset(folder: Path, count: int = 4, size=(64, 64), captions=None, seed: int = 0) -> Path:
    """`count` random-noise images with tag captions in `folder`."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        # smooth colour fields rather than white noise: something a tiny model can learn
        base = rng.integers(0, 256, (2, 2, 3), dtype=np.uint8)
        image = Image.fromarray(base, "RGB").resize(size, Image.BILINEAR)
        image.save(folder / f"img{i:03d}.png")
        caption = captions[i % len(captions)] if captions else f"1girl, solo, tag{i % 3}"
        (folder / f"img{i:03d}.txt").write_text(caption, encoding="utf-8")
    return folder
