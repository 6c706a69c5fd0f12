"""The bundled workflows, described compactly; tools/workflows/make.py turns them into workflows/*.json.

Each spec function fills a WorkflowBuilder. Values are by input name; anything not given keeps the
node's default. Settings follow the seed model cards and are explained to the user in the
MarkdownNote of each workflow. Sampler settings (steps, CFG, sampler, scheduler) and clip skip are
the prompt profile's (`prompting/profiles/<id>.profile.json`, `sampling`), never typed here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from animekit.prompting.profile import Sampling, load_profile
from workflows.builder import WorkflowBuilder

# Placeholder model file names: users pick their own files in the loader's list.
SD15_CHECKPOINT = "animediffusion-merge.safetensors"
SD15_MERGE_A = "animediffusion-base.safetensors"
SD15_MERGE_B = "aurora.safetensors"
ANIMAGINE_CHECKPOINT = "animagine-xl-3.0.safetensors"
FINETUNE_BASE = "animagine-xl-2.0.safetensors"  # what Animagine XL 3.0 was fine-tuned from

LORA_DATASET = "my_character"  # a folder in ComfyUI's input folder, kohya layout
LORA_TRIGGER = "mychar"
STAGE1_DATASET = "finetune/stage1"
RAW_DATASET = "my_raw_images"  # a folder of untagged images in ComfyUI's input folder
DATASET_TRIGGER = "mychar"
MIN_AESTHETIC = 0.5  # P(aesthetic) from a Cafe-aesthetic-kind classifier
STAGE2_DATASET = "finetune/stage2"

OUTPUT_PREFIX = "AnimeKit"
HIRES_GROUP = "Hires pass (optional)"

SD15 = "sd15-anime"  # prompt profiles: tag order, sizes and sampler settings
ANIMAGINE = "animagine-xl-3.0"
# ComfyUI's sampler and scheduler ids as the model cards (and A1111) name them.
SAMPLER_TITLES = {"euler_ancestral": "Euler a", "euler": "Euler", "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_sde": "DPM++ 2M SDE"}
SCHEDULER_TITLES = {"normal": "", "karras": " Karras"}


def sampling(profile_id: str) -> Sampling:
    return load_profile(profile_id).sampling


def ksampler(profile_id: str, **values: Any) -> dict[str, Any]:
    """KSampler widget values: the profile's steps, CFG, sampler and scheduler, then `values` (seed, denoise...)."""
    s = sampling(profile_id)
    return {"seed": 1234, "steps": s.steps, "cfg": s.cfg, "sampler_name": s.sampler, "scheduler": s.scheduler,
            "denoise": 1.0, **values}


def clip_skip(profile_id: str) -> dict[str, int]:
    """CLIPSetLastLayer's value for the profile's clip skip (2 -> -2)."""
    return {"stop_at_clip_layer": -sampling(profile_id).clip_skip}


def sampler_title(profile_id: str) -> str:
    """"Euler a", "DPM++ 2M Karras": the profile's sampler as the cards write it."""
    s = sampling(profile_id)
    return SAMPLER_TITLES[s.sampler] + SCHEDULER_TITLES[s.scheduler]


