"""Prompt nodes in a real ComfyUI: schemas (public API), execution on real CLIP objects, and the
issue's end-to-end graph AnimeKitPromptBuilder -> CLIPTextEncode -> KSampler -> VAEDecode."""

from __future__ import annotations

import pytest
import torch

from support.executor import execute_prompt, run_prompt, tiny_txt2img_prompt

pytestmark = pytest.mark.host

PROMPT_FIELDS = ["profile", "subject", "solo", "characters", "series", "artists", "tags", "quality", "rating", "year",
                 "aesthetic", "sfw_guard", "negative_preset", "extra_negative"]
A30_NEGATIVE = (
    "nsfw, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, "
    "worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry, artist name"
)


def builder_inputs(**overrides) -> dict:
    values = {"profile": "animagine-xl-3.0", "subject": "1girl", "solo": False, "characters": "", "series": "",
              "artists": "", "tags": "", "quality": "default", "rating": "none", "year": "none", "aesthetic": "none",
              "sfw_guard": True, "negative_preset": "default", "extra_negative": ""}
    values.update(overrides)
    return values


def _schema(comfy_host, node_id):
    schema = comfy_host.node_class(node_id).GET_SCHEMA()
    return [i.id for i in schema.inputs], [(o.id, o.io_type) for o in schema.outputs]


def test_schemas_are_the_public_api(comfy_host):
    assert _schema(comfy_host, "AnimeKitPromptBuilder") == (PROMPT_FIELDS, [("positive", "STRING"), ("negative", "STRING")])
    assert _schema(comfy_host, "AnimeKitPromptEncode") == (["clip", *PROMPT_FIELDS], [
        ("positive", "CONDITIONING"), ("negative", "CONDITIONING"), ("positive_text", "STRING"), ("negative_text", "STRING")])
    assert _schema(comfy_host, "AnimeKitTagFormatter") == (["tags", "profile", "reorder", "add_quality"], [("formatted", "STRING")])
    info = comfy_host.node_class("AnimeKitPromptBuilder").INPUT_TYPES()["required"]
    assert info["profile"][1]["default"] == "animagine-xl-3.0"
    assert info["profile"][1]["options"][0] == "animagine-xl-3.0"
    assert info["year"][1]["options"][:7] == ["none", "newest", "recent", "mid", "early", "oldest", "2025"]
    assert info["aesthetic"][1]["options"] == ["none", "very aesthetic", "aesthetic", "displeasing", "very displeasing",
                                               "very awa", "worst aesthetic"]
    assert info["tags"][1]["dynamicPrompts"] is True


def test_builder_executes(comfy_host):
    out = comfy_host.node_class("AnimeKitPromptBuilder").execute(
        **builder_inputs(characters="ganyu_(genshin_impact)", series="genshin_impact", tags="smile, smile, [blush]"))
    assert out.args == (
        r"masterpiece, best quality, 1girl, ganyu \(genshin impact\), genshin impact, smile, (blush:0.909), rating: general",
        A30_NEGATIVE + ", rating: sensitive",
    )


def test_formatter_executes(comfy_host):
    cls = comfy_host.node_class("AnimeKitTagFormatter")
    text = "smile, 1girl, score_9, long_hair, smile, source_anime"
    assert cls.execute(tags=text, profile="pony-v6", reorder=True, add_quality=False).args == (
        "score_9, source_anime, 1girl, smile, long hair",)
    assert cls.execute(tags=text, profile="pony-v6", reorder=False, add_quality=False).args == (
        "smile, 1girl, score_9, long hair, source_anime",)
    assert cls.execute(tags="1girl", profile="animagine-xl-3.1", reorder=True, add_quality=True).args == (
        "1girl, masterpiece, best quality, very aesthetic, absurdres",)
    assert cls.execute(tags="", profile="sd15-anime", reorder=True, add_quality=False).args == ("",)


def _encode(clip, text):
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))


