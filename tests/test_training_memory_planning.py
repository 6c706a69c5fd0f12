"""What a run hands the memory estimate (training/memory_planning.py): read from its TrainConfig and the
real model's sizes, so the nodes and any other host plan alike."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from animekit.training.config import CacheConfig, ModelConfig, NetworkConfig, OptimizerConfig, PrecisionConfig, SaveConfig, TrainConfig
from animekit.training.data.dataset import BucketConfig, DatasetConfig
from animekit.training.lora_network import build_network
from animekit.training.memory_estimate import GIB, estimate
from animekit.training.memory_planning import is_checked, lora_parameter_count, plan_run_memory, trained_parts
from support.meta_bundles import meta_bundle

PREFIXES = {"unet": "lora_unet", "te1": "lora_te1", "te2": "lora_te2"}


def config(arch="sdxl", **tables) -> TrainConfig:
    side = 1024 if arch == "sdxl" else 512
    dataset = DatasetConfig(folders=("unused",), buckets=BucketConfig(side, side // 2, side * 2, 64), batch_size=tables.pop("batch_size", 1))
    return TrainConfig(model=ModelConfig(arch=arch), dataset=dataset, save=SaveConfig(output_dir="unused"), **tables)


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
@pytest.mark.parametrize(("rank", "conv_rank", "text"), [(16, 0, False), (8, 4, True)])
def test_lora_size_is_what_the_network_builder_builds(arch, rank, conv_rank, text):
    bundle = meta_bundle(arch)
    targets = bundle.denoiser.lora_targets(include_conv=conv_rank > 0)
    if text:
        targets += [t for part in bundle.text_encoders.parts for t in bundle.text_encoders.lora_targets(part)]
    counted = lora_parameter_count(targets, rank, conv_rank)
    with torch.device("meta"):
        network = build_network(targets, PREFIXES, rank, 1.0, conv_rank, 1.0, 0.0)
    assert counted == sum(p.numel() for p in network.parameters())
    assert counted > 0


def test_a_lora_plan_reads_the_run_settings_and_the_real_sizes():
    bundle = meta_bundle("sdxl")
    cfg = config(
        optimizer=OptimizerConfig(type="adafactor"), precision=PrecisionConfig(mixed="bf16", gradient_checkpointing=True),
        cache=CacheConfig(text_encoder_outputs=True), batch_size=2,
    )  # fmt: skip
    memory = plan_run_memory(cfg, bundle)
    plan = memory.plan
    assert plan.params == {
        "unet": sum(p.numel() for p in bundle.denoiser.module.parameters()),
        "te1": sum(p.numel() for p in bundle.text_encoders.module("te1").parameters()),
        "te2": sum(p.numel() for p in bundle.text_encoders.module("te2").parameters()),
        "vae": sum(p.numel() for p in bundle.vae.module.parameters()),
    }
    assert 2_500_000_000 < plan.params["unet"] < 2_600_000_000  # SDXL's UNet
    assert (plan.arch, plan.full, plan.optimizer, plan.mixed, plan.batch_size, plan.width, plan.height) == (
        "sdxl", False, "adafactor", "bf16", 2, 1024, 1024)  # fmt: skip
    assert plan.gradient_checkpointing and plan.text_cached and not plan.train_text_encoder
    assert plan.trained_parts == ("unet",)
    assert plan.trained_params == memory.lora_params == lora_parameter_count(bundle.denoiser.lora_targets(False), 16, 0)


def test_training_the_text_encoders_adds_their_lora_or_weights():
    bundle = meta_bundle("sdxl")
    unet_only = plan_run_memory(config(), bundle)
    with_text = plan_run_memory(config(network=NetworkConfig(train_text_encoder=True)), bundle)
    assert with_text.plan.trained_parts == ("unet", "te1", "te2") and with_text.plan.train_text_encoder
    assert with_text.lora_params > unet_only.lora_params
    only_clip_l = config(network=NetworkConfig(train_text_encoder=True, train_te2=False))
    assert trained_parts(only_clip_l, bundle) == ("unet", "te1")
    full = plan_run_memory(config(network=NetworkConfig(type="full", train_text_encoder=True)), bundle)
    assert full.plan.full and full.plan.trained_params == sum(full.plan.params[p] for p in ("unet", "te1", "te2"))
    assert full.lora_params == with_text.lora_params  # what the same run would train as a LoRA


def test_a_full_fine_tune_plan_offers_the_lora_when_refused():
    bundle = meta_bundle("sdxl")
    memory = plan_run_memory(config(network=NetworkConfig(type="full"), precision=PrecisionConfig(mixed="bf16")), bundle)
    assert memory.plan.trained_params == memory.plan.params["unet"]
    with pytest.raises(ValueError, match=r"has 24\.0 GiB free\..*train a LoRA instead \(AnimeKit Train LoRA\)"):
        memory.check(24 * GIB, "cuda:0 RTX 4090")
    lora = plan_run_memory(dataclasses.replace(config(), precision=PrecisionConfig(mixed="bf16", gradient_checkpointing=True),
                                               cache=CacheConfig(text_encoder_outputs=True)), bundle)  # fmt: skip
    assert lora.check(80 * GIB, "H100").total == estimate(lora.plan).total  # fits: no error
    with pytest.raises(ValueError, match=r"cuda:0 tiny has 1\.0 GiB free"):
        lora.check(1 * GIB, "cuda:0 tiny")  # not even the frozen weights fit


def test_sd15_at_512_plans_far_less_than_sdxl_at_1024():
    sd15 = plan_run_memory(config("sd15"), meta_bundle("sd15"))
    assert set(sd15.plan.params) == {"unet", "te1", "vae"} and (sd15.plan.width, sd15.plan.height) == (512, 512)
    assert sd15.estimate().total < plan_run_memory(config(), meta_bundle("sdxl")).estimate().total / 2


def test_only_cuda_devices_refuse():
    assert is_checked("cuda")
    assert not is_checked("cpu") and not is_checked("mps") and not is_checked("xpu")
