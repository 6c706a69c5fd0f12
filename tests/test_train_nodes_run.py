"""The trainer nodes through ComfyUI's real executor, on tiny real MODEL / CLIP / VAE objects.

What a user relies on: the saved LoRA loads with the stock LoraLoader with every key applied and
computes what the trainer trained; the checkpoint loads back; Cancel leaves a resumable state and
no partial file, and resuming gives the same file as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import logging

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from support.comfy_models import tiny_models
from support.executor import execute_prompt, run_prompt
from support.train_nodes import add_sampling, comfy_prediction, literal, pack, sdxl_adm, train_prompt, write_dataset

pytestmark = pytest.mark.host
CAPTION = "1girl, solo, tag0"


@contextlib.contextmanager
def warnings_logged():
    """Root-logger warnings (comfy.lora reports unmapped keys as 'lora key not loaded: ...')."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield records
    finally:
        root.removeHandler(handler)


def trained_reference(host, arch, state_file, rank, alpha, conv_rank, train_te, x, t, sizes):
    """The trainer's own model at the saved state: fresh models + its LoRA network hooked on (float32)."""
    adapter = pack(host, "nodes.training.adapter")
    lora_network = pack(host, "training.lora_network")
    lora_file = pack(host, "training.lora_file")
    models = tiny_models(arch)
    bundle = adapter.build_bundle(models.model, models.clip, models.vae)
    targets = bundle.denoiser.lora_targets(include_conv=conv_rank > 0)
    if train_te:
        targets += [t for part in bundle.text_encoders.parts for t in bundle.text_encoders.lora_targets(part)]
    network = lora_network.build_network(targets, lora_network.PREFIXES[arch], rank, alpha, conv_rank, 1.0, 0.0)
    assert lora_file.load_into_network(network, load_file(str(state_file)), "state") == []
    network.attach()
    with torch.no_grad():
        text = bundle.text_encoders.encode([CAPTION] * x.shape[0], torch.device("cpu"))
        return bundle.denoiser(x, t, text, sizes)


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_lora_loads_with_loraloader_and_reproduces_the_trained_model(comfy_host, comfy_folders, arch):
    import nodes

    write_dataset(comfy_folders.input / "chars")
    rank, alpha, conv_rank = 4, 2.0, 2
    prompt = train_prompt(
        "AnimeKitTrainLora", arch, "chars", filename="chars/alice", steps=3, train_text_encoder=True, rank=rank,
        alpha=alpha, conv_rank=conv_rank, sample_every_n_steps=2 if arch == "sd15" else 0, sample_prompts="1girl, solo",
    )  # fmt: skip
    result = run_prompt(comfy_host, add_sampling(prompt))

    # the file is where LoraLoader looks, under the name the node reports
    assert result.output("train", 2) == "chars/alice.safetensors"
    path = comfy_folders.loras / "chars" / "alice.safetensors"
    assert path.is_file()
    assert "chars/alice.safetensors" in nodes.folder_paths.get_filename_list("loras")
    # the sampler downstream ran on the trained model in the same workflow
    image = result.output("decode", 0)
    assert image.shape == (1, 64, 64, 3) and not image.isnan().any()
    # progress: a bar per phase and a text line with the loss
    texts = [data[4 + int.from_bytes(data[:4], "big"):].decode() for event, data in result.messages if event == 3]
    assert any(line.startswith("AnimeKit Train LoRA: training 3/3, epoch") and "loss" in line for line in texts)
    assert texts[0] == "AnimeKit Train LoRA: caching latents 0/3"  # the slow phases show from their first moment
    shown = result.ui["train"]["images"]
    assert len(shown) == (2 if arch == "sd15" else 1)  # sample image(s) of step 2 and the loss graph
    assert result.output("train", 3).shape == (1, 384, 768, 3)

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
        keys = list(handle.keys())
    assert meta["ss_network_dim"] == str(rank) and meta["ss_network_alpha"] == str(alpha)
    assert meta["ss_noise_offset"] == ("0.05" if arch == "sd15" else "0.0357")  # the auto noise offset per family
    assert meta["ss_min_snr_gamma"] == "5.0" and meta["ss_steps"] == "3"
    assert meta["ss_network_train_unet_only"] == "False" and meta["ss_text_encoder_lr"] == "0.001"
    assert meta["modelspec.architecture"] == ("stable-diffusion-v1/lora" if arch == "sd15" else "stable-diffusion-xl-v1-base/lora")
    assert json.loads(meta["ss_tag_frequency"])["chars"]["1girl"] == 3
    assert any(k.startswith("lora_te") for k in keys) and any(k.startswith("lora_unet") for k in keys)

    # the stock LoraLoader on the original models maps every key of the file
    models = tiny_models(arch)
    with warnings_logged() as warned:
        model, clip = nodes.LoraLoader().load_lora(models.model, models.clip, "chars/alice.safetensors", 1.0, 1.0)
    assert not [r.getMessage() for r in warned if "lora key not loaded" in r.getMessage()]
    modules = {k.rsplit(".", 2)[0] for k in keys if k.endswith(".lora_down.weight")}
    assert len(model.patches) == len([m for m in modules if m.startswith("lora_unet")])
    assert len(clip.patcher.patches) == len([m for m in modules if m.startswith("lora_te")])

    # ... and computes what the trainer trained (its float32 network at the last step)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([40, 600])
    protocols = pack(comfy_host, "training.protocols")
    size = torch.tensor([[256, 256], [256, 256]])
    sizes = protocols.SizeConditioning(size, torch.zeros_like(size), size) if arch == "sdxl" else None
    state = comfy_folders.output / "animekit_training" / "lora" / "chars" / "alice" / "state-00000003" / "trainable.safetensors"
    ours = trained_reference(comfy_host, arch, state, rank, alpha, conv_rank, True, x, t, sizes)
    cond, pooled = clip.encode_from_tokens(clip.tokenize(literal(CAPTION)), return_pooled=True)
    context = cond.repeat(2, 1, 1)
    y = sdxl_adm(model, pooled.repeat(2, 1), sizes) if arch == "sdxl" else None
    theirs = comfy_prediction(model, x, t, context, y)
    assert (ours - theirs).abs().max() < 1e-3
    # the LoRA changed the model (so the comparison above is not trivially true)
    plain = comfy_prediction(tiny_models(arch).model, x, t, context, y)
    assert (plain - theirs).abs().max() > 1e-3