def test_encode_applies_sd15_clip_skip_and_matches_clip_set_last_layer(comfy_host):
    from support.comfy_models import tiny_sd1

    clip = tiny_sd1().clip
    out = comfy_host.node_class("AnimeKitPromptEncode").execute(clip=clip, **builder_inputs(profile="sd15-anime", tags="smile"))
    positive, negative, positive_text, negative_text = out.args
    assert positive_text == "masterpiece, best quality, 1girl, smile"
    assert negative_text.endswith("blurry, nsfw")
    skipped = clip.clone()
    skipped.clip_layer(-2)  # what CLIPSetLastLayer(-2) does
    expected = _encode(skipped, positive_text)
    assert torch.equal(positive[0][0], expected[0][0])
    assert torch.equal(negative[0][0], _encode(skipped, negative_text)[0][0])
    assert not torch.equal(positive[0][0], _encode(clip, positive_text)[0][0])  # the skip changed something
    assert clip.layer_idx is None  # the caller's CLIP is untouched


def test_encode_leaves_sdxl_clip_layer_alone(comfy_host):
    from support.comfy_models import tiny_sdxl

    clip = tiny_sdxl().clip
    out = comfy_host.node_class("AnimeKitPromptEncode").execute(clip=clip, **builder_inputs(profile="pony-v6", tags="smile"))
    positive, _negative, positive_text, _ = out.args
    assert positive_text.startswith("score_9, score_8_up")
    reference = _encode(clip, positive_text)
    assert torch.equal(positive[0][0], reference[0][0])
    assert torch.equal(positive[0][1]["pooled_output"], reference[0][1]["pooled_output"])


def test_builder_to_clip_text_encode_to_ksampler_to_vae_decode(comfy_host):
    """The issue's 'done when': the builder's strings drive a real txt2img graph on a tiny model."""
    prompt = tiny_txt2img_prompt("sd15", width=64, height=64, steps=2)
    prompt["builder"] = {"class_type": "AnimeKitPromptBuilder",
                         "inputs": builder_inputs(profile="sd15-anime", solo=True, tags="white_background, smile")}
    prompt["positive"]["inputs"]["text"] = ["builder", 0]
    prompt["negative"]["inputs"]["text"] = ["builder", 1]
    result = run_prompt(comfy_host, prompt)
    assert result.output("builder", 0) == "masterpiece, best quality, 1girl, solo, white background, smile"
    assert result.output("builder", 1).endswith("username, blurry, nsfw")
    image = result.output("decode", 0)
    assert tuple(image.shape) == (1, 64, 64, 3)
    assert torch.isfinite(image).all()


def test_encode_node_in_a_graph_feeds_ksampler(comfy_host):
    prompt = tiny_txt2img_prompt("sdxl", width=64, height=64, steps=1)
    prompt["encode"] = {"class_type": "AnimeKitPromptEncode",
                        "inputs": {"clip": ["models", 1], **builder_inputs(profile="animagine-xl-3.1", tags="smile")}}
    prompt["sampler"]["inputs"]["positive"] = ["encode", 0]
    prompt["sampler"]["inputs"]["negative"] = ["encode", 1]
    result = run_prompt(comfy_host, prompt)
    assert result.output("encode", 2) == "1girl, smile, safe, masterpiece, best quality, very aesthetic, absurdres"
    assert tuple(result.output("decode", 0).shape) == (1, 64, 64, 3)


def test_bad_choice_fails_with_the_core_message(comfy_host):
    """ComfyUI 0.3.64 does not check V3 combo values, so the node's own error must be clear."""
    prompt = tiny_txt2img_prompt("sd15", steps=1)
    prompt["builder"] = {"class_type": "AnimeKitPromptBuilder", "inputs": builder_inputs(profile="sdxl-anime")}
    prompt["positive"]["inputs"]["text"] = ["builder", 0]
    result = execute_prompt(comfy_host, prompt)
    assert not result.success
    assert result.error["node_type"] == "AnimeKitPromptBuilder"
    assert "unknown profile 'sdxl-anime'; valid profiles: animagine-xl-3.0" in result.error["exception_message"]
