"""Noise, targets and loss weights against values computed by hand from the formulas."""

from __future__ import annotations

import math

import pytest
import torch

from animekit.training.config import ObjectiveConfig
from animekit.training.objective import (
    NoiseSchedule,
    Objective,
    apply_noise_offset,
    debiased_weight,
    min_snr_weight,
    pyramid_noise,
)

torch.set_num_threads(1)

B0, B1 = 0.00085, 0.012  # SD's scaled_linear betas


def hand_alpha_bar(t: int) -> float:
    """prod_{i<=t} (1 - beta_i), beta_i = (sqrt(b0) + i * (sqrt(b1) - sqrt(b0)) / 999)^2, in plain Python."""
    lo, hi = math.sqrt(B0), math.sqrt(B1)
    value = 1.0
    for i in range(t + 1):
        beta = (lo + i * (hi - lo) / 999) ** 2
        value *= 1.0 - beta
    return value


def objective(prediction="epsilon", **kwargs) -> Objective:
    return Objective(ObjectiveConfig(**kwargs), NoiseSchedule(), prediction)


def test_schedule_matches_hand_computed_alpha_bar():
    obj = objective()
    for t in (0, 1, 499, 999):
        assert float(obj.alphas_cumprod[t]) == pytest.approx(hand_alpha_bar(t), rel=1e-5)
    assert float(obj.alphas_cumprod[0]) == pytest.approx(0.99915, rel=1e-7)


def test_eps_target_is_the_noise_and_noisy_latents_follow_the_forward_process():
    obj = objective()
    x0 = torch.full((1, 4, 2, 2), 2.0)
    noise = torch.full((1, 4, 2, 2), -0.5)
    t = torch.tensor([499])
    abar = hand_alpha_bar(499)
    assert torch.equal(obj.target(x0, noise, t), noise)
    expected = math.sqrt(abar) * 2.0 + math.sqrt(1 - abar) * -0.5
    assert torch.allclose(obj.add_noise(x0, noise, t), torch.full_like(x0, expected), atol=1e-6)


def test_v_target_is_sqrt_abar_noise_minus_sqrt_one_minus_abar_x0():
    obj = objective("v_prediction")
    x0 = torch.ones((2, 4, 2, 2))
    noise = torch.full((2, 4, 2, 2), 0.5)
    t = torch.tensor([0, 999])
    v = obj.target(x0, noise, t)
    for i, step in enumerate((0, 999)):
        abar = hand_alpha_bar(step)
        expected = math.sqrt(abar) * 0.5 - math.sqrt(1 - abar) * 1.0
        assert torch.allclose(v[i], torch.full_like(v[i], expected), atol=1e-6)
    assert float(v[0, 0, 0, 0]) == pytest.approx(math.sqrt(0.99915) * 0.5 - math.sqrt(0.00085), abs=1e-6)


def test_min_snr_gamma_weights():
    snr = torch.tensor([0.5, 5.0, 20.0])
    assert torch.allclose(min_snr_weight(snr, 5.0, "epsilon"), torch.tensor([1.0, 1.0, 0.25]))
    assert torch.allclose(min_snr_weight(snr, 5.0, "v_prediction"), torch.tensor([0.5 / 1.5, 5 / 6, 5 / 21]))


def test_debiased_estimation_weights_cap_snr_at_1000():
    snr = torch.tensor([0.5, 5.0, 20.0, 4000.0])
    eps = debiased_weight(snr, "epsilon")
    assert torch.allclose(eps, torch.tensor([1 / math.sqrt(0.5), 1 / math.sqrt(5), 1 / math.sqrt(20), 1 / math.sqrt(1000)]))
    v = debiased_weight(snr, "v_prediction")
    assert torch.allclose(v, torch.tensor([1 / 1.5, 1 / 6, 1 / 21, 1 / 1001]))


def test_snr_is_alpha_bar_over_one_minus_alpha_bar():
    obj = objective()
    snr = obj.snr(torch.tensor([0, 999]))
    assert float(snr[0]) == pytest.approx(0.99915 / 0.00085, rel=1e-4)  # float32: 1 - 0.99915 keeps ~4 digits
    assert float(snr[1]) == pytest.approx(hand_alpha_bar(999) / (1 - hand_alpha_bar(999)), rel=1e-4)


