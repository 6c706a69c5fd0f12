"""Training teaches: after a LoRA or a full fine-tune on two captioned concepts, prompting each caption
generates that concept and not the other (pure tier, CPU, well under a minute each).

The dataset: a red square captioned "red square" and a blue circle captioned "blue circle",
with caption dropout so classifier-free guidance has an unconditional model to push against. The
judge does not look at the loss: it generates latents with each caption (Euler, CFG, fixed seeds)
and asks whether their mean lies nearer to the latent of the red square or of the blue circle, for
the trained and for the untrained model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from animekit.training.adapters.diffusers_models import load_bundle
from animekit.training.config_toml import config_from_dict
from animekit.training.run import train
from support.tiny_sd import make_model_folder

torch.set_num_threads(1)  # more threads than free cores stall every op on a busy machine

SEEDS = range(4)


def concept_pixels(caption: str) -> np.ndarray:
    """A red square or a blue circle, centred on black, 64 x 64."""
    pixels = np.zeros((64, 64, 3), np.uint8)
    yy, xx = np.mgrid[:64, :64]
    if caption == "red square":
        pixels[16:48, 16:48] = (220, 30, 30)
    else:
        pixels[(yy - 31.5) ** 2 + (xx - 31.5) ** 2 < 16**2] = (30, 40, 220)
    return pixels


CONCEPTS = ("red square", "blue circle")


def make_concepts(folder, per_concept: int = 6):
    folder.mkdir(parents=True)
    for c, caption in enumerate(CONCEPTS):
        for i in range(per_concept):
            Image.fromarray(concept_pixels(caption), "RGB").save(folder / f"{c}_{i}.png")
            (folder / f"{c}_{i}.txt").write_text(caption, encoding="utf-8")


def concept_latents(bundle) -> dict[str, torch.Tensor]:
    """Each concept's clean latent through the model's own VAE: the templates the judge compares with."""
    found = {}
    for caption in CONCEPTS:
        pixels = torch.tensor(concept_pixels(caption), dtype=torch.float32).permute(2, 0, 1)[None] / 127.5 - 1.0
        found[caption] = bundle.vae.encode(pixels)[0]
    return found


@torch.no_grad()
def generated_means(bundle) -> dict[str, torch.Tensor]:
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    s = bundle.noise_schedule
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=s.num_train_timesteps, beta_start=s.beta_start, beta_end=s.beta_end,
        beta_schedule=s.beta_schedule, prediction_type=bundle.prediction_type, steps_offset=1,
    )  # fmt: skip
    unet, vae = bundle.extras["unet"], bundle.extras["vae"]
    unet.float()
    pipe = StableDiffusionPipeline(
        vae=vae, unet=unet, scheduler=scheduler, tokenizer=None, text_encoder=None,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    negative = bundle.text_encoders.encode([""], "cpu").hidden_states.float()
    found = {}
    for caption in CONCEPTS:
        positive = bundle.text_encoders.encode([caption], "cpu").hidden_states.float()
        latents = [
            pipe(
                prompt_embeds=positive, negative_prompt_embeds=negative, width=64, height=64, num_inference_steps=12,
                guidance_scale=4.0, generator=torch.Generator().manual_seed(seed), output_type="latent",
            ).images  # fmt: skip
            for seed in SEEDS
        ]
        found[caption] = torch.cat(latents).mean(dim=0)
    return found


def leaning(bundle) -> dict[str, float]:
    """Per caption: distance to the blue circle minus distance to the red square (> 0: it is the red square)."""
    targets = concept_latents(bundle)
    return {
        caption: float((latent - targets["blue circle"]).norm() - (latent - targets["red square"]).norm())
        for caption, latent in generated_means(bundle).items()
    }


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("learns")
    make_model_folder(root / "model", "sd15", seed=3)
    vae_config = root / "model" / "vae" / "config.json"  # latents of unit-ish spread, as SD's scaling factor gives
    vae_config.write_text(vae_config.read_text(encoding="utf-8").replace('"scaling_factor": 0.5', '"scaling_factor": 5.0'))
    make_concepts(root / "data")
    return root


@pytest.fixture(scope="module")
def base_checkpoint(assets):
    """A LoRA teaches a concept to a model that can already draw: a base fine-tuned on both pictures with
    (almost) every caption dropped, so it draws squares and circles but has not tied them to words."""
    table = config(assets, assets / "base", {"type": "full"}, {"lr": 1e-3}, 300)
    table["dataset"]["captions"]["caption_dropout_rate"] = 0.99
    return train(config_from_dict(table)).output


def train_and_judge(table: dict) -> tuple[dict, dict]:
    cfg = config_from_dict(table)
    untrained = leaning(load_bundle(cfg.model))
    bundle = load_bundle(cfg.model)
    train(cfg, bundle=bundle)
    return untrained, leaning(bundle)


def assert_learned(untrained: dict, trained: dict) -> None:
    assert trained["red square"] > 0 > trained["blue circle"], (trained, untrained)
    margin = trained["red square"] - trained["blue circle"]
    assert margin > 3 * abs(untrained["red square"] - untrained["blue circle"]), (trained, untrained)


def test_a_lora_teaches_each_caption_its_concept(assets, base_checkpoint, tmp_path):
    table = config(assets, tmp_path, {"type": "lora", "rank": 8, "alpha": 8}, {"lr": 1e-2}, 500)
    table["model"]["checkpoint"] = str(base_checkpoint)
    assert_learned(*train_and_judge(table))


def test_a_full_fine_tune_teaches_each_caption_its_concept(assets, tmp_path):
    assert_learned(*train_and_judge(config(assets, tmp_path, {"type": "full"}, {"lr": 1e-3}, 400)))


def config(assets, out, network, optimizer, steps) -> dict:
    return {
        "seed": 1,
        "model": {"path": str(assets / "model")},
        "network": network,
        "optimizer": {"type": "adamw", "weight_decay": 0.0, **optimizer},
        "schedule": {"max_steps": steps},
        "cache": {"latents": "memory"},
        "save": {"output_dir": str(out / "out"), "save_state": False, "precision": "fp32"},
        "logging": {"tensorboard": False},
        "dataset": {
            "folders": [{"path": str(assets / "data")}],
            "batch_size": 4,
            "buckets": {"resolution": 64, "min_size": 64, "max_size": 64},
            "captions": {"caption_dropout_rate": 0.2},
        },
    }
