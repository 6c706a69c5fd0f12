"""Resolution nodes in a real ComfyUI: schemas (public API) and execution on real tensors."""

from __future__ import annotations

import pytest
import torch

from support.executor import execute_prompt, run_prompt, tiny_txt2img_prompt

pytestmark = pytest.mark.host


def _schema(comfy_host, node_id):
    schema = comfy_host.node_class(node_id).GET_SCHEMA()
    return [i.id for i in schema.inputs], [(o.id, o.io_type) for o in schema.outputs]


def test_schemas_are_the_public_api(comfy_host):
    assert _schema(comfy_host, "AnimeKitAspectPreset") == (["profile", "size", "batch_size", "hires_scale"], [
        ("width", "INT"), ("height", "INT"), ("latent", "LATENT"), ("hires_width", "INT"), ("hires_height", "INT")])
    assert _schema(comfy_host, "AnimeKitNearestBucket") == (
        ["image", "profile", "resize_and_crop", "resolution", "min_size", "max_size", "step"],
        [("bucket_image", "IMAGE"), ("width", "INT"), ("height", "INT")])
    info = comfy_host.node_class("AnimeKitAspectPreset").INPUT_TYPES()["required"]
    sizes = info["size"][1]["options"]
    assert info["size"][1]["default"] == "832x1216 (13:19 portrait)" and info["profile"][1]["default"] == "animagine-xl-3.0"
    assert len(sizes) == 12  # SDXL nine + SD 1.5 three (NoobAI's seven are among the nine)
    assert sizes[0] == "640x1536 (5:12 portrait)" and sizes[-1] == "1536x640 (12:5 landscape)"
    assert "512x768 (2:3 portrait)" in sizes
    bucket_info = comfy_host.node_class("AnimeKitNearestBucket").INPUT_TYPES()["required"]
    assert bucket_info["profile"][1]["options"][-1] == "custom"


def test_aspect_preset_outputs(comfy_host):
    out = comfy_host.node_class("AnimeKitAspectPreset").execute(
        profile="animagine-xl-3.0", size="832x1216 (13:19 portrait)", batch_size=2, hires_scale=1.5)
    width, height, latent, hires_width, hires_height = out.args
    assert (width, height, hires_width, hires_height) == (832, 1216, 1248, 1824)
    assert tuple(latent["samples"].shape) == (2, 4, 152, 104)
    assert latent["samples"].abs().sum().item() == 0


def test_aspect_preset_rejects_a_size_outside_the_profile(comfy_host):
    with pytest.raises(ValueError) as info:
        comfy_host.node_class("AnimeKitAspectPreset").execute(
            profile="sd15-anime", size="832x1216 (13:19 portrait)", batch_size=1, hires_scale=1.0)
    assert str(info.value) == ("size '832x1216 (13:19 portrait)' is not one of sd15-anime's sizes: "
                               "512x512 (1:1 square), 512x768 (2:3 portrait), 768x512 (3:2 landscape)")


def test_aspect_preset_latent_drives_ksampler(comfy_host):
    prompt = tiny_txt2img_prompt("sd15", steps=1)
    prompt["preset"] = {"class_type": "AnimeKitAspectPreset",
                        "inputs": {"profile": "sd15-anime", "size": "512x768 (2:3 portrait)", "batch_size": 1, "hires_scale": 2.0}}
    # Sampling 512x768 on CPU is slow: shrink the preset's latent with a core LATENT node first.
    prompt["shrink"] = {"class_type": "LatentUpscaleBy",
                        "inputs": {"samples": ["preset", 2], "upscale_method": "nearest-exact", "scale_by": 0.125}}
    prompt["sampler"]["inputs"]["latent_image"] = ["shrink", 0]
    del prompt["latent"]
    result = run_prompt(comfy_host, prompt)
    assert tuple(result.output("preset", 2)["samples"].shape) == (1, 4, 96, 64)
    assert result.output("preset", 3) == 1024 and result.output("preset", 4) == 1536
    assert tuple(result.output("decode", 0).shape) == (1, 96, 64, 3)