def interrupt_at(monkeypatch, host, step: int):
    """Press Cancel (as the UI does) right after optimizer step `step`."""
    import comfy.model_management

    monitor = pack(host, "nodes.training.progress").TrainingMonitor
    original = monitor.on_step

    def on_step(self, done, loss, rates):
        original(self, done, loss, rates)
        if done == step:
            comfy.model_management.interrupt_current_processing(True)

    monkeypatch.setattr(monitor, "on_step", on_step)


def test_cancel_saves_a_resumable_state_and_resume_matches_an_uninterrupted_run(comfy_host, comfy_folders, monkeypatch):
    write_dataset(comfy_folders.input / "chars")
    settings = dict(steps=4, rank=2, alpha=2.0, training_seed=3)
    run_prompt(comfy_host, train_prompt("AnimeKitTrainLora", "sd15", "chars", filename="whole", **settings))

    with monkeypatch.context() as patch:
        interrupt_at(patch, comfy_host, 2)
        cut = execute_prompt(comfy_host, train_prompt("AnimeKitTrainLora", "sd15", "chars", filename="cut", **settings))
    assert not cut.success and any(event == "execution_interrupted" for event, _ in cut.messages)
    work = comfy_folders.output / "animekit_training" / "lora" / "cut"
    assert sorted(p.name for p in work.iterdir() if p.name.startswith("state-")) == ["state-00000002"]
    assert not (comfy_folders.loras / "cut.safetensors").exists()
    assert not list(comfy_folders.root.rglob("*.partial")) and not list(comfy_folders.root.rglob(".*.partial"))

    resumed = run_prompt(comfy_host, train_prompt("AnimeKitTrainLora", "sd15", "chars", filename="cut", resume=True, **settings))
    assert resumed.output("train", 2) == "cut.safetensors"
    whole, cut_file = load_file(str(comfy_folders.loras / "whole.safetensors")), load_file(str(comfy_folders.loras / "cut.safetensors"))
    assert whole.keys() == cut_file.keys()
    assert all(torch.equal(whole[k], cut_file[k]) for k in whole)  # 2 + 2 steps == 4 steps, bit for bit
    rows = (work / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]