def number(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class WorkflowSpec:
    name: str  # file stem in workflows/
    title: str
    summary: str  # one line, used in workflows/README.md
    build: Callable[[WorkflowBuilder], None]


def sd15_anime_text_to_image(b: WorkflowBuilder) -> None:
    s = sampling(SD15)
    b.note(
        f"""
# SD1.5 anime text-to-image (AnimeDiffusion style)

The **AnimeDiffusion** model card's settings:

- **Clip skip {s.clip_skip}**: *Clip skip {s.clip_skip}* (CLIP Set Last Layer = -{s.clip_skip}).
- **512 x 768** portrait from *AnimeKit Aspect Preset* (profile `sd15-anime`).
- **Prompt**: *AnimeKit Prompt Builder* puts Danbooru tags in the card's order,
  quality first: `masterpiece, best quality, 1girl, solo, ...`
- **Negative**: the card's list (`lowres, bad anatomy, bad hands, ... blurry`);
  *sfw_guard* adds `nsfw` to it.

Pick your SD1.5 anime checkpoint in *Load Checkpoint*. The card gives no sampler settings:
{sampler_title(SD15)}, {s.steps} steps, CFG {number(s.cfg)} are the profile's common SD1.5 values.
""",
        column=0,
        title="About this workflow",
    )
    loader = b.add("CheckpointLoaderSimple", {"ckpt_name": SD15_CHECKPOINT}, column=1)
    skip = b.add("CLIPSetLastLayer", clip_skip(SD15), column=1, title=f"Clip skip {s.clip_skip}")
    b.link(loader, "CLIP", skip, "clip")
    size = b.add("AnimeKitAspectPreset", {"profile": SD15, "size": "512x768 (2:3 portrait)",
                                          "batch_size": 1}, column=1)
    prompt = b.add("AnimeKitPromptBuilder", {
        "profile": SD15, "subject": "1girl", "solo": True,
        "tags": "smile, looking at viewer, school uniform, cherry blossoms, outdoors",
        "quality": "default", "sfw_guard": True, "negative_preset": "default",
    }, column=2, width=400)
    positive = b.add("CLIPTextEncode", {"text": ""}, column=3, title="Positive prompt", colors=("#232", "#353"))
    negative = b.add("CLIPTextEncode", {"text": ""}, column=3, title="Negative prompt", colors=("#322", "#533"))
    b.link(prompt, "positive", positive, "text")
    b.link(prompt, "negative", negative, "text")
    b.link(skip, "CLIP", positive, "clip")
    b.link(skip, "CLIP", negative, "clip")
    sampler = b.add("KSampler", ksampler(SD15), column=4)
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
    s = sampling(ANIMAGINE)
    b.note(
        f"""
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
- **Sampler**: {sampler_title(ANIMAGINE)}, **CFG {number(s.cfg_range[0])}-{number(s.cfg_range[1])}** ({number(s.cfg)} here), **under {s.steps_range[1] + 1} steps** ({s.steps} here).

**Hires pass** (the lower group) upscales the latent 1.5x and re-samples at denoise 0.5.
It is optional: select the group and press *Ctrl+B* to bypass it.
""",
        column=0,
        title="About this workflow",
    )
    loader = b.add("CheckpointLoaderSimple", {"ckpt_name": ANIMAGINE_CHECKPOINT}, column=1)
    size = b.add("AnimeKitAspectPreset", {"profile": ANIMAGINE, "size": "832x1216 (13:19 portrait)",
                                          "batch_size": 1, "hires_scale": 1.5}, column=1)
    prompt = b.add("AnimeKitPromptEncode", {
        "profile": ANIMAGINE, "subject": "1girl", "solo": True, "characters": "arima kana",
        "series": "oshi no ko", "tags": "upper body, v, smile, looking at viewer, outdoors, night",
        "quality": "default", "rating": "general", "year": "newest", "sfw_guard": True,
        "negative_preset": "default",
    }, column=2, width=400)
    b.link(loader, "CLIP", prompt, "clip")
    sampler = b.add("KSampler", ksampler(ANIMAGINE), column=3)
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
    hires = b.add("KSampler", ksampler(ANIMAGINE, steps=20, denoise=0.5), column=3, title="Hires: sampler")
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


def block_weighted_merge(b: WorkflowBuilder) -> None:
    b.note(
        """
# Block-weighted merge (MBW): high-res replace

The **AnimeDiffusion** card's recipe: AnimeDiffusion[Merge] is AnimeDiffusion[Base] (**A**) with its
high-resolution UNet blocks replaced by Aurora (**B**), preset **HIGHRES_REPLACE**:
`0,0,1,1,0.67,0.67,0.33,0.33,0,0,0,0,0,0,0,0,0,0,0,0.33,0.33,0.67,0.67,1,1,0`
(BASE, IN00-IN11, M00, OUT00-OUT11; each weight = fraction of B).

- **Model A / Model B / Preset** (left) set both merges at once: the in-graph preview and the file.
- **Preview**: A, B and the merge sampled on the **same seed** (*Seed*), saved side by side
  as one image: A | B | merge.
- **Save**: *Block Merge Checkpoint Files* streams A and B into
  `output/checkpoints/animekit-merge/highres-replace_00001_.safetensors` (fp16, A's VAE), with
  SuperMerger / A1111 merge metadata. Its *report* lists the weight every block got.

On SDXL the same preset lands on the same resolution levels (20 weights).
""",
        column=0,
        title="About this workflow",
    )
    loader_a = b.add("CheckpointLoaderSimple", {"ckpt_name": SD15_MERGE_A}, column=2, title="Load Checkpoint A")
    loader_b = b.add("CheckpointLoaderSimple", {"ckpt_name": SD15_MERGE_B}, column=2, title="Load Checkpoint B")
    merge_options = {"preset": "HIGHRES_REPLACE", "weights": "", "method": "weighted-sum"}
    merge_model = b.add("AnimeKitBlockMergeModel", merge_options, column=3)
    b.link(loader_a, "MODEL", merge_model, "model_a")
    b.link(loader_b, "MODEL", merge_model, "model_b")
    merge_clip = b.add("AnimeKitBlockMergeClip", merge_options, column=3)
    b.link(loader_a, "CLIP", merge_clip, "clip_a")
    b.link(loader_b, "CLIP", merge_clip, "clip_b")
    report = b.add("PreviewAny", column=3, title="Merge report (per-block weights)")
    b.link(merge_model, 1, report, "source")  # outputs: model, report

    prompt = b.add("AnimeKitPromptBuilder", {
        "profile": SD15, "subject": "1girl", "solo": True,
        "tags": "smile, looking at viewer, upper body, white background",
        "quality": "default", "sfw_guard": True, "negative_preset": "default",
    }, column=4, width=400)
    size = b.add("AnimeKitAspectPreset", {"profile": SD15, "size": "512x768 (2:3 portrait)",
                                          "batch_size": 1}, column=5)
    seed = b.add("PrimitiveInt", {"value": 1234}, column=1, title="Seed (all three samples)",
                 controls={"value": "fixed"})

    b.next_band()
    decoded = []
    for label, model, clip, vae in (("A", loader_a, loader_a, loader_a), ("B", loader_b, loader_b, loader_b),
                                    ("merge", merge_model, merge_clip, loader_a)):
        skip = b.add("CLIPSetLastLayer", clip_skip(SD15), column=2,
                     title=f"Clip skip {sampling(SD15).clip_skip} ({label})")
        b.link(clip, "CLIP", skip, "clip")
        positive = b.add("CLIPTextEncode", {"text": ""}, column=3, title=f"Positive ({label})", colors=("#232", "#353"))
        negative = b.add("CLIPTextEncode", {"text": ""}, column=3, title=f"Negative ({label})", colors=("#322", "#533"))
        for encode, output in ((positive, "positive"), (negative, "negative")):
            b.link(prompt, output, encode, "text")
            b.link(skip, "CLIP", encode, "clip")
        sampler = b.add("KSampler", ksampler(SD15), column=4, title=f"Sample {label}")
        b.link(model, "MODEL", sampler, "model")
        b.link(positive, 0, sampler, "positive")
        b.link(negative, 0, sampler, "negative")
        b.link(size, "LATENT", sampler, "latent_image")
        b.link(seed, "INT", sampler, "seed")
        decode = b.add("VAEDecode", column=5, width=220, title=f"Decode {label}")
        b.link(sampler, "LATENT", decode, "samples")
        b.link(vae, "VAE", decode, "vae")
        decoded.append(decode)
        b.next_band()

    stitch = {"direction": "right", "match_image_size": True, "spacing_width": 16, "spacing_color": "white"}
    a_b = b.add("ImageStitch", stitch, column=6, title="A | B", band=1)
    b.link(decoded[0], "IMAGE", a_b, "image1")
    b.link(decoded[1], "IMAGE", a_b, "image2")
    all_three = b.add("ImageStitch", stitch, column=6, title="A | B | merge", band=1)
    b.link(a_b, "IMAGE", all_three, "image1")
    b.link(decoded[2], "IMAGE", all_three, "image2")
    save = b.add("SaveImage", {"filename_prefix": f"{OUTPUT_PREFIX}/mbw-compare"}, column=7, width=520, band=1)
    b.link(all_three, "IMAGE", save, "images")

    file_merge = b.add("AnimeKitBlockMergeCheckpoint", {
        "ckpt_a": SD15_MERGE_A, "ckpt_b": SD15_MERGE_B, **merge_options, "ckpt_c": "(none)", "dtype": "fp16",
        "vae": "keep A's", "filename_prefix": "animekit-merge/highres-replace",
    }, column=3, width=380)
    file_report = b.add("PreviewAny", column=4, title="Saved file and report", width=420)
    b.link(file_merge, 1, file_report, "source")  # outputs: path, report
    b.group("Save the merged checkpoint (fp16, streamed)", [file_merge, file_report])

    b.primitive([(loader_a, "ckpt_name"), (file_merge, "ckpt_a")], column=1, title="Model A", band=0)
    b.primitive([(loader_b, "ckpt_name"), (file_merge, "ckpt_b")], column=1, title="Model B", band=0)
    b.primitive([(merge_model, "preset"), (merge_clip, "preset"), (file_merge, "preset")], column=1, title="Preset", band=0)


def merge_compare_grid(b: WorkflowBuilder) -> None:
    b.note(
        """
# Compare merges on a grid before saving

SuperMerger's XY plot in the graph: *Merge Compare Grid* merges **A** and **B** lazily for every cell
(no weights are copied), samples each cell with ComfyUI's own sampler on the **same seed**, and writes
the axis values on the grid. One merged model is alive at a time.

- **X axis**: presets (`HIGHRES_REPLACE; LOWRES_REPLACE; GRAD_V; GRAD_A`). Other kinds: weight lists,
  a uniform `alpha`, methods, TIES / DARE densities, the `beta` of the three-model sums.
- **Y axis**: methods (`weighted-sum; slerp`); set *y_type* to `none` for one row.
- Weights are the **fraction of B** (0 = A, 1 = B). The text encoder is A's in every cell.

When a cell looks right, put its preset and method into *Block Merge Checkpoint Files* to save it.
""",
        column=0,
        title="About this workflow",
    )
    loader_a = b.add("CheckpointLoaderSimple", {"ckpt_name": SD15_MERGE_A}, column=1, title="Load Checkpoint A")
    loader_b = b.add("CheckpointLoaderSimple", {"ckpt_name": SD15_MERGE_B}, column=1, title="Load Checkpoint B")
    prompt = b.add("AnimeKitPromptBuilder", {
        "profile": SD15, "subject": "1girl", "solo": True,
        "tags": "smile, looking at viewer, upper body, white background",
        "quality": "default", "sfw_guard": True, "negative_preset": "default",
    }, column=2, width=400)
    skip = b.add("CLIPSetLastLayer", clip_skip(SD15), column=2, title=f"Clip skip {sampling(SD15).clip_skip}")
    b.link(loader_a, "CLIP", skip, "clip")
    positive = b.add("CLIPTextEncode", {"text": ""}, column=3, title="Positive", colors=("#232", "#353"))
    negative = b.add("CLIPTextEncode", {"text": ""}, column=3, title="Negative", colors=("#322", "#533"))
    for encode, output in ((positive, "positive"), (negative, "negative")):
        b.link(prompt, output, encode, "text")
        b.link(skip, "CLIP", encode, "clip")
    size = b.add("AnimeKitAspectPreset", {"profile": SD15, "size": "512x768 (2:3 portrait)", "batch_size": 1}, column=3)
    sampler = {k: v for k, v in ksampler(SD15).items() if k != "denoise"}
    grid = b.add("AnimeKitMergeGrid", {
        **sampler, "preset": "HIGHRES_REPLACE", "weights": "", "method": "weighted-sum", "density": 0.5,
        "x_type": "preset", "x_values": "HIGHRES_REPLACE; LOWRES_REPLACE; GRAD_V; GRAD_A",
        "y_type": "method", "y_values": "weighted-sum; slerp",
    }, column=4, width=380)
    b.link(loader_a, "MODEL", grid, "model_a")
    b.link(loader_b, "MODEL", grid, "model_b")
    b.link(positive, 0, grid, "positive")
    b.link(negative, 0, grid, "negative")
    b.link(size, "LATENT", grid, "latent_image")
    b.link(loader_a, "VAE", grid, "vae")
    save = b.add("SaveImage", {"filename_prefix": f"{OUTPUT_PREFIX}/merge-grid"}, column=5, width=520)
    b.link(grid, 0, save, "images")  # outputs: grid, cells, labels
    labels = b.add("PreviewAny", column=5, title="Cell labels")
    b.link(grid, 2, labels, "source")
    seed = b.add("PrimitiveInt", {"value": 1234}, column=3, title="Seed (every cell and A)", controls={"value": "fixed"})
    b.link(seed, "INT", grid, "seed")

    b.next_band()
    reference = b.add("KSampler", ksampler(SD15), column=4, title="Sample A alone (reference)")
    b.link(loader_a, "MODEL", reference, "model")
    b.link(positive, 0, reference, "positive")
    b.link(negative, 0, reference, "negative")
    b.link(size, "LATENT", reference, "latent_image")
    b.link(seed, "INT", reference, "seed")
    decode = b.add("VAEDecode", column=5, width=220, title="Decode A")
    b.link(reference, "LATENT", decode, "samples")
    b.link(loader_a, "VAE", decode, "vae")
    preview = b.add("PreviewImage", column=5, title="A alone")
    b.link(decode, "IMAGE", preview, "images")


def lora_training(b: WorkflowBuilder) -> None:
    b.note(
        f"""
# LoRA training (SD1.5 anime)

**Dataset**: put images with same-name `.txt` Danbooru-tag captions in
`ComfyUI/input/{LORA_DATASET}/10_{LORA_TRIGGER}/` (kohya layout: `10_` = seen 10 times per epoch).
*caption_prefix* `{LORA_TRIGGER}` is the trigger word, kept first (*keep_tokens* 1) while the other
tags are shuffled. The *preview* output lists what was found.

Settings from the seed cards:
- **Caption dropout 0.2** and **noise offset 0.05**: AnimeDiffusion's training values.
- **Buckets** around 512 (256-1024, step 64): SD1.5's; use 1024 for SDXL models.
- **Clip skip 2** while training and sampling, as AnimeDiffusion models are used.

LoRA rank 16 / alpha 8, AdamW at 1e-4, min-SNR 5, 1000 steps; samples every 250 steps show on the
trainer. The LoRA is saved to `models/loras/animekit/{LORA_TRIGGER}.safetensors` (kohya format,
with metadata), and the graph samples with it right away; later, use *Load LoRA*.
Cancel saves a resume state: turn *resume* on to continue.
""",
        column=0,
        title="About this workflow",
    )
    loader = b.add("CheckpointLoaderSimple", {"ckpt_name": SD15_CHECKPOINT}, column=1)
    skip = b.add("CLIPSetLastLayer", clip_skip(SD15), column=1, title=f"Clip skip {sampling(SD15).clip_skip}")
    b.link(loader, "CLIP", skip, "clip")
    dataset = b.add("AnimeKitDataset", {
        "folder": LORA_DATASET, "repeats": 0, "caption_extension": ".txt", "resolution": 512,
        "min_bucket_size": 256, "max_bucket_size": 1024, "bucket_step": 64, "bucket_no_upscale": False,
        "shuffle_caption": True, "keep_tokens": 1, "caption_prefix": LORA_TRIGGER,
        "caption_dropout_rate": 0.2, "flip": False,
    }, column=2, width=360)
    preview = b.add("PreviewAny", column=2, title="Dataset preview", width=360)
    b.link(dataset, "preview", preview, "source")
    train = b.add("AnimeKitTrainLora", {
        "filename": f"animekit/{LORA_TRIGGER}", "steps": 1000, "batch_size": 1, "gradient_accumulation": 1,
        "unet_lr": 1e-4, "train_text_encoder": False, "rank": 16, "alpha": 8.0, "noise_offset": 0.05,
        "min_snr_gamma": 5.0, "optimizer": "adamw", "lr_scheduler": "constant_with_warmup", "warmup_steps": 50,
        "gradient_checkpointing": True, "cache_latents": "memory", "training_seed": 42,
        "sample_every_n_steps": 250,
        "sample_prompts": f"masterpiece, best quality, {LORA_TRIGGER}, 1girl, solo, smile, upper body",
        "sample_negative": "lowres, bad anatomy, bad hands, text, error, worst quality, low quality, normal quality",
        "sample_steps": 20, "sample_cfg": sampling(SD15).cfg,
    }, column=3, width=400)
    b.link(loader, "MODEL", train, "model")
    b.link(skip, "CLIP", train, "clip")
    b.link(loader, "VAE", train, "vae")
    b.link(dataset, "dataset", train, "dataset")
    loss = b.add("PreviewImage", column=3, title="Loss", width=400)
    b.link(train, "loss_graph", loss, "images")

    prompt = b.add("AnimeKitPromptBuilder", {
        "profile": SD15, "subject": "1girl", "solo": True, "characters": LORA_TRIGGER,
        "tags": "smile, looking at viewer, upper body", "quality": "default", "sfw_guard": True,
        "negative_preset": "default",
    }, column=4, width=400)
    size = b.add("AnimeKitAspectPreset", {"profile": SD15, "size": "512x768 (2:3 portrait)"}, column=4)
    positive = b.add("CLIPTextEncode", {"text": ""}, column=5, title="Positive prompt", colors=("#232", "#353"))
    negative = b.add("CLIPTextEncode", {"text": ""}, column=5, title="Negative prompt", colors=("#322", "#533"))
    for encode, output in ((positive, "positive"), (negative, "negative")):
        b.link(prompt, output, encode, "text")
        b.link(train, "clip", encode, "clip")
    sampler = b.add("KSampler", ksampler(SD15), column=6, title="Sample with the new LoRA")
    b.link(train, "model", sampler, "model")
    b.link(positive, 0, sampler, "positive")
    b.link(negative, 0, sampler, "negative")
    b.link(size, "LATENT", sampler, "latent_image")
    decode = b.add("VAEDecode", column=7, width=220)
    b.link(sampler, "LATENT", decode, "samples")
    b.link(loader, "VAE", decode, "vae")
    save = b.add("SaveImage", {"filename_prefix": f"{OUTPUT_PREFIX}/lora-{LORA_TRIGGER}"}, column=7, width=360)
    b.link(decode, "IMAGE", save, "images")


def two_stage_finetune(b: WorkflowBuilder) -> None:
    b.note(
        f"""
# Two-stage fine-tune, the Animagine XL 3.0 way

Animagine XL 3.0 was fine-tuned from Animagine XL 2.0 in two stages (its model card):

| | Stage 1: feature alignment | Stage 2: refining UNet |
|---|---|---|
| data | the big tagged set | a small curated set |
| UNet lr | 7.5e-6 | 2e-6 |
| text encoders | trained, lr 3.75e-6 | frozen |
| noise offset | none (0) | **0.0357** |
| batch | 48 (x2 GPUs) | 48 |

Both: fp16, Adafactor, buckets 512-2048 around 1024, tags shuffled after the `|||`
*keep_tokens_separator* ("Shuffle Separator"; write captions as `1girl, name, series ||| tags`).

Stage 2 trains **stage 1's output** (its model and clip outputs). Batch 4 x gradient
accumulation 12 gives the card's 48 on one GPU. The card ran 10 epochs per stage: set *steps* to
10 x images x repeats / 48. Datasets: `ComfyUI/input/{STAGE1_DATASET}` and `.../{STAGE2_DATASET}`.
Checkpoints go to `output/checkpoints/animagine-manner/`; the last group samples with stage 2.
""",
        column=0,
        width=480,
        title="About this workflow",
    )
    loader = b.add("CheckpointLoaderSimple", {"ckpt_name": FINETUNE_BASE}, column=1)
    buckets = {"caption_extension": ".txt", "resolution": 1024, "min_bucket_size": 512, "max_bucket_size": 2048,
               "bucket_step": 64, "bucket_no_upscale": False, "shuffle_caption": True, "keep_tokens": 0,
               "keep_tokens_separator": "|||", "caption_dropout_rate": 0.0, "flip": False}
    common = {"batch_size": 4, "gradient_accumulation": 12, "optimizer": "adafactor",
              "lr_scheduler": "constant_with_warmup", "mixed_precision": "fp16", "gradient_checkpointing": True,
              "cache_latents": "disk", "min_snr_gamma": 0.0, "training_seed": 42}
    stage1_data = b.add("AnimeKitDataset", {"folder": STAGE1_DATASET, "repeats": 1, **buckets}, column=2, width=360,
                        title="Stage 1 dataset")
    stage1 = b.add("AnimeKitTrainCheckpoint", {
        "filename": "animagine-manner/stage1", "steps": 10000, **common, "unet_lr": 7.5e-6,
        "train_text_encoder": True, "text_encoder_lr": 3.75e-6, "noise_offset": 0.0, "warmup_steps": 100,
    }, column=3, width=400, title="Stage 1: feature alignment (UNet + text encoders)")
    b.link(loader, "MODEL", stage1, "model")
    b.link(loader, "CLIP", stage1, "clip")
    b.link(loader, "VAE", stage1, "vae")
    b.link(stage1_data, "dataset", stage1, "dataset")
    stage1_loss = b.add("PreviewImage", column=4, title="Stage 1 loss", width=360)
    b.link(stage1, "loss_graph", stage1_loss, "images")

    b.next_band()
    stage2_data = b.add("AnimeKitDataset", {"folder": STAGE2_DATASET, "repeats": 1, **buckets}, column=2, width=360,
                        title="Stage 2 dataset")
    stage2 = b.add("AnimeKitTrainCheckpoint", {
        "filename": "animagine-manner/stage2", "steps": 500, **common, "unet_lr": 2e-6,
        "train_text_encoder": False, "noise_offset": 0.0357, "warmup_steps": 50,
    }, column=3, width=400, title="Stage 2: refining UNet (text encoders frozen)")
    b.link(stage1, "model", stage2, "model")
    b.link(stage1, "clip", stage2, "clip")
    b.link(loader, "VAE", stage2, "vae")
    b.link(stage2_data, "dataset", stage2, "dataset")
    stage2_loss = b.add("PreviewImage", column=4, title="Stage 2 loss", width=360)
    b.link(stage2, "loss_graph", stage2_loss, "images")

    prompt = b.add("AnimeKitPromptEncode", {
        "profile": ANIMAGINE, "subject": "1girl", "solo": True, "tags": "upper body, smile, looking at viewer",
        "quality": "default", "rating": "general", "year": "newest", "sfw_guard": True, "negative_preset": "default",
    }, column=5, width=400)
    b.link(stage2, "clip", prompt, "clip")
    size = b.add("AnimeKitAspectPreset", {"profile": ANIMAGINE, "size": "832x1216 (13:19 portrait)"},
                 column=5)
    sampler = b.add("KSampler", ksampler(ANIMAGINE), column=6, title="Sample stage 2")
    b.link(stage2, "model", sampler, "model")
    b.link(prompt, "positive", sampler, "positive")
    b.link(prompt, "negative", sampler, "negative")
    b.link(size, "LATENT", sampler, "latent_image")
    decode = b.add("VAEDecode", column=7, width=220)
    b.link(sampler, "LATENT", decode, "samples")
    b.link(loader, "VAE", decode, "vae")
    save = b.add("SaveImage", {"filename_prefix": f"{OUTPUT_PREFIX}/finetune-stage2"}, column=7, width=360)
    b.link(decode, "IMAGE", save, "images")
    b.group("Sample the fine-tuned model", [prompt, size, sampler, decode, save])


def raw_folder_to_lora(b: WorkflowBuilder) -> None:
    b.note(
        f"""
# From a raw image folder to a LoRA, the seeds' way

Put untagged images in `ComfyUI/input/{RAW_DATASET}/`. The dataset nodes run in the order the seed models'
datasets were made, each passing the folder on to the next:

1. **Tag Images**: a WD14 tagger (`model.onnx` + `selected_tags.csv`, e.g. SmilingWolf's wd-*-tagger) in
   `models/animekit_taggers/<name>/`, or its path. Images that already have a caption keep it.
2. **Format Captions**: Animagine XL 3.0's training order, `1girl, character, series ||| everything else`, with
   quality / rating / year tags from each image's metadata JSON when there is one. Turn *write* off to only
   preview; originals are kept as `.txt.orig`.
3. **Score Images**: an aesthetic model (Cafe-aesthetic kind, or CLIP + MLP like waifu-scorer) in
   `models/animekit_aesthetic/<name>/`, as AnimeDiffusion filtered its data. Scores go to `aesthetic_scores.json`.
4. **Dataset Stats**: tags, buckets, over-long captions, small images and duplicates: read it before training.
5. **AnimeKit Dataset** trains on images scoring at least *min_aesthetic_score* ({number(MIN_AESTHETIC)}), never
   deleting the others, with *keep_tokens_separator* `|||` so the front of each caption stays in place while the
   rest is shuffled (Animagine's "Shuffle Separator").

The LoRA (rank 16 / alpha 8, AdamW 1e-4, 1000 steps at 1024 buckets) is saved to
`models/loras/animekit/{DATASET_TRIGGER}.safetensors`.
""",
        column=0,
        title="About this workflow",
    )
    tag = b.add("AnimeKitTagImages", {"folder": RAW_DATASET, "general_threshold": 0.35, "character_threshold": 0.85,
                                      "exclude": "watermark, signature, artist name"}, column=1, width=340)  # fmt: skip
    fmt = b.add("AnimeKitFormatCaptions", {"profile": ANIMAGINE, "write": True, "use_metadata": True, "separator": "|||"},
                column=1, width=340)  # fmt: skip
    b.link(tag, "folder", fmt, "folder")
    score = b.add("AnimeKitScoreImages", {"label": ""}, column=2, width=340)
    b.link(fmt, "folder", score, "folder")
    stats = b.add("AnimeKitDatasetStats", {"profile": ANIMAGINE, "near_distance": 4}, column=2, width=340)
    b.link(score, "folder", stats, "folder")
    b.group("Prepare the dataset", [tag, fmt, score, stats])
    dataset = b.add("AnimeKitDataset", {
        "repeats": 0, "caption_extension": ".txt", "resolution": 1024, "min_bucket_size": 512, "max_bucket_size": 2048,
        "bucket_step": 64, "shuffle_caption": True, "keep_tokens": 0, "keep_tokens_separator": "|||",
        "caption_dropout_rate": 0.1, "flip": False, "min_aesthetic_score": MIN_AESTHETIC,
    }, column=3, width=360)  # fmt: skip
    b.link(stats, "folder", dataset, "folder")
    preview = b.add("PreviewAny", column=3, title="Dataset preview", width=360)
    b.link(dataset, "preview", preview, "source")
    loader = b.add("CheckpointLoaderSimple", {"ckpt_name": ANIMAGINE_CHECKPOINT}, column=4)
    train = b.add("AnimeKitTrainLora", {
        "filename": f"animekit/{DATASET_TRIGGER}", "steps": 1000, "batch_size": 1, "gradient_accumulation": 1,
        "unet_lr": 1e-4, "train_text_encoder": False, "rank": 16, "alpha": 8.0, "min_snr_gamma": 5.0,
        "optimizer": "adamw", "lr_scheduler": "constant_with_warmup", "warmup_steps": 50,
        "gradient_checkpointing": True, "cache_latents": "memory", "training_seed": 42, "sample_every_n_steps": 250,
        "sample_prompts": "masterpiece, best quality, 1girl, solo, smile, upper body",
        "sample_negative": load_profile(ANIMAGINE).negative, "sample_steps": sampling(ANIMAGINE).steps,
        "sample_cfg": sampling(ANIMAGINE).cfg,
    }, column=4, width=400)  # fmt: skip
    b.link(loader, "MODEL", train, "model")
    b.link(loader, "CLIP", train, "clip")
    b.link(loader, "VAE", train, "vae")
    b.link(dataset, "dataset", train, "dataset")
    loss = b.add("PreviewImage", column=5, title="Loss", width=400)
    b.link(train, "loss_graph", loss, "images")

    b.next_band()
    prompt = b.add("AnimeKitPromptBuilder", {
        "profile": ANIMAGINE, "subject": "1girl", "solo": True, "tags": "smile, looking at viewer, upper body",
        "quality": "default", "sfw_guard": True, "negative_preset": "default",
    }, column=3, width=360)  # fmt: skip
    size = b.add("AnimeKitAspectPreset", {"profile": ANIMAGINE, "size": "832x1216 (13:19 portrait)", "batch_size": 1}, column=3)
    positive = b.add("CLIPTextEncode", {"text": ""}, column=4, title="Positive prompt", colors=("#232", "#353"))
    negative = b.add("CLIPTextEncode", {"text": ""}, column=4, title="Negative prompt", colors=("#322", "#533"))
    for encode, output in ((positive, "positive"), (negative, "negative")):
        b.link(prompt, output, encode, "text")
        b.link(train, "clip", encode, "clip")
    sampler = b.add("KSampler", ksampler(ANIMAGINE), column=5, title="Sample with the new LoRA")
    b.link(train, "model", sampler, "model")
    b.link(positive, 0, sampler, "positive")
    b.link(negative, 0, sampler, "negative")
    b.link(size, "LATENT", sampler, "latent_image")
    decode = b.add("VAEDecode", column=6, width=220)
    b.link(sampler, "LATENT", decode, "samples")
    b.link(loader, "VAE", decode, "vae")
    save = b.add("SaveImage", {"filename_prefix": f"{OUTPUT_PREFIX}/lora-{DATASET_TRIGGER}"}, column=6, width=360)
    b.link(decode, "IMAGE", save, "images")


WORKFLOWS: tuple[WorkflowSpec, ...] = (
    WorkflowSpec(
        "animagine-xl-3-text-to-image",
        "Animagine XL 3.0 text-to-image",
        "Animagine XL 3.0 txt2img by its card: tag order, quality/rating/year tags, SFW guard, "
        f"a card resolution, {sampler_title(ANIMAGINE)} at CFG {number(sampling(ANIMAGINE).cfg)} and "
        f"{sampling(ANIMAGINE).steps} steps, and an optional hires pass.",
        animagine_xl_3_text_to_image,
    ),
    WorkflowSpec(
        "sd15-anime-text-to-image",
        "SD1.5 anime text-to-image (AnimeDiffusion style)",
        f"SD1.5 anime txt2img the AnimeDiffusion way: clip skip {sampling(SD15).clip_skip}, 512x768, "
        "the card's negative prompt.",
        sd15_anime_text_to_image,
    ),
    WorkflowSpec(
        "block-weighted-merge",
        "Block-weighted merge (MBW, high-res replace)",
        "Two checkpoints merged block by block with the AnimeDiffusion card's high-res replace preset, "
        "A, B and the merge sampled side by side on one seed, and the merge saved as an fp16 checkpoint.",
        block_weighted_merge,
    ),
    WorkflowSpec(
        "merge-compare-grid",
        "Compare merges on a grid (presets x methods)",
        "Two checkpoints merged lazily per cell with four presets and two methods, each cell sampled on one seed, "
        "the labelled grid saved: SuperMerger's XY plot before saving a merge.",
        merge_compare_grid,
    ),
    WorkflowSpec(
        "lora-training",
        "LoRA training (SD1.5 anime)",
        "A dataset folder trained into a kohya-format LoRA with the cards' caption dropout, noise offset, buckets "
        "and clip skip, then sampled with the new LoRA.",
        lora_training,
    ),
    WorkflowSpec(
        "two-stage-finetune",
        "Two-stage fine-tune (Animagine XL 3.0 manner)",
        "Animagine XL 3.0's recipe: stage 1 trains UNet and text encoders, stage 2 refines the UNet only "
        "with noise offset 0.0357, then the result is sampled.",
        two_stage_finetune,
    ),
    WorkflowSpec(
        "raw-folder-to-lora",
        "Raw image folder to LoRA (tag, order, filter, train)",
        "Untagged images tagged with a WD14 tagger, captions put in Animagine XL 3.0's training order with the "
        "keep-tokens separator, scored with an aesthetic model, inspected, trained into a LoRA above a score, "
        "then sampled with the new LoRA.",
        raw_folder_to_lora,
    ),
)
