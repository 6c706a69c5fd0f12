"""Each bundled workflow executes end to end on CPU (slow host tier).

The workflow file goes through support.workflow_ui_to_api into ComfyUI's real executor, with
random-weight checkpoints of the real SD1.5 layout (written by support.comfy_models; ComfyUI
detects them as SD1.5) and only sizes and step counts made small (support.workflow_run).

The Animagine XL 3.0 workflow runs on the SD1.5-layout checkpoint too: its graph is
architecture-agnostic (loader -> prompt encode -> sampler -> decode, hires pass), and an
SDXL-layout file is ~7 GB and needs ~14 GB of RAM on CPU. What is specific to Animagine (its tag
order, special tags, negative prompt, sizes) comes from the AnimeKit nodes' profile, checked here
in the texts the prompt node produced.

Run one heavy test at a time: ANIMEKIT_SLOW=1 COMFYUI_PATH=... pytest tests/test_workflows_run.py
"""

from __future__ import annotations

import pytest

from support.comfy_models import write_full_checkpoint
from support.executor import configure_folders, run_prompt
from support.workflow_files import WORKFLOWS_DIR, load
from support.workflow_nodeinfo import LiveCatalog
from support.workflow_run import Shrink, nodes_titled, saved_images, shrink_prompt
from support.workflow_specs import ANIMAGINE_CHECKPOINT, SD15_CHECKPOINT
from support.workflow_ui_to_api import ui_to_api

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


@pytest.fixture(scope="module")
def sd15_folders(comfy_host, tmp_path_factory):
    """ComfyUI folders with one random-weight SD1.5 checkpoint under both txt2img workflows' names."""
    with configure_folders(tmp_path_factory.mktemp("comfy-run")) as folders:
        checkpoint = write_full_checkpoint(folders.checkpoints / SD15_CHECKPOINT, "sd15", seed=1)
        (folders.checkpoints / ANIMAGINE_CHECKPOINT).symlink_to(checkpoint)
        try:
            yield folders
        finally:
            for path in folders.checkpoints.iterdir():
                path.unlink()


def _run(comfy_host, name: str):
    workflow = load(WORKFLOWS_DIR / f"{name}.json")
    prompt = shrink_prompt(ui_to_api(workflow, LiveCatalog(comfy_host)), SHRINK)
    return workflow, prompt, run_prompt(comfy_host, prompt)


ANY_TITLE = object()


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
