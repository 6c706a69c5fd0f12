"""The trainer's memory estimate (training/memory_estimate.py): exact bookkeeping, advice, refusal."""

from __future__ import annotations

import dataclasses

import pytest

from animekit.training.memory_estimate import (
    ACTIVATIONS_PER_MEGAPIXEL,
    FIXED_OVERHEAD,
    GIB,
    MARGIN,
    MemoryPlan,
    advice,
    check_fits,
    estimate,
)

PARAMS = {"unet": 1000, "te1": 100, "te2": 200, "vae": 50}


def lora_plan(**changes) -> MemoryPlan:
    plan = MemoryPlan(arch="sdxl", params=PARAMS, trained_params=10, full=False, train_text_encoder=False,
                      optimizer="adamw", mixed="bf16", batch_size=2, width=1000, height=1000)  # fmt: skip
    return dataclasses.replace(plan, **changes)


def test_lora_estimate_counts_every_part():
    found = estimate(lora_plan())
    assert found.parts == {
        "weights": (1000 + 100 + 200) * 2 + 50 * 4,  # frozen in the autocast dtype, the VAE in float32
        "trained weights": 10 * 4,
        "gradients": 10 * 4,
        "optimizer state": 10 * 8,  # AdamW: two float32 moments
        "activations": int(2 * ACTIVATIONS_PER_MEGAPIXEL[("sdxl", True)]),  # batch 2 at exactly 1 megapixel
    }
    assert found.total == int((2800 + 40 + 40 + 80 + 2 * 2.5 * GIB) * MARGIN + FIXED_OVERHEAD)


def test_settings_change_the_estimate_the_way_they_should():
    base = estimate(lora_plan()).parts
    assert estimate(lora_plan(mixed="no")).parts["weights"] == 1300 * 4 + 200
    assert estimate(lora_plan(mixed="no")).parts["activations"] == 2 * base["activations"]
    assert estimate(lora_plan(text_cached=True)).parts["weights"] == 1000 * 2 + 200  # encoders leave the GPU
    assert estimate(lora_plan(optimizer="adafactor")).parts["optimizer state"] == 10
    assert estimate(lora_plan(gradient_checkpointing=False)).parts["activations"] == int(2 * 14.0 * GIB)
    te = estimate(lora_plan(train_text_encoder=True)).parts["activations"]
    assert te == base["activations"] + int(2 * 0.5 * GIB)


def test_full_fine_tune_keeps_trained_parts_in_float32():
    plan = lora_plan(full=True, trained_params=1000, trained_parts=("unet",), optimizer="adafactor")
    parts = estimate(plan).parts
    assert parts["weights"] == 1000 * 4 + 300 * 2 + 50 * 4
    assert parts["trained weights"] == 0 and parts["gradients"] == 4000 and parts["optimizer state"] == 1000
    assert estimate(dataclasses.replace(plan, full_bf16=True)).parts["weights"] == 1000 * 2 + 300 * 2 + 200


def test_advice_ranks_the_biggest_saving_first_and_names_node_inputs():
    plan = lora_plan(gradient_checkpointing=False, batch_size=4, width=1024, height=1024)
    tips = advice(plan, available=8 * GIB)
    assert tips[0].startswith("gradient_checkpointing = on (-")
    assert any(t.startswith("batch_size = 1 with gradient_accumulation = 4") for t in tips)
    assert any(t.startswith("resolution = 768 in the dataset node") for t in tips)
    assert not any(t.startswith("optimizer") for t in tips)  # 10 LoRA parameters: nothing worth saving there
    sdxl = {"unet": 2_567_463_684, "te1": 123_060_480, "te2": 694_659_841, "vae": 83_653_863}
    full = lora_plan(params=sdxl, full=True, trained_params=sdxl["unet"], trained_parts=("unet",), batch_size=1)
    # AdamW on 2.6 G float32 weights: 8 bytes of state + 4 of gradient per weight dwarf everything else
    assert advice(full, 24 * GIB, lora_params=23_000_000)[0].startswith("train a LoRA instead (AnimeKit Train LoRA) (-")


def test_check_fits_refuses_with_the_settings_to_change():
    plan = lora_plan(gradient_checkpointing=False, width=1024, height=1024, batch_size=2)
    with pytest.raises(ValueError) as info:
        check_fits(plan, available=12 * GIB, device_name="cuda:0 NVIDIA RTX 3060")
    message = str(info.value)
    assert "cuda:0 NVIDIA RTX 3060 has 12.0 GiB free" in message
    assert "Change: gradient_checkpointing = on" in message
    assert check_fits(plan, available=100 * GIB, device_name="gpu").total == estimate(plan).total


def test_bad_plans_are_refused():
    with pytest.raises(ValueError, match="arch"):
        lora_plan(arch="sd3")
    with pytest.raises(ValueError, match="optimizer"):
        lora_plan(optimizer="sgd")
