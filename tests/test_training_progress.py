"""Every slow phase of a run reports counts from its first moment: scanning the dataset, loading the
model part by part, caching latents and text-encoder outputs, training (issue 15). Tiny models, CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from animekit.__main__ import main
from animekit.training.config_toml import config_from_dict
from animekit.training.hooks import PHASES, Hooks, Progress
from animekit.training.run import train
from support.tiny_sd import make_dataset, make_model_folder

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress-assets")
    make_model_folder(root / "sd15", "sd15", seed=0)
    make_dataset(root / "data", 3, captions=["1girl, solo", "1boy, smile", "cat"])
    return root


def table(assets: Path, out: Path, **extra) -> dict:
    return {
        "seed": 3,
        "model": {"path": str(assets / "sd15")},
        "dataset": {"folders": [{"path": str(assets / "data")}], "buckets": {"resolution": 64, "min_size": 64, "max_size": 128},
                    "batch_size": 1, "flip": False},
        "save": {"output_dir": str(out)},
        "schedule": {"max_steps": 2},
        "network": {"rank": 2, "alpha": 2},
        "cache": {"latents": "memory", "text_encoder_outputs": True},
        "logging": {"tensorboard": False},
        **extra,
    }  # fmt: skip


def phases_of(reports: list[Progress]) -> list[str]:
    seen: list[str] = []
    for p in reports:
        if not seen or seen[-1] != p.phase:
            seen.append(p.phase)
    return seen


def test_every_phase_reports_from_zero_to_its_total_in_order(assets, tmp_path):
    reports: list[Progress] = []
    train(config_from_dict(table(assets, tmp_path / "out")), hooks=Hooks(progress=reports.append))

    assert phases_of(reports) == ["scan_dataset", "load_model", "cache_latents", "cache_text", "train"]
    assert list(PHASES) == phases_of(reports)  # every phase the labels know happens in a cached run
    by_phase = {phase: [(p.done, p.total, p.item) for p in reports if p.phase == phase] for phase in PHASES}

    assert by_phase["scan_dataset"] == [(0, 3, ""), (1, 3, ""), (2, 3, ""), (3, 3, "")]
    # SD1.5 diffusers folder: libraries, tokenizers, unet, one text encoder, vae; each announced as it starts
    assert by_phase["load_model"] == [
        (0, 5, "libraries"), (1, 5, "tokenizers"), (2, 5, "unet"), (3, 5, "text_encoder"), (4, 5, "vae"), (5, 5, ""),
    ]  # fmt: skip
    # 3 images, no flip: 3 latents, one VAE call each (vae_batch_size 1); the bar starts at 0 before the first
    assert by_phase["cache_latents"] == [(0, 3, ""), (1, 3, ""), (2, 3, ""), (3, 3, "")]
    # 3 captions without shuffle or dropout: one variant each, encoded in one batch
    assert by_phase["cache_text"] == [(0, 3, ""), (3, 3, "")]
    assert [d for d, t, _ in by_phase["train"]][-1] == 2


def test_progress_label_names_the_part_being_loaded():
    assert Progress("load_model", 2, 5, item="unet").label == "loading the model (unet)"
    assert Progress("cache_text", 0, 3).label == "caching text-encoder outputs"


CLI_CONFIG = """
seed = 3
[model]
path = '{model}'
[network]
rank = 2
alpha = 2
[schedule]
max_steps = 2
[save]
output_dir = '{out}'
[cache]
latents = "memory"
text_encoder_outputs = true
[logging]
tensorboard = false
[dataset]
batch_size = 1
flip = false
[dataset.buckets]
resolution = 64
min_size = 64
max_size = 128
[[dataset.folders]]
path = '{data}'
"""


def test_cli_shows_a_line_and_a_bar_with_counts_for_each_phase(assets, tmp_path, capsys):
    config = tmp_path / "train.toml"
    config.write_text(CLI_CONFIG.format(model=assets / "sd15", data=assets / "data", out=tmp_path / "out"), encoding="utf-8")
    assert main(["train", str(config)]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"animekit train: reading {config}\n")
    for shown in ("scanning the dataset", "3/3", "loading the model", "5/5", "caching latents", "caching text-encoder outputs", "training", "2/2"):
        assert shown in err, shown
    # the bars come in the order the work happens
    order = [err.index(label) for label in ("scanning the dataset", "loading the model", "caching latents", "caching text-encoder outputs", "training:")]
    assert order == sorted(order)
