"""The bundled workflows, described compactly; support/make_workflows.py turns them into workflows/*.json.

Each spec function fills a WorkflowBuilder. Values are by input name; anything not given keeps the
node's default. Settings follow the seed model cards (/work/shared/seeds) and are explained to the
user in the MarkdownNote of each workflow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from support.workflow_builder import WorkflowBuilder

# Placeholder model file names: users pick their own files in the loader's list.
SD15_CHECKPOINT = "animediffusion-merge.safetensors"
SD15_MERGE_A = "animediffusion-base.safetensors"
SD15_MERGE_B = "aurora.safetensors"
ANIMAGINE_CHECKPOINT = "animagine-xl-3.0.safetensors"

OUTPUT_PREFIX = "AnimeKit"
HIRES_GROUP = "Hires pass (optional)"


@dataclass(frozen=True)
class WorkflowSpec:
    name: str  # file stem in workflows/
    title: str
    summary: str  # one line, used in workflows/README.md
    build: Callable[[WorkflowBuilder], None]


def sd15_anime_text_to_image(b: WorkflowBuilder) -> None:
    b.note(
        """
# SD1.5 anime text-to-image (AnimeDiffusion style)

The **AnimeDiffusion** model card's settings:

- **Clip skip 2**: *Clip skip 2* (CLIP Set Last Layer = -2).
- **512 x 768** portrait from *AnimeKit Aspect Preset* (profile `sd15-anime`).
- **Prompt**: *AnimeKit Prompt Builder* puts Danbooru tags in the card's order,
  quality first: `masterpiece, best quality, 1girl, solo, ...`
- **Negative**: the card's list (`lowres, bad anatomy, bad hands, ... blurry`);
  *sfw_guard* adds `nsfw` to it.

Pick your SD1.5 anime checkpoint in *Load Checkpoint*. The card gives no sampler settings:
DPM++ 2M Karras, 28 steps, CFG 7 are the profile's common SD1.5 values.
""",
        column=0,
        title="About this workflow",
    )
    loader = b.add("CheckpointLoaderSimple", {"ckpt_name": SD15_CHECKPOINT}, column=1)
    clip_skip = b.add("CLIPSetLastLayer", {"stop_at_clip_layer": -2}, column=1, title="Clip skip 2")
    b.link(loader, "CLIP", clip_skip, "clip")
    size = b.add("AnimeKitAspectPreset", {"profile": "sd15-anime", "size": "512x768 (2:3 portrait)",
                                          "batch_size": 1}, column=1)
    prompt = b.add("AnimeKitPromptBuilder", {
        "profile": "sd15-anime", "subject": "1girl", "solo": True,
        "tags": "smile, looking at viewer, school uniform, cherry blossoms, outdoors",
        "quality": "default", "sfw_guard": True, "negative_preset": "default",
    }, column=2, width=400)
    positive = b.add("CLIPTextEncode", {"text": ""}, column=3, title="Positive prompt", colors=("#232", "#353"))
    negative = b.add("CLIPTextEncode", {"text": ""}, column=3, title="Negative prompt", colors=("#322", "#533"))
    b.link(prompt, "positive", positive, "text")
    b.link(prompt, "negative", negative, "text")
    b.link(clip_skip, "CLIP", positive, "clip")
    b.link(clip_skip, "CLIP", negative, "clip")
    sampler = b.add("KSampler", {"seed": 1234, "steps": 28, "cfg": 7.0, "sampler_name": "dpmpp_2m",
                                 "scheduler": "karras", "denoise": 1.0}, column=4)
    b.link(loader, "MODEL", sampler, "model")
    b.link(positive, 0, sampler, "positive")
    b.link(negative, 0, sampler, "negative")
    b.link(size, "LATENT", sampler, "latent_image")
    decode = b.add("VAEDecode", column=5, width=220)
    b.link(sampler, "LATENT", decode, "samples")
    b.link(loader, "VAE", decode, "vae")
    save = b.add("SaveImage", {"filename_prefix": f"{OUTPUT_PREFIX}/sd15-anime"}, column=5, width=360)
    b.link(decode, "IMAGE", save, "images")


def animagine_xl_3_text_to_image(b: WorkflowBuilder) -> None:
    b.note(
        """
# Animagine XL 3.0 text-to-image

The **Animagine XL 3.0** model card's recommendations:

- **Tag order**: `1girl/1boy, character, series, everything else`; *AnimeKit Prompt Encode*
  (profile `animagine-xl-3.0`) sorts your tags into it.
