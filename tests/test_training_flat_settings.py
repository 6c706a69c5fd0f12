"""A trainer node's flat inputs to a TrainConfig (training/flat_settings.py): the mapping, and the
config's own errors given back in the inputs' names (no rule is checked twice)."""

from __future__ import annotations

from pathlib import Path

import pytest

from animekit.training.data.dataset import BucketConfig, DatasetConfig
from animekit.training.flat_settings import INPUT_NAMES, config_from_inputs, reword, sample_prompts
from animekit.training.run_files import Destination
from support.meta_bundles import meta_bundle
from support.train_nodes import LORA_DEFAULTS, TRAIN_DEFAULTS

DATASET = DatasetConfig(folders=("chars",), buckets=BucketConfig(256, 128, 512, 64))
PLACE = Destination(Path("/loras/chars"), "alice", "chars/alice.safetensors")


def build(lora=True, arch="sd15", mixed="no", dataset=DATASET, **changes):
    values = {**(LORA_DEFAULTS if lora else TRAIN_DEFAULTS), **changes}
    return config_from_inputs(values, lora=lora, dataset=dataset, bundle=meta_bundle(arch), clip_skip=2 if arch == "sd15" else 1,
                              destination=PLACE, work_dir=Path("/work/run"), mixed=mixed)  # fmt: skip


def test_lora_inputs_land_in_their_tables():
    cfg = build(sample_every_n_steps=2, sample_prompts=" 1girl \n\n  solo, smile", save_every_n_steps=5)
    assert (cfg.network.type, cfg.network.rank, cfg.network.alpha, cfg.network.conv_rank) == ("lora", 4, 4.0, 0)
    assert (cfg.optimizer.type, cfg.optimizer.lr, cfg.optimizer.te1_lr) == ("adamw", 1e-3, 1e-3)
    assert (cfg.schedule.name, cfg.schedule.max_steps, cfg.schedule.accumulation_steps) == ("constant_with_warmup", 3, 1)
    assert (cfg.precision.mixed, cfg.precision.gradient_checkpointing) == ("no", True)
    assert (cfg.cache.latents, cfg.cache.text_encoder_outputs) == ("memory", False)
    assert (cfg.model.path, cfg.model.arch, cfg.model.prediction, cfg.model.clip_skip, cfg.model.max_token_length) == (
        "", "sd15", "epsilon", 2, 225)  # fmt: skip
    assert cfg.objective.noise_offset == 0.05 and cfg.objective.min_snr_gamma == 5.0  # -1: AnimeDiffusion's offset
    assert (cfg.save.output_dir, cfg.save.name, cfg.save.work_dir, cfg.save.every_n_steps) == ("/loras/chars", "alice", "/work/run", 5)
    assert cfg.sample.prompts == ("1girl", "solo, smile")
    assert (cfg.sample.width, cfg.sample.height, cfg.sample.steps, cfg.sample.cfg_scale) == (256, 256, 2, 5.0)  # the dataset's size
    assert cfg.seed == cfg.dataset.seed == cfg.sample.seed == 1 and cfg.dataset.batch_size == 1
    assert cfg.dataset.folders == DATASET.folders and not cfg.logging.tensorboard


def test_the_checkpoint_node_fine_tunes_with_the_configs_own_defaults():
    cfg = build(lora=False, arch="sdxl", mixed="bf16", optimizer="adafactor", noise_offset=-1.0)
    assert cfg.network.type == "full" and cfg.network.rank == 16 and cfg.network.init_weights == ""
    assert cfg.objective.noise_offset == 0.0357 and cfg.model.clip_skip == 1  # Animagine XL 3.0's offset


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rank": 0}, "rank must be a positive integer, got 0"),
        ({"alpha": 0.0}, "alpha must be a number > 0, got 0.0"),
        ({"unet_lr": -1.0}, "unet_lr must be a number >= 0, got -1.0"),
        ({"text_encoder_lr": -1.0}, "text_encoder_lr must be a number >= 0, got -1.0"),
        ({"optimizer": "sgd"}, "optimizer must be one of 'adamw', 'adamw8bit', 'adafactor', 'prodigy', got 'sgd'"),
        ({"lr_scheduler": "step"}, "lr_scheduler must be one of 'constant', 'constant_with_warmup', 'linear', 'cosine', "
                                   "'cosine_with_restarts', 'polynomial', got 'step'"),
        ({"cache_latents": "gpu"}, "cache_latents must be one of 'memory', 'disk', 'none', got 'gpu'"),
        ({"gradient_accumulation": 0}, "gradient_accumulation must be a positive integer, got 0"),
        ({"steps": 0}, "set exactly one of steps and schedule.epochs"),
        ({"sample_every_n_steps": 4}, "sample_every_n_steps is set but sample_prompts is empty"),
        ({"cache_text_encoder_outputs": True, "train_text_encoder": True},
         "cache_text_encoder_outputs caches the outputs of frozen text encoders, but train_text_encoder is true; "
         "turn one of them off"),
    ],
)
def test_the_configs_errors_come_back_in_the_inputs_names(changes, message):
    with pytest.raises(ValueError) as info:
        build(**changes)
    assert str(info.value) == message


def test_a_dataset_node_setting_is_named_as_the_dataset_node_names_it():
    cropped = DatasetConfig(folders=("chars",), buckets=DATASET.buckets, random_crop=True)
    with pytest.raises(ValueError) as info:
        build(dataset=cropped)
    assert str(info.value) == ("cache_latents with random_crop would freeze one crop per image; "
                               "turn off random_crop or set cache_latents = 'none'")  # fmt: skip
    assert build(dataset=cropped, cache_latents="none").dataset.random_crop


def test_rewording_touches_whole_keys_only():
    assert str(reword(ValueError("network.rank and network.conv_rank and xnetwork.rank"))) == "rank and conv_rank and xnetwork.rank"
    assert str(reword(ValueError("schedule.max_steps_total"))) == "schedule.max_steps_total"
    assert all(name.isidentifier() for name in INPUT_NAMES.values())


def test_sample_prompts_one_per_line():
    assert sample_prompts("a\n \n b ,c\n") == ("a", "b ,c")
    assert sample_prompts("") == ()
