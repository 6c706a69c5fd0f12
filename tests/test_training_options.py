"""The hosts' choice lists come from the config's own types, and the `auto` values resolve as documented."""

from __future__ import annotations

from typing import get_args

import pytest
import torch

from animekit.training import config as c
from animekit.training.memory_estimate import MemoryPlan
from animekit.training.options import (
    AUTO,
    LATENT_CACHES,
    LR_SCHEDULERS,
    MIXED_PRECISIONS,
    OPTIMIZERS,
    clip_skip_from_layer,
    resolve_mixed_precision,
    resolve_noise_offset,
)


def test_every_listed_choice_is_one_the_config_takes_and_nothing_else_is():
    assert OPTIMIZERS == ("adamw", "adamw8bit", "adafactor", "prodigy")
    assert LR_SCHEDULERS == ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")
    assert MIXED_PRECISIONS == ("auto", "no", "fp16", "bf16")
    assert LATENT_CACHES == ("memory", "disk", "none")
    for value in OPTIMIZERS:
        assert c.OptimizerConfig(type=value).type == value
    for value in LR_SCHEDULERS:
        assert c.ScheduleConfig(name=value, max_steps=1).name == value
    for value in MIXED_PRECISIONS[1:]:
        assert c.PrecisionConfig(mixed=value).mixed == value
    for value in LATENT_CACHES:
        assert c.CacheConfig(latents=value).latents == value
    with pytest.raises(ValueError, match=r"^optimizer.type must be one of 'adamw', 'adamw8bit', 'adafactor', 'prodigy', got 'sgd'$"):
        c.OptimizerConfig(type="sgd")
    with pytest.raises(ValueError, match=r"^precision.mixed must be one of 'no', 'fp16', 'bf16', got 'auto'$"):
        c.PrecisionConfig(mixed=AUTO)  # auto is the host's to resolve, never the config's
    with pytest.raises(ValueError, match=r"^cache.latents must be one of 'memory', 'disk', 'none', got 'ram'$"):
        c.CacheConfig(latents="ram")


def test_the_toml_reader_offers_the_same_choices_as_the_checks():
    """config_toml reads the Literal hints; the checks read the same types."""
    from typing import get_type_hints

    assert get_args(get_type_hints(c.OptimizerConfig)["type"]) == OPTIMIZERS
    assert get_args(get_type_hints(c.ScheduleConfig)["name"]) == LR_SCHEDULERS
    assert get_args(get_type_hints(c.CacheConfig)["latents"]) == LATENT_CACHES
    assert get_args(get_type_hints(c.PrecisionConfig)["mixed"]) == MIXED_PRECISIONS[1:]


def test_the_memory_estimate_knows_every_optimizer_the_config_takes():
    for optimizer in OPTIMIZERS:
        MemoryPlan(arch="sdxl", params={"unet": 10}, trained_params=1, full=False, train_text_encoder=False, optimizer=optimizer)


@pytest.mark.parametrize(
    ("device", "dtype", "bf16", "expected"),
    [
        ("cpu", torch.bfloat16, True, "no"),  # the CPU trains in float32 whatever the weights are
        ("cuda", torch.bfloat16, False, "bf16"),  # the weights' own dtype: never re-rounded
        ("cuda", torch.float16, True, "fp16"),
        ("cuda", torch.float32, True, "bf16"),
        ("cuda", torch.float32, False, "fp16"),
    ],
)
def test_auto_mixed_precision_keeps_the_loaded_dtype(device, dtype, bf16, expected):
    assert resolve_mixed_precision("auto", device, dtype, lambda: bf16) == expected


def test_a_chosen_mixed_precision_passes_through_without_asking_the_device():
    def never():
        raise AssertionError("asked")

    assert resolve_mixed_precision("fp16", "cpu", torch.float32, never) == "fp16"
    assert resolve_mixed_precision("bogus", "cuda", torch.float32, never) == "bogus"  # the config refuses it


def test_auto_noise_offset_follows_the_seed_cards():
    assert resolve_noise_offset(-1.0, "sd15", False) == 0.05  # AnimeDiffusion
    assert resolve_noise_offset(-1.0, "sdxl", False) == 0.0357  # Animagine XL 3.0
    assert resolve_noise_offset(-1.0, "sdxl", True) == 0.0  # zero-terminal-SNR v-prediction
    assert resolve_noise_offset(0.02, "sdxl", True) == 0.02
    assert resolve_noise_offset(0.0, "sd15", False) == 0.0


def test_clip_skip_only_for_sd15():
    assert clip_skip_from_layer("sd15", -2) == 2
    assert clip_skip_from_layer("sd15", -1) == 1
    assert clip_skip_from_layer("sd15", None) == 1
    assert clip_skip_from_layer("sdxl", -2) == 1
