"""Each bundled workflow executes end to end on CPU (slow host tier).

The workflow file goes through support.workflow_ui_to_api into ComfyUI's real executor, with
random-weight checkpoints of the real SD1.5 layout (written by support.comfy_models; ComfyUI
detects them as SD1.5) and only sizes and step counts made small (support.workflow_run).

The Animagine XL 3.0 workflow runs on the SD1.5-layout checkpoint too: its graph is
architecture-agnostic (loader -> prompt encode -> sampler -> decode, hires pass), and an
SDXL-layout file is ~7 GB and needs ~14 GB of RAM on CPU. What is specific to Animagine (its tag
order, special tags, negative prompt, sizes) comes from the AnimeKit nodes' profile, checked here
in the texts the prompt node produced.

The trainer workflows train on tiny synthetic datasets (a few 256 px noise images) for two steps;
the two-stage fine-tune (two full SD1.5 fine-tunes in fp32) needs about 20 GB of free RAM and
skips with that reason otherwise. The whole module takes about 15 minutes on 2 CPU cores.

Run one heavy test at a time: ANIMEKIT_SLOW=1 COMFYUI_PATH=... pytest tests/test_workflows_run.py
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from support.comfy_models import write_full_checkpoint
from support.executor import configure_folders, run_prompt
from support.training_images import noise, write_image
from support.workflow_files import WORKFLOWS_DIR, load
from support.workflow_run import Shrink, nodes_titled, saved_images, shrink_prompt
from support.workflow_ui_to_api import ui_to_api
from workflows.nodeinfo import LiveCatalog
from workflows.specs import (
    ANIMAGINE_CHECKPOINT,
    FINETUNE_BASE,
    LORA_DATASET,
    LORA_TRIGGER,
    SD15_CHECKPOINT,
    SD15_MERGE_A,
    SD15_MERGE_B,
    STAGE1_DATASET,
    STAGE2_DATASET,
)

pytestmark = [pytest.mark.host, pytest.mark.slow]

SHRINK = Shrink(steps=2, width=64, height=64, hires_width=128, hires_height=128)
# The seed cards' negative prompts (AnimeDiffusion; Animagine XL 3.0 adds nsfw and artist name).
SD15_CARD_NEGATIVE = (
    "lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, "
    "worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry"
)
ANIMAGINE_CARD_NEGATIVE = (
    "nsfw, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, "
    "worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry, artist name"
)


@pytest.fixture(autouse=True)
def _unloaded_models(comfy_host):
    """Each run starts with no model held from the previous one (ComfyUI keeps them loaded)."""
    import gc

    import comfy.model_management

    comfy.model_management.unload_all_models()
    gc.collect()
    comfy.model_management.soft_empty_cache()


@pytest.fixture(scope="module")
def sd15_folders(comfy_host, tmp_path_factory):
    """ComfyUI folders with one random-weight SD1.5 checkpoint under the workflows' model names.

    Every model file made in them (2 GB each) is deleted afterwards, pass or fail.
    """
    with configure_folders(tmp_path_factory.mktemp("comfy-run")) as folders:
        try:
            checkpoint = write_full_checkpoint(folders.checkpoints / SD15_CHECKPOINT, "sd15", seed=1)
            (folders.checkpoints / ANIMAGINE_CHECKPOINT).symlink_to(checkpoint)
            yield folders
        finally:
            for path in folders.root.rglob("*.safetensors"):
                path.unlink()


def _run(comfy_host, name: str):
    workflow = load(WORKFLOWS_DIR / f"{name}.json")
    prompt = shrink_prompt(ui_to_api(workflow, LiveCatalog(comfy_host)), SHRINK)
    return workflow, prompt, run_prompt(comfy_host, prompt)


ANY_TITLE = object()
FINETUNE_RAM_GB = 20


def _require_free_ram(gigabytes: float) -> None:
    import psutil

    available = psutil.virtual_memory().available / 2**30
    if available < gigabytes:
        pytest.skip(f"needs about {gigabytes} GB of free RAM, {available:.1f} GB available")


def _node(workflow: dict, node_type: str, title=ANY_TITLE) -> str:
    """The id of the one node of this type (and title; "" for an untitled one)."""
    matches = [n for n in workflow["nodes"]
               if n["type"] == node_type and (title is ANY_TITLE or (n.get("title") or "") == title)]
    assert len(matches) == 1, f"expected one {node_type} titled {title!r}, found {len(matches)}"
    return str(matches[0]["id"])


def test_sd15_anime_text_to_image_runs(comfy_host, sd15_folders):
    workflow, prompt, result = _run(comfy_host, "sd15-anime-text-to-image")

    builder = _node(workflow, "AnimeKitPromptBuilder")
    positive, negative = result.output(builder, 0), result.output(builder, 1)
    assert positive.startswith("masterpiece, best quality, 1girl, solo, ")
    assert negative == f"{SD15_CARD_NEGATIVE}, nsfw"  # the card's list, plus the SFW guard's tag
    clip_skip = _node(workflow, "CLIPSetLastLayer")
    assert prompt[clip_skip]["inputs"]["stop_at_clip_layer"] == -2
    preset = _node(workflow, "AnimeKitAspectPreset")
    assert (result.output(preset, 0), result.output(preset, 1)) == (512, 768)

    images = saved_images(result, sd15_folders.output, _node(workflow, "SaveImage"))
    assert [image.size for image in images] == [(SHRINK.width, SHRINK.height)]
    assert images[0].getextrema() != ((0, 0), (0, 0), (0, 0))


def test_animagine_xl_3_text_to_image_runs_with_its_hires_pass(comfy_host, sd15_folders):
    workflow, prompt, result = _run(comfy_host, "animagine-xl-3-text-to-image")

    encode = _node(workflow, "AnimeKitPromptEncode")
    positive, negative = result.output(encode, 2), result.output(encode, 3)
    assert positive.startswith("masterpiece, best quality, 1girl, arima kana, oshi no ko, ")
    assert "rating: general" in positive and "newest" in positive
    assert negative.startswith(ANIMAGINE_CARD_NEGATIVE) and "rating: sensitive" in negative
    preset = _node(workflow, "AnimeKitAspectPreset")
    assert [result.output(preset, slot) for slot in (0, 1, 3, 4)] == [832, 1216, 1248, 1824]
    sampler = _node(workflow, "KSampler", "Hires: sampler")
    assert prompt[sampler]["inputs"]["denoise"] == 0.5

    base = saved_images(result, sd15_folders.output, _node(workflow, "SaveImage", ""))
    hires = saved_images(result, sd15_folders.output, _node(workflow, "SaveImage", "Hires: save"))
    assert [image.size for image in base] == [(SHRINK.width, SHRINK.height)]
    assert [image.size for image in hires] == [(SHRINK.hires_width, SHRINK.hires_height)]


def test_animagine_hires_pass_can_be_bypassed(comfy_host, sd15_folders):
    """Bypassing the hires group (Ctrl+B, mode 4) leaves a valid prompt that saves the base image only."""
    workflow = load(WORKFLOWS_DIR / "animagine-xl-3-text-to-image.json")
    hires_nodes = nodes_titled(workflow, "Hires:")
    assert len(hires_nodes) == 4
    for node in hires_nodes:
        node["mode"] = 4
    prompt = shrink_prompt(ui_to_api(workflow, LiveCatalog(comfy_host)), SHRINK)
    assert not {str(node["id"]) for node in hires_nodes} & set(prompt)
    result = run_prompt(comfy_host, prompt)
    assert list(result.ui) == [_node(workflow, "SaveImage", "")]


@pytest.fixture
def merge_folders(comfy_host, tmp_path):
    """Two different random-weight SD1.5 checkpoints as the merge workflow's A and B.

    UNets are held in fp16 for this run (ComfyUI's --fp16-unet; CPU computes in fp32 through
    manual casts): A, B and the patched merge are in memory together (10.4 GB peak RSS in fp32,
    7.1 GB so). Function-scoped: the folders revert to any module-wide ones after the test.
    """
    from comfy.cli_args import args

    saved_fp16_unet, args.fp16_unet = args.fp16_unet, True
    try:
        with configure_folders(tmp_path / "comfy-merge") as folders:
            try:
                write_full_checkpoint(folders.checkpoints / SD15_MERGE_A, "sd15", seed=1)
                write_full_checkpoint(folders.checkpoints / SD15_MERGE_B, "sd15", seed=2)
                yield folders
            finally:
                for path in folders.root.rglob("*.safetensors"):
                    path.unlink()
    finally:
        args.fp16_unet = saved_fp16_unet


def test_block_weighted_merge_samples_side_by_side_and_saves_the_merge(comfy_host, merge_folders):
    workflow, prompt, result = _run(comfy_host, "block-weighted-merge")

    samplers = [_node(workflow, "KSampler", f"Sample {label}") for label in ("A", "B", "merge")]
    seed_node = _node(workflow, "PrimitiveInt")
    assert all(prompt[s]["inputs"]["seed"] == [seed_node, 0] for s in samplers)  # one seed for all three
    presets = {prompt[_node(workflow, kind)]["inputs"]["preset"]
               for kind in ("AnimeKitBlockMergeModel", "AnimeKitBlockMergeClip", "AnimeKitBlockMergeCheckpoint")}
    assert presets == {"HIGHRES_REPLACE"}

    [compare] = saved_images(result, merge_folders.output, _node(workflow, "SaveImage"))
    spacing = prompt[_node(workflow, "ImageStitch", "A | B")]["inputs"]["spacing_width"]
    assert compare.size == (3 * SHRINK.width + 2 * spacing, SHRINK.height)
    thirds = [compare.crop((i * (SHRINK.width + spacing), 0, i * (SHRINK.width + spacing) + SHRINK.width, SHRINK.height))
              for i in range(3)]
    assert thirds[0].tobytes() != thirds[1].tobytes() and thirds[2].tobytes() not in (thirds[0].tobytes(), thirds[1].tobytes())

    saved = Path(result.output(_node(workflow, "AnimeKitBlockMergeCheckpoint"), 0))
    assert saved.parent == merge_folders.output / "checkpoints" / "animekit-merge"
    assert saved.name == "highres-replace_00001_.safetensors"
    unet = "model.diffusion_model."
    with safe_open(merge_folders.checkpoints / SD15_MERGE_A, "pt") as a, \
            safe_open(merge_folders.checkpoints / SD15_MERGE_B, "pt") as b, safe_open(saved, "pt") as merged:
        assert set(merged.keys()) == set(a.keys())
        for key, weight in ((f"{unet}input_blocks.1.0.in_layers.2.weight", 1.0),   # IN01: B
                            (f"{unet}input_blocks.7.0.in_layers.2.weight", 0.0),   # IN07: A
                            (f"{unet}output_blocks.7.0.in_layers.2.weight", 0.67),  # OUT07
                            (f"{unet}output_blocks.11.0.in_layers.2.weight", 0.0)):  # OUT11: A
            expected = a.get_tensor(key).float() * (1 - weight) + b.get_tensor(key).float() * weight
            got = merged.get_tensor(key)
            assert got.dtype == torch.float16
            torch.testing.assert_close(got.float(), expected, atol=1e-3, rtol=1e-3, msg=f"{key} is not {weight} of B")


def _write_dataset(folder: Path, count: int = 3) -> None:
    for index in range(count):
        write_image(folder / f"{index:02d}.png", size=(SHRINK.train_resolution, SHRINK.train_resolution),
                    caption="1girl, solo, smile, short hair, upper body", image=noise(256, 256, seed=index))


def test_lora_training_trains_saves_and_samples_with_the_lora(comfy_host, sd15_folders):
    _write_dataset(sd15_folders.input / LORA_DATASET / f"10_{LORA_TRIGGER}")
    workflow, prompt, result = _run(comfy_host, "lora-training")

    train = _node(workflow, "AnimeKitTrainLora")
    assert result.output(train, 2) == f"animekit/{LORA_TRIGGER}.safetensors"
    lora_file = sd15_folders.loras / "animekit" / f"{LORA_TRIGGER}.safetensors"
    with safe_open(lora_file, "pt") as lora:
        keys, metadata = list(lora.keys()), lora.metadata()
        ups = [key for key in keys if key.endswith(".lora_up.weight")]
        assert ups and all(key.startswith("lora_unet_") for key in keys)  # text encoder not trained
        assert any(lora.get_tensor(key).abs().max() > 0 for key in ups)  # up weights start at 0: it trained
    assert float(metadata["ss_noise_offset"]) == 0.05
    assert float(metadata["ss_caption_dropout_rate"]) == 0.2
    assert int(metadata["ss_network_dim"]) == 16 and float(metadata["ss_network_alpha"]) == 8.0
    assert LORA_TRIGGER in result.output(_node(workflow, "AnimeKitPromptBuilder"), 0)

    [image] = saved_images(result, sd15_folders.output, _node(workflow, "SaveImage"))
    assert image.size == (SHRINK.width, SHRINK.height)
    assert result.output(train, 3).shape[0] == 1  # the loss graph image


def test_two_stage_finetune_chains_stage_1_into_stage_2_and_samples(comfy_host, sd15_folders):
    """Runs on the SD1.5 layout (see the module docstring): the recipe, not the architecture, is under test.

    Two full fine-tunes in fp32 on CPU hold the loaded model, stage 1's output, stage 2's training
    copy and its gradients at once: 19 GB peak RSS measured here, so it needs that much free RAM.
    """
    _require_free_ram(FINETUNE_RAM_GB)
    (sd15_folders.checkpoints / FINETUNE_BASE).symlink_to(sd15_folders.checkpoints / SD15_CHECKPOINT)
    for folder in (STAGE1_DATASET, STAGE2_DATASET):
        _write_dataset(sd15_folders.input / folder, count=2)
    workflow, prompt, result = _run(comfy_host, "two-stage-finetune")

    stage1 = _node(workflow, "AnimeKitTrainCheckpoint", "Stage 1: feature alignment (UNet + text encoders)")
    stage2 = _node(workflow, "AnimeKitTrainCheckpoint", "Stage 2: refining UNet (text encoders frozen)")
    assert prompt[stage2]["inputs"]["model"] == [stage1, 0] and prompt[stage2]["inputs"]["clip"] == [stage1, 1]
    saved = {stage: sd15_folders.output / "checkpoints" / result.output(stage, 2) for stage in (stage1, stage2)}
    assert saved[stage1].name == "stage1.safetensors" and saved[stage2].name == "stage2.safetensors"
    base_file = sd15_folders.checkpoints / SD15_CHECKPOINT
    text_key = "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight"
    unet_key = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight"
    with safe_open(base_file, "pt") as base, safe_open(saved[stage1], "pt") as one, safe_open(saved[stage2], "pt") as two:
        assert not torch.equal(one.get_tensor(unet_key), base.get_tensor(unet_key))   # stage 1 trained the UNet
        assert not torch.equal(one.get_tensor(text_key), base.get_tensor(text_key))   # ... and the text encoder
        assert not torch.equal(two.get_tensor(unet_key), one.get_tensor(unet_key))    # stage 2 went on from stage 1
        assert torch.equal(two.get_tensor(text_key), one.get_tensor(text_key))        # with the text encoder frozen
        stage2_meta = two.metadata()
    assert float(stage2_meta["ss_noise_offset"]) == 0.0357
    assert float(stage2_meta["ss_learning_rate"]) == 2e-6

    [image] = saved_images(result, sd15_folders.output, _node(workflow, "SaveImage"))
    assert image.size == (SHRINK.width, SHRINK.height)