def test_checkpoint_node_writes_a_loadable_checkpoint_and_leaves_its_inputs(comfy_host, comfy_folders):
    write_dataset(comfy_folders.input / "chars", count=2)
    prompt = train_prompt("AnimeKitTrainCheckpoint", "sd15", "chars", filename="stage1", steps=2, unet_lr=1e-3,
                          train_text_encoder=True, optimizer="adamw")  # fmt: skip
    result = run_prompt(comfy_host, add_sampling(prompt))
    assert result.output("train", 2) == "stage1.safetensors"
    path = comfy_folders.output / "checkpoints" / "stage1.safetensors"
    trained_model, trained_clip = result.output("train", 0), result.output("train", 1)
    original = tiny_models("sd15")
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
        keys = set(handle.keys())
    assert meta["modelspec.architecture"] == "stable-diffusion-v1" and meta["ss_steps"] == "2"
    # the single-file layout ComfyUI saves: its own state_dict_for_saving keys
    expected = set(original.model.model.state_dict_for_saving(original.clip.get_sd(), original.vae.get_sd()))
    assert keys == expected
    saved = load_file(str(path))
    unet = {k[len("model.diffusion_model."):]: v for k, v in saved.items() if k.startswith("model.diffusion_model.")}
    for name, param in trained_model.model.diffusion_model.named_parameters():
        torch.testing.assert_close(unet[name].float(), param.detach().float(), atol=2e-3, rtol=2e-3)  # fp16 file
    changed = [n for n, p in trained_model.model.diffusion_model.named_parameters()
               if not torch.equal(p, dict(original.model.model.diffusion_model.named_parameters())[n])]  # fmt: skip
    assert changed  # it trained ...
    # ... a copy: the models the loader node produced are untouched (rebuilt from the same seed they are equal)
    prompt_models = result.output("models", 0)
    for (name, a), b in zip(prompt_models.model.diffusion_model.named_parameters(), original.model.model.diffusion_model.parameters()):
        assert torch.equal(a, b), name
    assert trained_clip.cond_stage_model is not result.output("models", 1).cond_stage_model
    assert result.output("decode", 0).shape == (1, 64, 64, 3)
    # a later stage can continue from it (listed under output/ for continue_from)
    assert "output/stage1.safetensors" in pack(comfy_host, "nodes.training.files").checkpoint_choices()