def test_weighted_loss_is_mean_of_weight_times_per_sample_mse():
    obj = objective(min_snr_gamma=5.0)
    t = torch.tensor([0, 999])
    target = torch.zeros((2, 4, 2, 2))
    prediction = torch.stack([torch.full((4, 2, 2), 1.0), torch.full((4, 2, 2), 2.0)])  # mse 1 and 4
    snr0 = 0.99915 / 0.00085
    snr999 = hand_alpha_bar(999) / (1 - hand_alpha_bar(999))
    w0 = min(snr0, 5.0) / snr0
    w999 = min(snr999, 5.0) / snr999  # = 1: the SNR at t=999 is far below gamma
    assert w999 == 1.0
    expected = (1.0 * w0 + 4.0 * w999) / 2
    assert float(obj.loss(prediction, target, t)) == pytest.approx(expected, rel=1e-5)
    assert float(objective().loss(prediction, target, t)) == pytest.approx(2.5)


def test_noise_offset_adds_one_value_per_sample_and_channel():
    noise = torch.zeros((2, 4, 3, 3))
    latents = torch.zeros((2, 4, 3, 3))
    out = apply_noise_offset(noise, latents, 0.1, 0.0, torch.Generator().manual_seed(7))
    expected = 0.1 * torch.randn((2, 4, 1, 1), generator=torch.Generator().manual_seed(7))
    assert out.shape == (2, 4, 3, 3)
    assert torch.allclose(out, expected.expand(2, 4, 3, 3))


def test_adaptive_noise_offset_scales_with_channel_mean_magnitude():
    noise = torch.zeros((1, 2, 2, 2))
    latents = torch.stack([torch.full((2, 2), 3.0), torch.full((2, 2), -1.0)]).unsqueeze(0)
    out = apply_noise_offset(noise, latents, 0.1, 0.5, torch.Generator().manual_seed(3))
    draw = torch.randn((1, 2, 1, 1), generator=torch.Generator().manual_seed(3))
    strengths = torch.tensor([0.1 + 0.5 * 3.0, 0.1 + 0.5 * 1.0]).view(1, 2, 1, 1)
    assert torch.allclose(out, (strengths * draw).expand(1, 2, 2, 2))


def test_pyramid_noise_is_normalised_and_reproducible():
    base = torch.randn((2, 4, 16, 16), generator=torch.Generator().manual_seed(0))
    a = pyramid_noise(base, 4, 0.3, torch.Generator().manual_seed(1))
    b = pyramid_noise(base, 4, 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert a.shape == base.shape
    assert float(a.std()) == pytest.approx(1.0, abs=1e-5)
    assert not torch.allclose(a, base / base.std())
    assert pyramid_noise(base, 0, 0.3, torch.Generator()) is base


def test_zero_terminal_snr_makes_the_last_alpha_bar_zero_and_keeps_the_first():
    obj = objective("v_prediction", zero_terminal_snr=True)
    assert float(obj.alphas_cumprod[-1]) == 0.0
    assert float(obj.alphas_cumprod[0]) == pytest.approx(0.99915, rel=1e-5)
    assert float(objective("v_prediction").alphas_cumprod[-1]) > 0.004


def test_zero_terminal_snr_needs_v_prediction():
    with pytest.raises(ValueError, match="zero_terminal_snr needs a v-prediction model"):
        objective("epsilon", zero_terminal_snr=True)


def test_min_snr_with_zero_terminal_snr_gives_zero_weight_at_the_last_step():
    obj = objective("v_prediction", zero_terminal_snr=True, min_snr_gamma=5.0)
    weights = obj.weights(torch.tensor([999, 0]))
    assert float(weights[0]) == 0.0
    snr0 = float(obj.snr(torch.tensor([0])))
    assert float(weights[1]) == pytest.approx(5.0 / (snr0 + 1), rel=1e-5)


def test_timestep_range_bounds_the_draws():
    obj = objective(timestep_min=200, timestep_max=300)
    t = obj.sample_timesteps(4000, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert int(t.min()) == 200 and int(t.max()) == 299


def test_timestep_range_validation_names_the_keys():
    with pytest.raises(ValueError, match="objective.timestep_min"):
        ObjectiveConfig(timestep_min=500, timestep_max=500)
    with pytest.raises(ValueError, match="objective.timestep_max"):
        objective(timestep_max=1001)
