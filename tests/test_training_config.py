"""TOML settings: unknown keys refused by name, values validated with their TOML key, contradictions
refused before any work, relative paths resolved against the file, and the shipped example configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from animekit.training.config import ModelConfig, TrainConfig
from animekit.training.config_toml import config_from_dict, load_config

TRAINING = Path(__file__).resolve().parents[1] / "training"


def base(**tables) -> dict:
    table = {
        "model": {"path": "m"},
        "dataset": {"folders": [{"path": "d"}]},
        "save": {"output_dir": "o"},
    }
    for name, values in tables.items():
        table[name] = {**table.get(name, {}), **values} if isinstance(values, dict) else values
    return table


def error(**tables) -> str:
    with pytest.raises(ValueError) as info:
        config_from_dict(base(**tables))
    return str(info.value)


def test_a_minimal_config_gets_the_documented_defaults():
    cfg = config_from_dict(base())
    assert isinstance(cfg, TrainConfig)
    assert cfg.network.type == "lora" and cfg.network.rank == 16 and cfg.network.alpha == 8.0
    assert cfg.schedule.max_steps == 1000 and cfg.optimizer.type == "adamw"
    assert cfg.optimizer.te1_lr == cfg.optimizer.lr == cfg.optimizer.te2_lr
    assert cfg.dataset.folders[0].path == "d"


def test_unknown_keys_are_refused_with_a_suggestion():
    assert error(network={"rnak": 4}) == "unknown key 'network.rnak'; did you mean 'network.rank'?"
    assert error(optimiser={"lr": 1.0}) == "unknown key 'optimiser'; did you mean 'optimizer'?"
    assert "unknown key 'dataset.captions.shufle_caption'" in error(dataset={"captions": {"shufle_caption": True}})


def test_folder_keys_are_checked_too():
    with pytest.raises(ValueError, match=r"unknown key 'dataset.folders\[0\].repeat'; did you mean 'dataset.folders\[0\].repeats'"):
        config_from_dict(base(dataset={"folders": [{"path": "d", "repeat": 2}]}))


def test_values_are_validated_with_their_key():
    assert error(network={"rank": 0}) == "network.rank must be a positive integer, got 0"
    assert error(network={"rank": 2.5}) == "network.rank must be an integer, got 2.5"
    assert error(optimizer={"type": "sgd"}).startswith("optimizer.type must be one of 'adamw', 'adamw8bit', 'adafactor', 'prodigy'")
    assert error(model={"max_token_length": 76}) == "model.max_token_length must be one of 75, 150, 225, got 76"
    assert error(seed="x") == "seed must be an integer, got 'x'"
    assert error(precision={"gradient_checkpointing": "yes"}) == "precision.gradient_checkpointing must be true or false, got 'yes'"
    assert error(optimizer={"betas": [0.9]}) == "optimizer.betas must be a list of 2 values, got 1"
    assert error(dataset={"batch_size": 0}) == "dataset.batch_size must be a positive integer, got 0"
    assert error(dataset={"captions": {"keep_tokens": -1}}).startswith("dataset.captions.keep_tokens must be")
    assert error(save={"output_dir": ""}).startswith("save.output_dir is required")


def test_missing_sections_are_named():
    table = base()
    del table["dataset"]
    with pytest.raises(ValueError, match="missing key 'dataset'"):
        config_from_dict(table)
    table = base()
    table["dataset"] = {"batch_size": 2}
    with pytest.raises(ValueError, match="missing key 'dataset.folders'"):
        config_from_dict(table)


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ({"cache": {"text_encoder_outputs": True}, "network": {"train_text_encoder": True}}, "cache.text_encoder_outputs"),
        ({"precision": {"mixed": "fp16", "full_bf16": True}}, "precision.full_bf16 needs precision.mixed = 'bf16'"),
        ({"cache": {"latents": "memory"}, "dataset": {"random_crop": True}}, "dataset.random_crop"),
        ({"schedule": {"max_steps": 10, "epochs": 2}}, "exactly one of schedule.max_steps and schedule.epochs"),
        ({"objective": {"adaptive_noise_scale": 0.1}}, "set objective.noise_offset too"),
        ({"objective": {"min_snr_gamma": 5.0, "debiased_estimation": True}}, "choose one"),
        ({"network": {"train_unet": False}}, "nothing to train"),
        ({"network": {"type": "full", "init_weights": "x.safetensors"}}, "set model.checkpoint"),
        ({"network": {"type": "full", "conv_rank": 4}}, "apply to LoRA only"),
        ({"sample": {"every_n_steps": 10}}, "sample.prompts is empty"),
        ({"cache": {"latents_dir": "x"}}, "cache.latents_dir is only used"),
        ({"precision": {"mixed": "bf16", "full_bf16": True}, "ema": {"enabled": True}}, "ema needs float32"),
    ],
)
def test_contradictions_are_refused_before_any_work(tables, message):
    assert message in error(**tables)


def test_relative_paths_are_resolved_against_the_toml_file(tmp_path):
    (tmp_path / "cfg").mkdir()
    file = tmp_path / "cfg" / "train.toml"
    file.write_text(
        '[model]\npath = "../models/base"\ncheckpoint = "/abs/ckpt.safetensors"\n'
        '[save]\noutput_dir = "out"\n[dataset]\n[[dataset.folders]]\npath = "images"\n',
        encoding="utf-8",
    )
    cfg = load_config(file)
    assert cfg.model.path == str(tmp_path / "cfg" / "../models/base")
    assert cfg.model.checkpoint == "/abs/ckpt.safetensors"
    assert cfg.save.output_dir == str(tmp_path / "cfg" / "out")
    assert cfg.dataset.folders[0].path == str(tmp_path / "cfg" / "images")


def test_bad_toml_and_missing_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "none.toml")
    (tmp_path / "bad.toml").write_text("[model\npath=1", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.toml is not valid TOML"):
        load_config(tmp_path / "bad.toml")


def test_animagine_two_stage_examples_load():
    stage1 = load_config(TRAINING / "animagine_stage1.toml")
    stage2 = load_config(TRAINING / "animagine_stage2.toml")
    assert stage1.network.type == stage2.network.type == "full"
    assert stage1.network.train_text_encoder and not stage2.network.train_text_encoder
    assert (stage1.optimizer.lr, stage1.optimizer.te1_lr, stage2.optimizer.lr) == (7.5e-6, 3.75e-6, 2e-6)
    assert stage1.dataset.batch_size == stage2.dataset.batch_size == 48
    assert stage1.schedule.epochs == stage2.schedule.epochs == 10
    assert stage2.objective.noise_offset == 0.0357 and stage1.objective.noise_offset == 0.0
    assert stage1.precision.mixed == stage2.precision.mixed == "fp16"
    assert Path(stage2.model.checkpoint).name == "animagine-stage1.safetensors"
    assert Path(stage1.save.output_dir) / "animagine-stage1.safetensors" == Path(stage2.model.checkpoint)
    assert stage1.dataset.captions.keep_tokens_separator == "|||" and stage1.dataset.buckets.max_size == 2048


def test_changed_keys_lists_dotted_differences():
    a = config_from_dict(base())
    b = config_from_dict(base(network={"rank": 8}, schedule={"max_steps": 5}))
    assert a.changed_keys(b) == ["network.rank", "schedule.max_steps"]
    assert a.changed_keys(a.to_dict()) == []


def test_a_missing_model_is_named():
    from animekit.training.adapters.diffusers_models import load_bundle

    with pytest.raises(FileNotFoundError, match="model.path '/nonexistent' does not exist; expected an SD1.5 / SDXL single-file"):
        load_bundle(ModelConfig(path="/nonexistent"))


def test_readme_documents_every_setting():
    """training/README.md lists every key of every table, so the docs cannot drift from the schema."""
    import dataclasses
    import re

    from animekit.training import config as c
    from animekit.training.data.captions import CaptionConfig
    from animekit.training.data.dataset import BucketConfig, DatasetConfig, FolderSpec

    text = (TRAINING / "README.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^### (\S+)\n(.*?)(?=^### |^## |\Z)", text, flags=re.S | re.M))
    tables = {
        "[model]": c.ModelConfig, "[network]": c.NetworkConfig, "[objective]": c.ObjectiveConfig,
        "[optimizer]": c.OptimizerConfig, "[schedule]": c.ScheduleConfig, "[precision]": c.PrecisionConfig,
        "[cache]": c.CacheConfig, "[ema]": c.EmaConfig, "[save]": c.SaveConfig, "[sample]": c.SampleConfig,
        "[logging]": c.LogConfig, "[dataset]": DatasetConfig, "[dataset.buckets]": BucketConfig,
        "[dataset.captions]": CaptionConfig, "[[dataset.folders]]": FolderSpec,
    }  # fmt: skip
    for section, cls in tables.items():
        assert section in sections, section
        documented = set(re.findall(r"^\| `(\w+)` \|", sections[section], flags=re.M))
        skip = {"buckets", "captions"} if cls is DatasetConfig else set()
        assert documented == {f.name for f in dataclasses.fields(cls)} - skip, section
