"""Sample images for the headless CLI: a diffusers pipeline over the models being trained.

Prompts are encoded by the trainer's own text encoding (chunks, clip skip, SDXL pooling), so the
samples show what training conditions on; the pipeline only denoises and decodes. LoRA hooks stay
attached, so the samples include the LoRA. Images go to `<save.work_dir>/samples/`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import TrainConfig
from ..model_setup import AUTOCAST_DTYPES
from ..protocols import ModelBundle


def make_sampler(cfg: TrainConfig, name: str = ""):
    """A Hooks.on_sample callback writing PNGs for `cfg.sample.prompts`."""
    folder = Path(cfg.save.work_dir or cfg.save.output_dir) / "samples"
    stem = name or cfg.save.name

    def on_sample(step: int, bundle: ModelBundle) -> list[Path]:
        return render_samples(cfg, bundle, folder, f"{stem}-step{step:08d}")

    return on_sample


def render_samples(cfg: TrainConfig, bundle: ModelBundle, folder: Path, stem: str) -> list[Path]:
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    extras = bundle.extras
    unet, vae = extras["unet"], extras["vae"]
    device = next(unet.parameters()).device
    text_modules = [bundle.text_encoders.module(p) for p in bundle.text_encoders.parts]
    homes = [next(m.parameters()).device for m in (*text_modules, vae)]
    for module in (*text_modules, vae):
        module.to(device)
    sample, schedule = cfg.sample, bundle.noise_schedule
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=schedule.num_train_timesteps,
        beta_start=schedule.beta_start,
        beta_end=schedule.beta_end,
        beta_schedule=schedule.beta_schedule,
        prediction_type=bundle.prediction_type,
        rescale_betas_zero_snr=cfg.objective.zero_terminal_snr,
        timestep_spacing="trailing" if cfg.objective.zero_terminal_snr else "leading",
        steps_offset=1,
    )
    common = dict(vae=vae, unet=unet, scheduler=scheduler, tokenizer=None, text_encoder=None)
    if bundle.arch == "sdxl":
        pipe = StableDiffusionXLPipeline(**common, text_encoder_2=None, tokenizer_2=None)
    else:
        pipe = StableDiffusionPipeline(**common, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    width = sample.width or bundle.native_resolution
    height = sample.height or bundle.native_resolution
    mixed = cfg.precision.mixed
    autocast = torch.autocast(device.type, dtype=AUTOCAST_DTYPES[mixed], enabled=mixed != "no")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        with autocast:
            negative = bundle.text_encoders.encode([sample.negative_prompt], device)
            for i, prompt in enumerate(sample.prompts):
                positive = bundle.text_encoders.encode([prompt], device)
                kwargs = dict(prompt_embeds=positive.hidden_states, negative_prompt_embeds=negative.hidden_states)
                if bundle.arch == "sdxl":
                    kwargs.update(pooled_prompt_embeds=positive.pooled, negative_pooled_prompt_embeds=negative.pooled)
                generator = torch.Generator(device=device).manual_seed(sample.seed + i)
                image = pipe(
                    **kwargs, width=width, height=height, num_inference_steps=sample.steps,
                    guidance_scale=sample.cfg_scale, generator=generator,
                ).images[0]  # fmt: skip
                path = folder / f"{stem}-{i:02d}.png"
                image.save(path)
                written.append(path)
    finally:
        for module, home in zip((*text_modules, vae), homes):
            module.to(home)
    return written
