"""Validation loss: a held-out split scored with fixed timesteps and noise every N steps, logged beside
the training loss (validation.csv), without changing what the training itself draws."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from animekit.training.config import ValidationConfig
from animekit.training.config_toml import config_from_dict
from animekit.training.data.dataset import scan_dataset
from animekit.training.run import train
from animekit.training.validation import split_index
from support.tiny_sd import make_dataset, make_model_folder

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("validation")
    make_model_folder(root / "model", "sd15")
    make_dataset(root / "data", 6)
    return root


def table(assets, out, **validation):
    return {
        "seed": 3,
        "model": {"path": str(assets / "model")},
        "network": {"rank": 4, "alpha": 4},
        "optimizer": {"lr": 1e-3},
        "schedule": {"max_steps": 4},
        "save": {"output_dir": str(out), "save_state": False},
        "logging": {"tensorboard": False},
        "dataset": {"folders": [{"path": str(assets / "data")}], "batch_size": 1,
                    "buckets": {"resolution": 64, "min_size": 64, "max_size": 64}},
        **({"validation": validation} if validation else {}),
    }  # fmt: skip


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_split_is_stable_and_leaves_images_on_both_sides(assets):
    cfg = config_from_dict(table(assets, assets / "unused", split=0.34, every_n_steps=2))
    index = scan_dataset(cfg.dataset)
    train_a, held_a = split_index(index, cfg.validation)
    train_b, held_b = split_index(index, cfg.validation)
    assert [r.path for r in held_a] == [r.path for r in held_b] and len(held_a) == 3  # ceil(0.34 * 6)
    assert {r.path for r in train_a.records} | {r.path for r in held_a} == {r.path for r in index.records}
    assert not {r.path for r in train_a.records} & {r.path for r in held_a}
    assert split_index(index, ValidationConfig()) == (index, [])


def test_validation_loss_is_logged_every_n_steps_and_is_deterministic(assets, tmp_path):
    first = train(config_from_dict(table(assets, tmp_path / "a", split=0.34, every_n_steps=2)))
    second = train(config_from_dict(table(assets, tmp_path / "b", split=0.34, every_n_steps=2)))
    a, b = rows(tmp_path / "a" / "validation.csv"), rows(tmp_path / "b" / "validation.csv")
    assert [r["step"] for r in a] == ["2", "4"]
    assert a == b and all(float(r["val_loss"]) > 0 for r in a)
    assert [r["loss"] for r in rows(tmp_path / "a" / "log.csv")] == [r["loss"] for r in rows(tmp_path / "b" / "log.csv")]
    assert first.last_loss == second.last_loss


def test_bad_validation_settings_are_refused():
    with pytest.raises(ValueError, match="validation.split and validation.every_n_steps go together"):
        ValidationConfig(split=0.1)
    with pytest.raises(ValueError, match=r"validation.split must be a number in \[0, 0.5\]"):
        ValidationConfig(split=0.9, every_n_steps=1)
    with pytest.raises(ValueError, match=r"validation.timesteps must be integers in \[0, 1000\)"):
        ValidationConfig(split=0.1, every_n_steps=1, timesteps=(1000,))