def test_continue_from_starts_at_the_chosen_loras_weights(comfy_host, comfy_folders):
    write_dataset(comfy_folders.input / "chars", count=1)
    run_prompt(comfy_host, train_prompt("AnimeKitTrainLora", "sd15", "chars", filename="first", steps=1, rank=2, alpha=2.0))
    # learning rate 0: the second run's LoRA is exactly the one it started from
    run_prompt(comfy_host, train_prompt("AnimeKitTrainLora", "sd15", "chars", filename="second", steps=1, rank=2,
                                        alpha=2.0, unet_lr=0.0, continue_from="first.safetensors"))  # fmt: skip
    first, second = load_file(str(comfy_folders.loras / "first.safetensors")), load_file(str(comfy_folders.loras / "second.safetensors"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert any(first[k].abs().sum() > 0 for k in first if k.endswith("lora_up.weight"))  # it had learned something


# --------------------------------------------------------------------------------- bad input


def run_values(host, folders, **changes):
    """Call the LoRA node's run directly (no executor): inputs as ComfyUI would pass them."""
    from support.train_nodes import DATASET_DEFAULTS, LORA_DEFAULTS

    dataset_node = pack(host, "nodes.training.nodes").AnimeKitDataset
    spec = changes.pop("dataset", None)
    if spec is None:
        spec = dataset_node.execute(**dict(DATASET_DEFAULTS, folder="chars")).args[0]
    models = changes.pop("models", None) or tiny_models("sd15")
    values = {**LORA_DEFAULTS, "filename": "bad", "model": models.model, "clip": models.clip, "vae": models.vae, "dataset": spec, **changes}
    return pack(host, "nodes.training.run").run_training(values, lora=True, node_id=None, prompt=None, title="test")


def dataset_error(host, folder: str, **changes) -> str:
    from support.train_nodes import DATASET_DEFAULTS

    node = pack(host, "nodes.training.nodes").AnimeKitDataset
    with pytest.raises(ValueError) as info:
        node.execute(**dict(DATASET_DEFAULTS, folder=folder, **changes))
    return str(info.value)


def test_bad_datasets_are_refused_naming_the_folder(comfy_host, comfy_folders):
    from support.training_images import write_image

    assert dataset_error(comfy_host, "") .startswith("folder: empty")
    assert dataset_error(comfy_host, "missing").startswith("folder: ") and "does not exist" in dataset_error(comfy_host, "missing")
    assert "escapes the folder" in dataset_error(comfy_host, "../outside")
    (comfy_folders.input / "empty").mkdir()
    assert dataset_error(comfy_host, "empty").startswith("folder: no images (png, jpg, webp, bmp) in")
    write_image(comfy_folders.input / "nocaps" / "a.png", caption=None)
    assert dataset_error(comfy_host, "nocaps").startswith("folder: none of the 1 images in") and "a.txt" in dataset_error(comfy_host, "nocaps")
    write_image(comfy_folders.input / "small" / "a.png", size=(100, 90))
    message = dataset_error(comfy_host, "small", resolution=512)
    assert message.startswith("folder: every image is smaller than the smallest bucket side (256 px)") and "100x90" in message


def test_dataset_preview_reports_what_was_found(comfy_host, comfy_folders):
    from support.train_nodes import DATASET_DEFAULTS
    from support.training_images import write_image

    folder = comfy_folders.input / "mix"
    write_image(folder / "a.png", size=(256, 256), caption="1girl, solo, smile")
    write_image(folder / "b.png", size=(384, 256), caption="1girl, outdoors")
    write_image(folder / "c.png", size=(256, 256), caption=None)
    write_image(folder / "d.png", size=(64, 64), caption="1girl")
    write_image(folder / "3_extra" / "e.png", size=(256, 384), caption="1boy, solo")
    node = pack(comfy_host, "nodes.training.nodes").AnimeKitDataset
    out = node.execute(**dict(DATASET_DEFAULTS, folder="mix", shuffle_caption=False, caption_dropout_rate=0.0))
    spec, preview = out.args
    assert len(spec.index.records) == 3 and sum(r.repeats for r in spec.index.records) == 5
    lines = preview.splitlines()
    assert lines[0] == f"3 images in {folder} (5 samples per epoch with repeats)"
    assert lines[1] == "folders: 3_extra (1 x 3), mix (2 x 1)"
    assert lines[2] == "buckets (resolution 256, 128..512, step 64): 192x320: 3, 256x256: 1, 320x192: 1"
    assert lines[3] == "top tags: 1girl (2), solo (2), smile (1), outdoors (1), 1boy (1)"
    assert lines[4] == "skipped 2: c.png: missing caption; d.png: too small: 64x64 is under the smallest bucket side 128"
    assert lines[5] == "caption as trained (one draw): '1girl, solo, smile'"


def test_bad_settings_are_refused_before_any_work(comfy_host, comfy_folders):
    import comfy.model_patcher
    import comfy.supported_models as sm

    from support.comfy_models import TINY_UNET
    from support.train_nodes import DATASET_DEFAULTS

    write_dataset(comfy_folders.input / "chars", count=1)
    work = comfy_folders.output / "animekit_training"
    # the trainer config's own rules, in this node's input names (training/flat_settings.py)
    with pytest.raises(ValueError, match=r"^cache_text_encoder_outputs caches the outputs of frozen text encoders, but "
                       r"train_text_encoder is true; turn one of them off$"):
        run_values(comfy_host, comfy_folders, cache_text_encoder_outputs=True, train_text_encoder=True)
    with pytest.raises(ValueError, match=r"^sample_every_n_steps is set but sample_prompts is empty$"):
        run_values(comfy_host, comfy_folders, sample_every_n_steps=5)
    with pytest.raises(ValueError, match=r"^optimizer must be one of 'adamw', 'adamw8bit', 'adafactor', 'prodigy', got 'sgd'$"):
        run_values(comfy_host, comfy_folders, optimizer="sgd")  # ComfyUI 0.3.64 does not check V3 combo values
    with pytest.raises(ValueError, match=r"^mixed_precision must be one of 'no', 'fp16', 'bf16', got 'fp8'$"):
        run_values(comfy_host, comfy_folders, mixed_precision="fp8")
    crop = pack(comfy_host, "nodes.training.nodes").AnimeKitDataset.execute(**dict(DATASET_DEFAULTS, folder="chars", random_crop=True))
    with pytest.raises(ValueError, match=r"^cache_latents with random_crop would freeze one crop per image; turn off "
                       r"random_crop or set cache_latents = 'none'$"):
        run_values(comfy_host, comfy_folders, dataset=crop.args[0])
    with pytest.raises(ValueError, match=r"^filename: '\.\./x' is not a plain file name"):
        run_values(comfy_host, comfy_folders, filename="../x")
    with pytest.raises(ValueError, match=r"^continue_from: no LoRA named 'nope.safetensors'"):
        run_values(comfy_host, comfy_folders, continue_from="nope.safetensors")
    with pytest.raises(ValueError, match=r"^rank must be a positive integer, got 0"):
        run_values(comfy_host, comfy_folders, rank=0)  # the trainer's own check, in this node's words
    config = sm.SD20(dict(TINY_UNET["sd15"]))
    config.unet_config.update({"num_heads": 2, "num_head_channels": -1})
    sd20 = comfy.model_patcher.ModelPatcher(config.get_model({}), torch.device("cpu"), torch.device("cpu"))
    models = tiny_models("sd15")
    models.model = sd20
    with pytest.raises(ValueError, match=r"^model: the AnimeKit trainer supports SD1.5 and SDXL"):
        run_values(comfy_host, comfy_folders, models=models)
    assert not work.exists()  # nothing was started for any of them


def test_settings_that_do_not_fit_the_gpu_are_refused_with_advice(comfy_host, comfy_folders, monkeypatch):
    import comfy.model_management as mm

    write_dataset(comfy_folders.input / "chars", count=1)
    monkeypatch.setattr(mm, "get_torch_device", lambda: torch.device("cuda", 0))
    free = 1024**3 // 4
    monkeypatch.setattr(mm, "get_free_memory", lambda dev=None, torch_free_too=False: (free, free) if torch_free_too else free)
    monkeypatch.setattr(mm, "get_torch_device_name", lambda device: "cuda:0 Test GPU")
    with pytest.raises(ValueError) as info:
        run_values(comfy_host, comfy_folders, mixed_precision="bf16", gradient_checkpointing=False, batch_size=2)
    message = str(info.value)
    assert "but cuda:0 Test GPU has 0.2 GiB free. Change: gradient_checkpointing = on" in message
    assert "batch_size = 1 with gradient_accumulation = 2" in message
    assert not (comfy_folders.output / "animekit_training").exists()
