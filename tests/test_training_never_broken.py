"""The trainer never writes a broken model: weights are checked before every save (the stop names
the last good save), a damaged resume state gets a clear error naming the file, and resuming from an
output folder whose newest state is damaged falls back to the newest intact one and says so."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import load_file

from animekit.training.adapters.diffusers_models import load_bundle
from animekit.training.checkpointing import DamagedState, list_states, load_state
from animekit.training.finite import first_non_finite
from animekit.training.hooks import Hooks, TrainingDiverged
from animekit.training.run import train
from test_training_loop import assets, make_config  # noqa: F401 - the tiny model and dataset fixture

torch.set_num_threads(1)


def test_first_non_finite_names_the_tensor_and_counts():
    assert first_non_finite({"a": torch.ones(3), "steps": torch.tensor([1, 2])}) is None
    bad = torch.tensor([1.0, float("inf"), float("nan"), float("-inf")])
    assert first_non_finite({"a": torch.ones(2), "b": {"c": bad}}) == "b.c: 2 inf / 1 NaN values"


def test_weights_that_became_inf_are_never_saved(assets, tmp_path):
    cfg = make_config(assets, tmp_path, schedule={"max_steps": 6}, save={"every_n_steps": 2},
                      network={"type": "full"}, optimizer={"lr": 1e-5})
    bundle = load_bundle(cfg.model)

    def poison(step, loss, rates):
        if step == 4:  # after step 4's update, before its periodic save
            with torch.no_grad():
                bundle.denoiser.module.conv_in.weight[0].fill_(float("inf"))

    with pytest.raises(TrainingDiverged, match=r"non-finite \(unet\.conv_in\.weight: \d+ inf / 0 NaN values\) by step 4.*"
                                               r"animekit-step00000002\.safetensors, state-00000002"):
        train(cfg, bundle=bundle, hooks=Hooks(on_step=poison))
    names = sorted(os.listdir(tmp_path))
    assert "animekit-step00000004.safetensors" not in names and "animekit.safetensors" not in names
    assert [p.name for p in list_states(tmp_path)] == ["state-00000002"]
    saved = load_file(tmp_path / "animekit-step00000002.safetensors")
    assert all(torch.isfinite(v).all() for v in saved.values())


@pytest.fixture
def two_states(assets, tmp_path):
    cfg = make_config(assets, tmp_path, schedule={"max_steps": 4}, save={"every_n_steps": 2, "keep_last": 5})
    train(cfg)
    assert [p.name for p in list_states(tmp_path)] == ["state-00000002", "state-00000004"]
    newest = tmp_path / "state-00000004" / "trainable.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])  # a half-copied file
    return cfg, tmp_path


def test_damaged_state_given_directly_is_named(two_states):
    _, out = two_states
    with pytest.raises(DamagedState, match=r"state-00000004' is damaged: trainable.safetensors cannot be read"):
        load_state(out / "state-00000004", 0)


def test_resume_from_the_output_folder_falls_back_to_the_newest_intact_state(two_states):
    cfg, out = two_states
    with pytest.warns(UserWarning, match=r"trainable.safetensors cannot be read.*resuming from the newest intact state instead: state-00000002"):
        state = load_state(out, 0)
    assert state.step == 2
    with pytest.warns(UserWarning, match="state-00000002"):
        result = train(cfg, resume=str(out))
    assert result.steps == 4


def test_cli_reports_a_damaged_state_without_a_traceback(tmp_path, capsys):
    from animekit.__main__ import main
    from test_training_cli import make_dataset, make_model_folder, write_config

    make_model_folder(tmp_path / "model", "sd15")
    make_dataset(tmp_path / "data", 4)
    config = write_config(tmp_path, 2)
    assert main(["train", str(config)]) == 0
    state = tmp_path / "out" / "state-00000002"
    (state / "optimizer.pt").write_bytes(b"not a torch file")
    capsys.readouterr()
    code = main(["train", str(config), "--resume", str(state)])
    err = capsys.readouterr().err
    assert code == 2 and "is damaged: optimizer.pt cannot be read" in err and "Traceback" not in err


def test_a_full_finetune_never_overwrites_its_own_base_file(tmp_path):
    from animekit.training.config_toml import config_from_dict
    from animekit.training.run import train as run_train

    base = tmp_path / "out" / "model.safetensors"
    base.parent.mkdir()
    base.write_bytes(b"base weights")
    cfg = config_from_dict({"model": {"path": str(base)}, "network": {"type": "full"},
                            "dataset": {"folders": [{"path": str(tmp_path)}]},
                            "save": {"output_dir": str(base.parent), "name": "model"}})
    with pytest.raises(ValueError, match=r"model.safetensors' is the input model.path; inputs are never overwritten"):
        run_train(cfg)
    assert base.read_bytes() == b"base weights"


def test_a_lora_continued_from_a_periodic_save_of_the_same_run_is_refused(tmp_path):
    from animekit.training.config_toml import config_from_dict
    from animekit.training.run import train as run_train

    old = tmp_path / "out" / "animekit-step00000100.safetensors"
    old.parent.mkdir()
    old.write_bytes(b"lora")
    cfg = config_from_dict({"model": {"path": str(tmp_path / "model")}, "network": {"init_weights": str(old)},
                            "dataset": {"folders": [{"path": str(tmp_path)}]}, "save": {"output_dir": str(old.parent)}})
    with pytest.raises(ValueError, match="network.init_weights .* would be pruned by save.keep_last"):
        run_train(cfg)
    assert old.read_bytes() == b"lora"