- **Quality**: `masterpiece, best quality` prepended (*quality* = default).
- **Rating**: `rating: general`; **year**: `newest` (2022-23), `late`, `mid`, `early`, `oldest`
  (the *year* knob: recent = late).
- **SFW guard** (the card's advice for quality tags): `rating: general` in the positive,
  `nsfw, rating: sensitive` in the negative, on top of the card's negative prompt.
- **Size**: one of the card's nine resolutions (*AnimeKit Aspect Preset*).
- **Sampler**: Euler a, **CFG 5-7** (6 here), **under 30 steps** (28 here).

**Hires pass** (the lower group) upscales the latent 1.5x and re-samples at denoise 0.5.
It is optional: select the group and press *Ctrl+B* to bypass it.
""",
        column=0,
        title="About this workflow",
    )
    loader = b.add("CheckpointLoaderSimple", {"ckpt_name": ANIMAGINE_CHECKPOINT}, column=1)
    size = b.add("AnimeKitAspectPreset", {"profile": "animagine-xl-3.0", "size": "832x1216 (13:19 portrait)",
                                          "batch_size": 1, "hires_scale": 1.5}, column=1)
    prompt = b.add("AnimeKitPromptEncode", {
        "profile": "animagine-xl-3.0", "subject": "1girl", "solo": True, "characters": "arima kana",
        "series": "oshi no ko", "tags": "upper body, v, smile, looking at viewer, outdoors, night",
        "quality": "default", "rating": "general", "year": "newest", "sfw_guard": True,
        "negative_preset": "default",
    }, column=2, width=400)
    b.link(loader, "CLIP", prompt, "clip")
    sampler = b.add("KSampler", {"seed": 1234, "steps": 28, "cfg": 6.0, "sampler_name": "euler_ancestral",
                                 "scheduler": "normal", "denoise": 1.0}, column=3)
    b.link(loader, "MODEL", sampler, "model")
    b.link(prompt, "positive", sampler, "positive")
    b.link(prompt, "negative", sampler, "negative")
    b.link(size, "LATENT", sampler, "latent_image")
    decode = b.add("VAEDecode", column=4, width=220)
    b.link(sampler, "LATENT", decode, "samples")
    b.link(loader, "VAE", decode, "vae")
    save = b.add("SaveImage", {"filename_prefix": f"{OUTPUT_PREFIX}/animagine-xl-3"}, column=4, width=360)
    b.link(decode, "IMAGE", save, "images")

    b.next_band()
    upscale = b.add("LatentUpscale", {"upscale_method": "nearest-exact", "width": 1248, "height": 1824,
                                      "crop": "disabled"}, column=2, title="Hires: upscale latent")
    b.link(sampler, "LATENT", upscale, "samples")
    b.link(size, "hires_width", upscale, "width")
    b.link(size, "hires_height", upscale, "height")
    hires = b.add("KSampler", {"seed": 1234, "steps": 20, "cfg": 6.0, "sampler_name": "euler_ancestral",
                               "scheduler": "normal", "denoise": 0.5}, column=3, title="Hires: sampler")
    b.link(loader, "MODEL", hires, "model")
    b.link(prompt, "positive", hires, "positive")
    b.link(prompt, "negative", hires, "negative")
    b.link(upscale, "LATENT", hires, "latent_image")
    hires_decode = b.add("VAEDecode", column=4, width=220, title="Hires: decode")
    b.link(hires, "LATENT", hires_decode, "samples")
    b.link(loader, "VAE", hires_decode, "vae")
    hires_save = b.add("SaveImage", {"filename_prefix": f"{OUTPUT_PREFIX}/animagine-xl-3-hires"}, column=4,
                       width=360, title="Hires: save")
    b.link(hires_decode, "IMAGE", hires_save, "images")
    b.group(HIRES_GROUP, [upscale, hires, hires_decode, hires_save])


WORKFLOWS: tuple[WorkflowSpec, ...] = (
    WorkflowSpec(
        "animagine-xl-3-text-to-image",
        "Animagine XL 3.0 text-to-image",
        "Animagine XL 3.0 txt2img by its card: tag order, quality/rating/year tags, SFW guard, "
        "a card resolution, Euler a at CFG 6 and 28 steps, and an optional hires pass.",
        animagine_xl_3_text_to_image,
    ),
    WorkflowSpec(
        "sd15-anime-text-to-image",
        "SD1.5 anime text-to-image (AnimeDiffusion style)",
        "SD1.5 anime txt2img the AnimeDiffusion way: clip skip 2, 512x768, the card's negative prompt.",
        sd15_anime_text_to_image,
    ),
)
