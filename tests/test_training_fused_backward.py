"""precision.fused_backward (kohya's fused backward pass): each weight is updated as soon as its gradient
is ready and the gradient freed, so a full fine-tune never holds every gradient; the result is the
ordinary step's."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from animekit.training.config_toml import config_from_dict
from animekit.training.memory_estimate import estimate
from animekit.training.run import train
from support.tiny_sd import make_dataset, make_model_folder

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("fused")
    make_model_folder(root / "model", "sd15")
    make_dataset(root / "data", 4)
    return root


def table(assets, out, optimizer="adafactor", **precision):
    return {
        "seed": 2,
        "model": {"path": str(assets / "model")},
        "network": {"type": "full"},
        "optimizer": {"type": optimizer, "lr": 1e-3, "max_grad_norm": 0.0},
        "schedule": {"max_steps": 3},
        "precision": precision,
        "save": {"output_dir": str(out), "save_state": False, "precision": "fp32"},
        "logging": {"tensorboard": False},
        "dataset": {"folders": [{"path": str(assets / "data")}], "batch_size": 2,
                    "buckets": {"resolution": 64, "min_size": 64, "max_size": 64}},
    }  # fmt: skip


@pytest.mark.parametrize("optimizer", ["adafactor", "adamw"])
def test_fused_backward_gives_the_ordinary_steps_weights(assets, tmp_path, optimizer):
    plain = train(config_from_dict(table(assets, tmp_path / "plain", optimizer)))
    fused = train(config_from_dict(table(assets, tmp_path / "fused", optimizer, fused_backward=True)))
    a, b = load_file(str(plain.output)), load_file(str(fused.output))
    assert set(a) == set(b)
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst < 1e-6
    assert plain.last_loss == pytest.approx(fused.last_loss, rel=1e-6)


def test_fused_backward_settings_are_refused_where_they_cannot_work(assets, tmp_path):
    cases = [
        ({"network": {"type": "lora"}}, "applies to full fine-tunes"),
        ({"schedule": {"max_steps": 3, "accumulation_steps": 2}}, "schedule.accumulation_steps = 1"),
        ({"optimizer": {"type": "prodigy"}}, "Prodigy"),
    ]
    for change, message in cases:
        with pytest.raises(ValueError, match=message):
            config_from_dict({**table(assets, tmp_path, fused_backward=True), **change})


def test_the_plan_drops_the_gradients(tmp_path):
    """SDXL full fine-tune, Adafactor, float32 weights, checkpointing: 9.6 GiB of gradients never coexist."""
    from animekit.training.check import plan_memory
    from animekit.training.model_facts import inspect_model
    from support.tiny_single_file import write_header_only_checkpoint

    write_header_only_checkpoint(tmp_path / "sdxl.safetensors", "sdxl")
    make_dataset(tmp_path / "data", 1)
    settings = table(tmp_path, tmp_path / "out", mixed="bf16", gradient_checkpointing=True)
    settings["model"]["path"] = str(tmp_path / "sdxl.safetensors")
    settings["cache"] = {"latents": "memory", "text_encoder_outputs": True}
    settings["dataset"]["buckets"] = {"resolution": 1024}
    cfg = config_from_dict(settings)
    plan = plan_memory(cfg, inspect_model(cfg.model)).plan
    plain, fused = estimate(plan), estimate(dataclasses.replace(plan, fused_backward=True))
    assert fused.parts["gradients"] == 0 < plain.parts["gradients"]
    assert fused.allocated < plain.allocated - 3 * 2**30
