"""The trainer's memory estimate (training/memory_estimate.py), by what it must do, not by its coefficients.

The parameter counts are the real SD1.5 / SDXL ones. The checks are lower bounds any true estimate
meets (weights, gradients and AdamW's two moments must fit), the direction each setting moves it,
and the refuse rule: a card clearly too small is refused with the settings to change, a card with
room accepts. None of them copies a coefficient, so the estimate can be recalibrated freely.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from animekit.training.memory_estimate import GIB, MemoryPlan, advice, check_fits, estimate

SDXL = {"unet": 2_567_463_684, "te1": 123_060_480, "te2": 694_659_841, "vae": 83_653_863}
SD15 = {"unet": 859_520_964, "te1": 123_060_480, "vae": 83_653_863}
SDXL_LORA_R16 = 23_000_000  # about what rank 16 on the attention layers gives


def lora(**changes) -> MemoryPlan:
    plan = MemoryPlan(arch="sdxl", params=SDXL, trained_params=SDXL_LORA_R16, full=False, train_text_encoder=False,
                      optimizer="adamw", mixed="bf16", batch_size=1, width=1024, height=1024,
                      gradient_checkpointing=True)  # fmt: skip
    return dataclasses.replace(plan, **changes)


def full(**changes) -> MemoryPlan:
    return lora(full=True, trained_params=SDXL["unet"], trained_parts=("unet",), **changes)


def total(plan: MemoryPlan) -> int:
    return estimate(plan).total


def test_the_estimate_is_at_least_what_must_be_held():
    """16-bit frozen weights, and per AdamW-trained float32 weight: itself, its gradient and two moments."""
    everything = sum(SDXL.values())
    assert total(lora()) >= 2 * everything + 16 * SDXL_LORA_R16
    assert total(full()) >= 2 * (everything - SDXL["unet"]) + 16 * SDXL["unet"]
    assert total(full(full_bf16=True)) >= 2 * everything + 2 * SDXL["unet"]  # bf16 weight and gradient at least
    assert total(lora(mixed="no")) >= 4 * (everything - SDXL["vae"])  # float32 weights when nothing autocasts


@pytest.mark.parametrize(
    ("smaller", "larger", "why"),
    [
        (lora(), lora(gradient_checkpointing=False), "checkpointing recomputes activations instead of keeping them"),
        (lora(), lora(batch_size=2), "a second image's activations"),
        (lora(), lora(mixed="no"), "float32 weights and activations"),
        (lora(text_cached=True), lora(), "cached text outputs let the encoders leave the GPU"),
        (lora(width=768, height=768), lora(), "fewer pixels, fewer activations"),
        (lora(optimizer="adafactor"), lora(), "Adafactor keeps less state than AdamW"),
        (lora(optimizer="adamw8bit"), lora(), "8-bit moments"),
        (lora(), lora(optimizer="prodigy"), "Prodigy keeps more state than AdamW"),
        (lora(), full(), "all UNet weights train instead of a LoRA"),
        (full(full_bf16=True), full(), "bf16 trained weights"),
        (full(optimizer="adafactor"), full(), "Adafactor on 2.6 G weights"),
        (lora(), lora(train_text_encoder=True), "the text encoders' activations"),
        (lora(arch="sd15", params=SD15, width=512, height=512), lora(), "SD1.5 at 512 is the smaller job"),
    ],
)
def test_each_setting_moves_the_estimate_the_way_it_should(smaller, larger, why):
    assert total(smaller) < total(larger), why


def test_the_description_names_every_part_and_the_total():
    found = estimate(full(gradient_checkpointing=False, batch_size=2))
    text = found.describe()
    assert text.startswith(f"{found.total / GIB:.1f} GiB")
    nonzero = [name for name, value in found.parts.items() if value]
    assert len(nonzero) >= 3
    for name in nonzero:
        assert re.search(rf"\b{re.escape(name)} \d+\.\d", text), name
    assert found.total >= sum(found.parts.values())  # margins add, never subtract


def test_a_card_clearly_too_small_is_refused_with_what_to_change():
    plan = lora(gradient_checkpointing=False, batch_size=2)
    need = total(plan)
    with pytest.raises(ValueError) as info:
        check_fits(plan, available=need // 3, device_name="cuda:0 NVIDIA RTX 3060")
    message = str(info.value)
    assert f"cuda:0 NVIDIA RTX 3060 has {need // 3 / GIB:.1f} GiB free" in message
    assert estimate(plan).describe() in message
    assert "gradient_checkpointing = on" in message and "batch_size = 1 with gradient_accumulation = 2" in message


def test_a_card_with_room_accepts():
    plan = lora()
    assert check_fits(plan, available=3 * total(plan), device_name="gpu").total == total(plan)
    assert check_fits(lora(arch="sd15", params=SD15, width=512, height=512), available=80 * GIB, device_name="H100").total > 0


def test_advice_puts_the_largest_saving_first_and_each_saves_something():
    plan = lora(gradient_checkpointing=False, batch_size=4, mixed="no")
    tips = advice(plan, available=total(plan) // 4)
    savings = [float(re.search(r"\(-(\d+\.\d) GiB\)$", tip).group(1)) for tip in tips]
    assert savings == sorted(savings, reverse=True) and all(s > 0 for s in savings)
    assert any(t.startswith("gradient_checkpointing = on") for t in tips)
    assert any(t.startswith("mixed_precision = bf16") for t in tips)
    assert not any(t.startswith("gradient_checkpointing") for t in advice(lora(), available=1))  # already on


def test_a_refused_full_fine_tune_is_offered_a_lora_only_when_its_size_is_known():
    plan = full()  # AdamW on float32 UNet weights: far beyond a 24 GB card
    assert any(t.startswith("train a LoRA instead (AnimeKit Train LoRA)") for t in advice(plan, 24 * GIB, SDXL_LORA_R16))
    assert not any("LoRA" in t for t in advice(plan, 24 * GIB))


def test_bad_plans_are_refused():
    with pytest.raises(ValueError, match="arch"):
        lora(arch="sd3")
    with pytest.raises(ValueError, match="optimizer"):
        lora(optimizer="sgd")
    with pytest.raises(ValueError, match="batch_size"):
        lora(batch_size=0)
