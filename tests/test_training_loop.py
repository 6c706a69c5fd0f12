"""The training loop on tiny SD1.5 / SDXL models: learning, exact resume, NaN stop, full fine-tune
files that load back, caches, precisions and optimizers. CPU only, a few seconds per run."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from animekit.training.adapters.diffusers_models import load_bundle
from animekit.training.checkpointing import list_states
from animekit.training.config_toml import config_from_dict
from animekit.training.hooks import Hooks, TrainingDiverged
from animekit.training.run import train
from support.optional import requires
from support.tiny_sd import make_dataset, make_model_folder

torch.set_num_threads(1)  # 2 shared cores: more threads only spin


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-assets")
    make_model_folder(root / "sd15", "sd15", seed=0)
    make_model_folder(root / "sdxl", "sdxl", seed=0)
    make_dataset(root / "data", 4, captions=["1girl, solo, red hair", "1boy, blue sky, smile", "cat, outdoors", "1girl, hat"])
    make_dataset(root / "wide", 2, size=(128, 64), seed=1)
    return root


def make_config(assets: Path, out: Path, arch: str = "sd15", **tables):
    table = {
        "seed": 7,
        "model": {"path": str(assets / arch)},
        "dataset": {
            "folders": [{"path": str(assets / "data")}],
            "buckets": {"resolution": 64, "min_size": 64, "max_size": 128},
            "batch_size": 2,
        },
        "save": {"output_dir": str(out)},
        "schedule": {"max_steps": 4},
        "optimizer": {"lr": 1e-3},
        "network": {"rank": 4, "alpha": 4},
        "logging": {"tensorboard": False},
    }
    for name, values in tables.items():
        table[name] = {**table.get(name, {}), **values} if isinstance(values, dict) else values
    return config_from_dict(table)


def read_log(out: Path) -> list[dict]:
    with open(out / "log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_lora_loss_goes_down_on_a_tiny_dataset(assets, tmp_path):
    losses = []
    cfg = make_config(assets, tmp_path, schedule={"max_steps": 60}, optimizer={"lr": 1e-2}, network={"rank": 8, "alpha": 8},
                      save={"save_state": False})  # fmt: skip
    result = train(cfg, hooks=Hooks(on_step=lambda step, loss, rates: losses.append(loss)))
    assert result.steps == 60 and len(losses) == 60
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)
    rows = read_log(tmp_path)
    assert [int(r["step"]) for r in rows] == list(range(1, 61))
    assert float(rows[-1]["loss"]) == pytest.approx(losses[-1], rel=1e-5)
    assert float(rows[0]["lr_unet"]) == pytest.approx(1e-2)


RESUME_TABLES = dict(
    schedule={"max_steps": 6, "accumulation_steps": 2, "name": "cosine", "warmup_steps": 2},
    network={"rank": 4, "alpha": 2, "dropout": 0.1, "train_text_encoder": True},
    objective={"noise_offset": 0.05, "multires_iterations": 2, "min_snr_gamma": 5.0},
    dataset={"flip": True, "captions": {"shuffle_caption": True, "caption_dropout_rate": 0.2}},
    optimizer={"lr": 1e-3, "lr_te1": 5e-4},
    ema={"enabled": True, "decay": 0.9},
)


def test_resume_is_bitwise_identical_to_an_uninterrupted_run(assets, tmp_path):
    straight = tmp_path / "straight"
    train(make_config(assets, straight, **RESUME_TABLES))

    interrupted = tmp_path / "interrupted"
    cfg = make_config(assets, interrupted, **RESUME_TABLES)
    steps = []
    first = train(cfg, hooks=Hooks(on_step=lambda s, l, r: steps.append(s), should_stop=lambda: len(steps) >= 3))
    assert first.stopped and first.steps == 3 and first.output is None
    assert first.state.name == "state-00000003"
    second = train(cfg, resume=str(interrupted))  # the output folder: its newest state
    assert second.steps == 6 and not second.stopped

    a = load_file(straight / "state-00000006" / "trainable.safetensors")
    b = load_file(interrupted / "state-00000006" / "trainable.safetensors")
    assert set(a) == set(b) and any(k.startswith("lora_te_") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    opt_a = torch.load(straight / "state-00000006" / "optimizer.pt", weights_only=True)
    opt_b = torch.load(interrupted / "state-00000006" / "optimizer.pt", weights_only=True)
    for index, state in opt_a["state"].items():
        assert torch.equal(state["exp_avg"], opt_b["state"][index]["exp_avg"])
    final_a, final_b = load_file(straight / "animekit.safetensors"), load_file(interrupted / "animekit.safetensors")
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)  # EMA weights, fp16
    assert [r["loss"] for r in read_log(straight)] == [r["loss"] for r in read_log(interrupted)]


def test_resume_refuses_changed_settings(assets, tmp_path):
    cfg = make_config(assets, tmp_path, schedule={"max_steps": 2})
    train(cfg)
    changed = make_config(assets, tmp_path, schedule={"max_steps": 4}, network={"rank": 8, "alpha": 4})
    with pytest.raises(ValueError, match="network.rank"):
        train(changed, resume=str(tmp_path))
    longer = make_config(assets, tmp_path, schedule={"max_steps": 3})  # only the length changed: allowed
    assert train(longer, resume=str(tmp_path / "state-00000002")).steps == 3


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_save(assets, tmp_path):
    cfg = make_config(assets, tmp_path, schedule={"max_steps": 8}, save={"every_n_steps": 2})
    bundle = load_bundle(cfg.model)

    def poison(step, loss, rates):
        if step == 3:
            with torch.no_grad():
                bundle.denoiser.module.conv_in.weight.fill_(float("nan"))

    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 4.*state-00000002"):
        train(cfg, bundle=bundle, hooks=Hooks(on_step=poison))
    names = sorted(os.listdir(tmp_path))
    assert "animekit.safetensors" not in names
    assert [p.name for p in list_states(tmp_path)] == ["state-00000002"]
    assert not [n for n in names if n.endswith(".partial")]
    saved = load_file(tmp_path / "animekit-step00000002.safetensors")
    assert all(torch.isfinite(v).all() for v in saved.values())
    assert len(read_log(tmp_path)) == 3


def test_keep_last_prunes_periodic_files_and_states(assets, tmp_path):
    cfg = make_config(assets, tmp_path, schedule={"max_steps": 7}, save={"every_n_steps": 2, "keep_last": 2})
    result = train(cfg)
    files = sorted(p.name for p in tmp_path.glob("animekit*.safetensors"))
    assert files == ["animekit-step00000004.safetensors", "animekit-step00000006.safetensors", "animekit.safetensors"]
    assert [p.name for p in list_states(tmp_path)] == ["state-00000006", "state-00000007"]
    assert [p.name for p in result.saved] == [
        "animekit-step00000002.safetensors", "animekit-step00000004.safetensors",
        "animekit-step00000006.safetensors", "animekit.safetensors",
    ]  # fmt: skip


def test_epoch_saves_use_kohya_names(assets, tmp_path):
    # 4 images, batch 2 -> 2 batches per epoch; 3 epochs = 6 steps
    cfg = make_config(assets, tmp_path, schedule={"max_steps": 0, "epochs": 3}, save={"every_n_epochs": 1, "save_state": False})
    result = train(cfg)
    assert result.steps == 6
    assert sorted(p.name for p in tmp_path.glob("animekit*.safetensors")) == [
        "animekit-000001.safetensors", "animekit-000002.safetensors", "animekit.safetensors",
    ]  # fmt: skip


def test_sdxl_lora_file_has_kohya_sdxl_names_and_metadata(assets, tmp_path):
    cfg = make_config(assets, tmp_path, "sdxl", network={"rank": 4, "alpha": 2, "train_text_encoder": True},
                      dataset={"folders": [{"path": str(assets / "data")}, {"path": str(assets / "wide"), "repeats": 2}]})  # fmt: skip
    result = train(cfg)
    from animekit.training.lora_file import read_lora

    tensors, meta = read_lora(result.output)
    modules = {k.rsplit(".", 2)[0] for k in tensors if k.endswith("lora_down.weight")}
    assert "lora_unet_input_blocks_3_1_transformer_blocks_1_attn1_to_q" in modules  # tiny: 2 levels, depth 2
    assert "lora_te1_text_model_encoder_layers_0_self_attn_q_proj" in modules
    assert "lora_te2_text_model_encoder_layers_1_mlp_fc2" in modules
    assert all(m.startswith(("lora_unet_input_blocks", "lora_unet_middle_block", "lora_unet_output_blocks", "lora_te1_", "lora_te2_"))
               for m in modules)  # fmt: skip
    assert tensors["lora_unet_input_blocks_3_1_proj_in.alpha"].item() == 2.0
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert meta["ss_network_train_unet_only"] == "False"
    assert meta["ss_num_train_images"] == "8"  # 4 images + 2 images x 2 repeats
    assert meta["ss_text_encoder_lr"] == "0.001"


def test_full_finetune_writes_a_single_file_that_continues_as_stage_two(assets, tmp_path):
    stage1 = make_config(assets, tmp_path / "s1", "sdxl", network={"type": "full", "train_text_encoder": True},
                         optimizer={"type": "adafactor", "lr": 1e-3}, save={"precision": "fp32", "name": "stage1"},
                         schedule={"max_steps": 2})  # fmt: skip
    bundle = load_bundle(stage1.model)
    before = {k: v.clone() for k, v in bundle.denoiser.module.state_dict().items()}
    result = train(stage1, bundle=bundle)
    file = load_file(result.output)
    assert set(file) == set(bundle.export_checkpoint())
    assert "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight" in file
    trained = bundle.denoiser.module.state_dict()
    assert any(not torch.equal(before[k], trained[k]) for k in before)

    # stage 2: same folder for configs, weights from stage 1's file, UNet only, noise offset
    stage2 = make_config(assets, tmp_path / "s2", "sdxl", model={"checkpoint": str(result.output)},
                         network={"type": "full"}, objective={"noise_offset": 0.0357}, schedule={"max_steps": 1},
                         optimizer={"lr": 0.0}, cache={"text_encoder_outputs": True})  # fmt: skip
    loaded = load_bundle(stage2.model)
    for key, value in loaded.denoiser.module.state_dict().items():
        assert torch.equal(value, trained[key].float()), key
    te2 = loaded.text_encoders.module("te2").state_dict()
    for key, value in bundle.text_encoders.module("te2").state_dict().items():
        assert torch.equal(te2[key], value.float()), key
    assert train(stage2, bundle=loaded).steps == 1


def test_continue_from_an_existing_lora(assets, tmp_path):
    first = train(make_config(assets, tmp_path / "a", network={"rank": 4, "alpha": 2}, schedule={"max_steps": 2}))
    cont = make_config(assets, tmp_path / "b", network={"rank": 16, "alpha": 16, "init_weights": str(first.output)},
                       optimizer={"lr": 0.0, "weight_decay": 0.0}, schedule={"max_steps": 1}, save={"precision": "fp32"})  # fmt: skip
    second = train(cont)
    a, b = load_file(first.output), load_file(second.output)
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key].float(), b[key]), key  # rank / alpha from the file, weights unchanged at lr 0


@pytest.mark.parametrize(
    "tables",
    [
        {"optimizer": {"type": "adafactor", "lr": 1e-3}},
        pytest.param({"optimizer": {"type": "prodigy", "lr": 1.0}}, marks=requires("prodigyopt")),
        {"precision": {"mixed": "bf16"}, "ema": {"enabled": True}},
        {"precision": {"mixed": "fp16"}},
        {"precision": {"mixed": "bf16", "full_bf16": True}, "network": {"type": "full"}},
        {"precision": {"gradient_checkpointing": True}, "network": {"rank": 4, "alpha": 4, "conv_rank": 2, "train_text_encoder": True}},
        {"cache": {"latents": "memory", "text_encoder_outputs": True}, "dataset": {"captions": {"shuffle_caption": True}}},
        {"cache": {"latents": "disk"}},
    ],
    ids=["adafactor", "prodigy", "bf16-ema", "fp16", "full-bf16", "checkpointing-conv-te", "caches", "disk-cache"],
)
def test_settings_run_and_write_finite_weights(assets, tmp_path, tables):
    result = train(make_config(assets, tmp_path, "sdxl", schedule={"max_steps": 2}, **tables))
    assert result.steps == 2 and result.last_loss is not None and result.last_loss == result.last_loss
    assert all(torch.isfinite(v.float()).all() for v in load_file(result.output).values())
    if tables.get("cache", {}).get("latents") == "disk":
        assert len(list((tmp_path / "latent_cache").glob("*.safetensors"))) == 4


def test_work_dir_keeps_states_and_logs_out_of_the_model_folder(assets, tmp_path):
    loras, work = tmp_path / "loras", tmp_path / "work"
    cfg = make_config(assets, loras, save={"work_dir": str(work), "every_n_steps": 2, "name": "mine"}, schedule={"max_steps": 3})
    train(cfg)
    assert sorted(p.name for p in loras.iterdir()) == ["mine-step00000002.safetensors", "mine.safetensors"]
    assert sorted(p.name for p in work.iterdir()) == ["log.csv", "state-00000002", "state-00000003"]
    resumed = make_config(assets, loras, save={"work_dir": str(work), "every_n_steps": 2, "name": "mine"}, schedule={"max_steps": 4})
    assert train(resumed, resume=str(work)).steps == 4


def test_logged_learning_rates_follow_the_warmup(assets, tmp_path):
    cfg = make_config(assets, tmp_path, schedule={"max_steps": 4, "name": "constant_with_warmup", "warmup_steps": 2},
                      network={"rank": 4, "alpha": 4, "train_text_encoder": True}, optimizer={"lr": 1e-3, "lr_te1": 4e-4},
                      save={"save_state": False})  # fmt: skip
    train(cfg)
    rows = read_log(tmp_path)
    assert [float(r["lr_unet"]) for r in rows] == [0.0, 5e-4, 1e-3, 1e-3]  # diffusers' warmup: step / warmup_steps
    assert [float(r["lr_te1"]) for r in rows] == [0.0, 2e-4, 4e-4, 4e-4]
    assert all(r["lr_te2"] == "" for r in rows)


def test_adamw8bit_needs_a_gpu():
    from animekit.training.config import OptimizerConfig
    from animekit.training.optim import build_optimizer

    params = {"unet": [torch.nn.Parameter(torch.zeros(2))]}
    with pytest.raises(ValueError, match="adamw8bit' needs a CUDA GPU"):
        build_optimizer(OptimizerConfig(type="adamw8bit"), params, torch.device("cpu"))
    with pytest.raises(ValueError, match="optimizer.args does not fit AdamW"):
        build_optimizer(OptimizerConfig(args={"nesterov": True}), params, torch.device("cpu"))


def test_v_prediction_with_zero_terminal_snr(assets, tmp_path):
    make_model_folder(tmp_path / "vpred", "sdxl", prediction="v_prediction")
    cfg = make_config(assets, tmp_path / "out", "sdxl", model={"path": str(tmp_path / "vpred")},
                      objective={"zero_terminal_snr": True, "min_snr_gamma": 5.0}, schedule={"max_steps": 2})  # fmt: skip
    result = train(cfg)
    assert result.last_loss is not None and torch.isfinite(torch.tensor(result.last_loss))
    from animekit.training.lora_file import read_lora

    _, meta = read_lora(result.output)
    assert meta["modelspec.prediction_type"] == "v"
    assert meta["ss_v_parameterization"] == "True" and meta["ss_zero_terminal_snr"] == "True"

    eps = make_config(assets, tmp_path / "eps", "sdxl", objective={"zero_terminal_snr": True})
    with pytest.raises(ValueError, match="zero_terminal_snr needs a v-prediction model"):
        train(eps)
    forced = make_config(assets, tmp_path / "forced", "sdxl", model={"prediction": "v_prediction"}, schedule={"max_steps": 1})
    assert train(forced).steps == 1  # model.prediction overrides the folder's scheduler config