def _gradient(batch, height, width):
    ys = torch.linspace(0, 1, height).view(1, height, 1, 1)
    xs = torch.linspace(0, 1, width).view(1, 1, width, 1)
    return (0.5 * ys + 0.5 * xs).expand(batch, height, width, 3).contiguous()


def test_nearest_bucket_resizes_and_centre_crops(comfy_host):
    node = comfy_host.node_class("AnimeKitNearestBucket")
    image = _gradient(2, 100, 60)  # 3:5 portrait; SD 1.5's 17 kohya buckets have 384x640 (not 512x768)
    out = node.execute(image=image, profile="sd15-anime", resize_and_crop=True,
                       resolution=1024, min_size=512, max_size=2048, step=64)
    resized, width, height = out.args
    assert (width, height) == (384, 640)
    assert tuple(resized.shape) == (2, 640, 384, 3)
    assert 0.0 <= resized.min().item() and resized.max().item() <= 1.0
    # A gradient stays a gradient: corners keep their values (no crop needed at an exact 3:5).
    assert resized[0, 0, 0, 0].item() == pytest.approx(0.0, abs=0.01)
    assert resized[0, -1, -1, 0].item() == pytest.approx(1.0, abs=0.01)


def test_nearest_bucket_crop_removes_the_overhang_evenly(comfy_host):
    node = comfy_host.node_class("AnimeKitNearestBucket")
    image = torch.zeros(1, 64, 128, 3)
    image[:, :, :32] = 1.0  # white left quarter, cropped away to reach 1:1
    image[:, :, 96:] = 1.0  # white right quarter
    out = node.execute(image=image, profile="custom", resize_and_crop=True, resolution=64, min_size=64, max_size=64, step=64)
    resized, width, height = out.args
    assert (width, height) == (64, 64)
    assert resized.abs().max().item() < 0.01  # only the black centre remains


def test_nearest_bucket_without_resize_passes_the_image_through(comfy_host):
    image = _gradient(1, 1080, 1920)
    out = comfy_host.node_class("AnimeKitNearestBucket").execute(
        image=image, profile="animagine-xl-3.0", resize_and_crop=False, resolution=1024, min_size=512, max_size=2048, step=64)
    assert out.args[0] is image and out.args[1:] == (1344, 768)


def test_nearest_bucket_empty_batch_is_a_clear_error(comfy_host):
    with pytest.raises(ValueError, match=r"image batch is empty \(shape \(0, 64, 64, 3\)\)"):
        comfy_host.node_class("AnimeKitNearestBucket").execute(
            image=torch.zeros(0, 64, 64, 3), profile="sd15-anime", resize_and_crop=True,
            resolution=512, min_size=256, max_size=1024, step=64)


def _bucket_graph(**bucket_inputs) -> dict:
    """EmptyImage -> AnimeKitNearestBucket -> PreviewImage (no model needed)."""
    return {
        "image": {"class_type": "EmptyImage", "inputs": {"width": 128, "height": 64, "batch_size": 1, "color": 0}},
        "bucket": {"class_type": "AnimeKitNearestBucket", "inputs": {"image": ["image", 0], **bucket_inputs}},
        "preview": {"class_type": "PreviewImage", "inputs": {"images": ["bucket", 0]}},
    }


def test_nearest_bucket_runs_in_the_executor(comfy_host):
    prompt = _bucket_graph(profile="custom", resize_and_crop=True, resolution=128, min_size=64, max_size=256, step=64)
    result = run_prompt(comfy_host, prompt)
    # 128x64 (2:1) among 64x256, 64x192, 128x128, 192x64, 256x64: 192x64 (3:1) is nearest in log aspect
    assert (result.output("bucket", 1), result.output("bucket", 2)) == (192, 64)
    assert tuple(result.output("bucket", 0).shape) == (1, 64, 192, 3)


def test_nearest_bucket_custom_settings_error_reaches_the_user(comfy_host):
    prompt = _bucket_graph(profile="custom", resize_and_crop=True, resolution=64, min_size=128, max_size=64, step=64)
    result = execute_prompt(comfy_host, prompt)
    assert not result.success
    assert result.error["node_type"] == "AnimeKitNearestBucket"
    assert "min_size (128) must not exceed max_size (64)" in result.error["exception_message"]
