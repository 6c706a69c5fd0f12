"""What the model is trained to predict: noise draws, timesteps, targets and loss weights.

The loss is the mean squared error in the model's own target space (noise for eps models,
velocity for v-prediction), optionally weighted per sample by min-SNR-gamma or debiased
estimation. Formulas follow kohya sd-scripts so results carry over; the noise schedule is
diffusers' DDPMScheduler (with its zero-terminal-SNR rescale) and SNR comes from
diffusers.training_utils.compute_snr. All randomness comes from the `generator` passed in,
which the loop saves for exact resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import ObjectiveConfig

PREDICTION_TYPES = ("epsilon", "v_prediction")
DEBIASED_SNR_CAP = 1000.0  # kohya caps SNR here so 1/sqrt(SNR) stays finite-sized at t ~ 0


@dataclass(frozen=True)
class NoiseSchedule:
    """The base model's training noise schedule (SD1.5 and SDXL share these defaults)."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"


def apply_noise_offset(
    noise: torch.Tensor, latents: torch.Tensor, offset: float, adaptive_scale: float, generator: torch.Generator
) -> torch.Tensor:
    """noise + offset * randn(B, C, 1, 1); the adaptive variant adds scale * |channel mean of the latent| to offset."""
    if not offset:
        return noise
    strength: torch.Tensor | float = offset
    if adaptive_scale:
        channel_mean = latents.float().mean(dim=(2, 3), keepdim=True).abs()
        strength = torch.clamp(offset + adaptive_scale * channel_mean, min=0.0)
    shift = torch.randn((noise.shape[0], noise.shape[1], 1, 1), generator=generator, device=noise.device, dtype=noise.dtype)
    return noise + strength * shift


def pyramid_noise(noise: torch.Tensor, iterations: int, discount: float, generator: torch.Generator) -> torch.Tensor:
    """Multi-resolution noise: add upscaled coarse noise at random scale factors in [2, 4), then renormalise."""
    if not iterations:
        return noise
    batch, channels, height, width = noise.shape
    out = noise.clone()
    for i in range(iterations):
        factor = 2.0 + 2.0 * float(torch.rand((), generator=generator, device=noise.device))
        h, w = max(1, int(height / factor**i)), max(1, int(width / factor**i))
        coarse = torch.randn((batch, channels, h, w), generator=generator, device=noise.device, dtype=noise.dtype)
        out = out + F.interpolate(coarse, size=(height, width), mode="bilinear") * discount**i
        if h == 1 or w == 1:
            break
    return out / out.std()


def min_snr_weight(snr: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """min(SNR, gamma) / SNR for eps targets, min(SNR, gamma) / (SNR + 1) for velocity targets."""
    clipped = torch.clamp(snr, max=gamma)
    return clipped / (snr + 1.0) if prediction_type == "v_prediction" else clipped / snr


def debiased_weight(snr: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """1 / sqrt(SNR) for eps targets, 1 / (SNR + 1) for velocity targets (SNR capped at 1000, as kohya)."""
    snr = torch.clamp(snr, max=DEBIASED_SNR_CAP)
    return 1.0 / (snr + 1.0) if prediction_type == "v_prediction" else 1.0 / torch.sqrt(snr)


def v_pred_like_noise_weight(snr: torch.Tensor) -> torch.Tensor:
    """SNR / (SNR + 1): makes a velocity loss weigh timesteps as an eps loss would."""
    return snr / (snr + 1.0)


class Objective:
    """Noise, timesteps, target and weighted loss for one model's prediction type."""

    def __init__(self, cfg: ObjectiveConfig, schedule: NoiseSchedule, prediction_type: str):
        from diffusers import DDPMScheduler

        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        if cfg.zero_terminal_snr and prediction_type != "v_prediction":
            raise ValueError(
                "objective.zero_terminal_snr needs a v-prediction model: at the last timestep the input is pure noise "
                "and an eps model cannot recover the image from it (set model.prediction = 'v_prediction')"
            )
        if cfg.scale_v_pred_loss_like_noise_pred and prediction_type != "v_prediction":
            raise ValueError("objective.scale_v_pred_loss_like_noise_pred applies to v-prediction models only")
        if cfg.timestep_max > schedule.num_train_timesteps:
            raise ValueError(
                f"objective.timestep_max ({cfg.timestep_max}) is above the model's {schedule.num_train_timesteps} timesteps"
            )
        self.cfg = cfg
        self.prediction_type = prediction_type
        self.scheduler = DDPMScheduler(
            num_train_timesteps=schedule.num_train_timesteps,
            beta_start=schedule.beta_start,
            beta_end=schedule.beta_end,
            beta_schedule=schedule.beta_schedule,
            prediction_type=prediction_type,
            rescale_betas_zero_snr=cfg.zero_terminal_snr,
        )

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.scheduler.alphas_cumprod

    def sample_noise(self, latents: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=torch.float32)
        noise = apply_noise_offset(noise, latents, self.cfg.noise_offset, self.cfg.adaptive_noise_scale, generator)
        return pyramid_noise(noise, self.cfg.multires_iterations, self.cfg.multires_discount, generator)

    def sample_timesteps(self, batch: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        return torch.randint(
            self.cfg.timestep_min, self.cfg.timestep_max, (batch,), generator=generator, device=device, dtype=torch.long
        )

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return self.scheduler.add_noise(latents.float(), noise, timesteps)

    def target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        if self.prediction_type == "v_prediction":
            return self.scheduler.get_velocity(latents.float(), noise, timesteps)
        return noise

    def snr(self, timesteps: torch.Tensor) -> torch.Tensor:
        from diffusers.training_utils import compute_snr

        return compute_snr(self.scheduler, timesteps)

    def weights(self, timesteps: torch.Tensor) -> torch.Tensor | None:
        """Per-sample loss weights, or None when every sample weighs 1."""
        cfg = self.cfg
        if not (cfg.min_snr_gamma or cfg.debiased_estimation or cfg.scale_v_pred_loss_like_noise_pred):
            return None
        snr = self.snr(timesteps)
        weight = torch.ones_like(snr)
        if cfg.scale_v_pred_loss_like_noise_pred:
            weight = weight * v_pred_like_noise_weight(snr)
        if cfg.min_snr_gamma:
            weight = weight * min_snr_weight(snr, cfg.min_snr_gamma, self.prediction_type)
        if cfg.debiased_estimation:
            weight = weight * debiased_weight(snr, self.prediction_type)
        return weight

    def loss(self, prediction: torch.Tensor, target: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Weighted mean squared error in the target's space, computed in float32."""
        per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=tuple(range(1, target.ndim)))
        weight = self.weights(timesteps)
        if weight is not None:
            per_sample = per_sample * weight.to(per_sample.device)
        return per_sample.mean()
