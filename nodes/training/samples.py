"""Sample images while training, through the model being trained (LoRA hooks included).

Calls the bundle's own denoiser, text encoders and VAE with ComfyUI's sigma schedule and DPM++ 2M
sampler, and never ComfyUI's model management: `comfy.sample` would load and unload models
around the run and could move a module the trainer is using. The starting noise comes from its
own generator, and DPM++ 2M draws no noise, so sampling leaves every training RNG untouched and
resume stays exact.
"""

from __future__ import annotations

import contextlib

import torch

import comfy.k_diffusion.sampling
import comfy.samplers

from ...training.config import SampleConfig
from ...training.protocols import ModelBundle, SizeConditioning


SCHEDULER = "karras"  # with DPM++ 2M: ComfyUI's dpmpp_2m / karras


def _param(module: torch.nn.Module) -> torch.Tensor:
    return next(module.parameters())


def render_samples(bundle: ModelBundle, settings: SampleConfig, autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Images [N, H, W, 3] in [0, 1] on the CPU, one per prompt, with classifier-free guidance."""
    model, vae = bundle.extras["model"], bundle.extras["vae"]
    if vae is None:
        raise ValueError("vae: sample images need a VAE")
    sampling = model.get_model_object("model_sampling")
    latent_format = model.get_model_object("latent_format")
    device = _param(bundle.denoiser.module).device
    sigmas = comfy.samplers.calculate_sigmas(sampling, SCHEDULER, settings.steps).to(device)
    h, w = settings.height // 8, settings.width // 8
    amp = (
        torch.autocast(device.type, dtype=autocast_dtype)
        if autocast_dtype is not None and autocast_dtype != torch.float32
        else contextlib.nullcontext()
    )
    images = []
    with torch.no_grad(), amp:
        for index, prompt in enumerate(settings.prompts):
            text = bundle.text_encoders.encode([prompt, settings.negative_prompt], device)
            size = torch.tensor([[settings.height, settings.width]] * 2, device=device)
            sizes = SizeConditioning(size, torch.zeros_like(size), size)
            generator = torch.Generator().manual_seed(settings.seed + index)
            noise = torch.randn((1, latent_format.latent_channels, h, w), generator=generator).to(device)

            def denoised(x, sigma, **_):
                sig = sigma.reshape(-1)[:1].expand(2)
                x2 = torch.cat([x, x])
                out = bundle.denoiser(sampling.calculate_input(sig, x2), sampling.timestep(sig).float(), text, sizes)
                both = sampling.calculate_denoised(sig, out.float(), x2)
                cond, uncond = both.chunk(2)
                return uncond + settings.cfg_scale * (cond - uncond)

            x = sampling.noise_scaling(sigmas[0], noise, torch.zeros_like(noise), max_denoise=True)
            latent = comfy.k_diffusion.sampling.sample_dpmpp_2m(denoised, x, sigmas, disable=True)
            latent = sampling.inverse_noise_scaling(sigmas[-1], latent)
            images.append(decode(vae, latent_format.process_out(latent.float())))
    return torch.cat(images)


def decode(vae, latent: torch.Tensor) -> torch.Tensor:
    """ComfyUI VAE decode without its model management: [1, 4, h, w] raw latent -> [1, H, W, 3]."""
    module = vae.first_stage_model
    param = _param(module)
    pixels = module.decode(latent.to(param.device, param.dtype)).float()
    return vae.process_output(pixels).movedim(1, -1).cpu()
