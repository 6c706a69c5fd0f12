"""Trainer nodes: a dataset folder in, a kohya-format LoRA or a single-file checkpoint out.

AnimeKitDataset scans a folder once; AnimeKitTrainLora / AnimeKitTrainCheckpoint train the MODEL,
CLIP and VAE they are given with the core trainer (training/), show progress, loss and sample
images on the node, stop cleanly on Cancel (a resume state is saved) and output the trained MODEL
and CLIP so the same workflow samples with the result. Node ids and input names are public API.
"""

from __future__ import annotations

from comfy_api.latest import io, ui

from ...training.data.captions import CaptionConfig
from ...training.data.folder_dataset import above_aesthetic_score
from . import files
from .dataset import bucket_config, build_dataset, folder_fingerprint
from .run import run_training
from .settings import CHECKPOINT, LORA, DatasetType, head_inputs, network_inputs, tail_inputs

CATEGORY = "AnimeKit/training"


class AnimeKitDataset(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="AnimeKitDataset",
            display_name="AnimeKit Dataset",
            category=CATEGORY,
            description="A folder of images with same-name .txt tag captions (kohya layout: `N_name` subfolders repeat "
            "N times), with kohya's caption pipeline and aspect-ratio buckets. Feeds the AnimeKit trainer nodes.",
            inputs=[
                io.String.Input("folder", default="",
                                tooltip="Image folder: a path inside ComfyUI's input folder (e.g. `my_character`) or an "
                                "absolute path. png/jpg/webp/bmp images, each with a caption file of the same name."),
                io.Int.Input("repeats", default=0, min=0, max=10000,
                             tooltip="Times each image is seen per epoch. 0: from kohya folder names (`10_alice` = 10), else 1."),
                io.String.Input("caption_extension", default=".txt", tooltip="Extension of the caption files."),
                io.Int.Input("resolution", default=1024, min=256, max=4096, step=64,
                             tooltip="Training resolution: buckets have about resolution x resolution pixels. "
                             "1024 for SDXL (Animagine, Pony, NoobAI), 512 for SD1.5."),
                io.Int.Input("min_bucket_size", default=0, min=0, max=4096, step=64,
                             tooltip="Smallest bucket side; 0 = half the resolution (kohya's usual). Images smaller than "
                             "this on both sides are skipped."),
                io.Int.Input("max_bucket_size", default=0, min=0, max=8192, step=64,
                             tooltip="Largest bucket side; 0 = twice the resolution."),
                io.Int.Input("bucket_step", default=64, min=8, max=256, step=8,
                             tooltip="Bucket sides are multiples of this (64 kohya's default; 32 finer for SDXL)."),
                io.Boolean.Input("bucket_no_upscale", default=False,
                                 tooltip="Never enlarge an image: each gets its own bucket at or below its size (kohya's bucket_no_upscale)."),
                io.Boolean.Input("shuffle_caption", default=True,
                                 tooltip="Shuffle the tags of each caption every time it is drawn (after the kept ones)."),
                io.Int.Input("keep_tokens", default=1, min=0, max=100,
                             tooltip="Leading tags that stay in place when shuffling (e.g. 1 keeps `1girl` first)."),
                io.String.Input("keep_tokens_separator", default="",
                                tooltip="If set (e.g. `|||`), the caption part before it stays fixed (and the part after a "
                                "second one), instead of keep_tokens. Animagine's 'Shuffle Separator'."),
                io.String.Input("caption_separator", default=",", tooltip="What separates tags in the captions."),
                io.String.Input("caption_prefix", default="",
                                tooltip="Tags put in front of every caption (e.g. a trigger word); they count as kept tokens."),
                io.String.Input("caption_suffix", default="", tooltip="Tags added after every caption."),
                io.Float.Input("caption_dropout_rate", default=0.1, min=0.0, max=1.0, step=0.01,
                               tooltip="Chance a caption is replaced by an empty one, so the model keeps working with "
                               "classifier-free guidance (0.1-0.2 recommended; AnimeDiffusion used 0.2)."),
                io.Int.Input("caption_dropout_every_n_epochs", default=0, min=0, max=1000,
                             tooltip="Drop every caption in every Nth epoch; 0 = off."),
                io.Float.Input("caption_tag_dropout_rate", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Chance each shuffled tag is left out of a draw."),
                io.Boolean.Input("flip", default=False,
                                 tooltip="Randomly mirror images. Off for asymmetric characters (hair parts, logos, text)."),
                io.Boolean.Input("random_crop", default=False,
                                 tooltip="Crop a random part of each resized image instead of its centre (needs cache_latents = none)."),
                io.Float.Input("min_aesthetic_score", default=0.0, min=0.0, max=100.0, step=0.01, optional=True,
                               tooltip="Train only on images whose aesthetic score (aesthetic_scores.json, from AnimeKit Score "
                               "Images) is at least this; the rest are left out, never deleted. 0 = every image."),
            ],
            outputs=[
                DatasetType.Output("dataset", display_name="dataset", tooltip="For AnimeKit Train LoRA / Train Checkpoint."),
                io.String.Output("preview", display_name="preview",
                                 tooltip="What was found: images, folders, buckets, top tags, skipped files."),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, folder, **kwargs):
        return folder_fingerprint(folder)  # re-scan when files change, not only when inputs do

    @classmethod
    def execute(cls, folder, repeats, caption_extension, resolution, min_bucket_size, max_bucket_size, bucket_step,
                bucket_no_upscale, shuffle_caption, keep_tokens, keep_tokens_separator, caption_separator, caption_prefix,
                caption_suffix, caption_dropout_rate, caption_dropout_every_n_epochs, caption_tag_dropout_rate, flip,
                random_crop, min_aesthetic_score=0.0) -> io.NodeOutput:  # fmt: skip
        captions = CaptionConfig(
            prefix=caption_prefix, suffix=caption_suffix, caption_dropout_rate=caption_dropout_rate,
            caption_dropout_every_n_epochs=caption_dropout_every_n_epochs, keep_tokens=keep_tokens,
            keep_tokens_separator=keep_tokens_separator, shuffle_caption=shuffle_caption,
            caption_tag_dropout_rate=caption_tag_dropout_rate, caption_separator=caption_separator,
        )  # fmt: skip
        buckets = bucket_config(resolution, min_bucket_size, max_bucket_size, bucket_step, bucket_no_upscale)
        spec = build_dataset(folder, repeats=repeats, caption_extension=caption_extension, buckets=buckets,
                             captions=captions, flip=flip, random_crop=random_crop)  # fmt: skip
        if min_aesthetic_score:
            spec = above_aesthetic_score(spec, min_aesthetic_score)
        return io.NodeOutput(spec, spec.preview, ui=ui.PreviewText(spec.preview))


def _train(cls, values: dict, lora: bool, title: str) -> io.NodeOutput:
    outcome = run_training(values, lora=lora, node_id=cls.hidden.unique_id, prompt=cls.hidden.prompt, title=title)
    shown = []
    if outcome.samples is not None:
        shown += ui.PreviewImage(outcome.samples, cls=cls).values
    shown += ui.PreviewImage(outcome.loss_graph, cls=cls).values
    return io.NodeOutput(outcome.model, outcome.clip, outcome.name, outcome.loss_graph, ui=ui.SavedImages(shown))


def _outputs(name: str, name_tooltip: str) -> list:
    return [
        io.Model.Output("trained_model", display_name="model", tooltip="The model with the training applied; sample with it right away."),
        io.Clip.Output("trained_clip", display_name="clip", tooltip="The CLIP with the training applied (as input when the text encoder did not train)."),
        io.String.Output(name, display_name=name, tooltip=name_tooltip),
        io.Image.Output("loss_graph", display_name="loss_graph", tooltip="Loss per step, raw and smoothed."),
    ]


class AnimeKitTrainLora(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="AnimeKitTrainLora",
            display_name="AnimeKit Train LoRA",
            category=CATEGORY,
            description="Trains a LoRA on the model (and optionally its text encoders) and saves it to models/loras in "
            "kohya format with training metadata, so LoraLoader, A1111, Forge and Civitai read it. Cancel stops after "
            "saving a resume state; turn resume on to continue.",
            inputs=head_inputs(LORA, lora=True) + network_inputs() + tail_inputs(LORA, lora=True, continue_options=files.lora_choices()),
            outputs=_outputs("lora_name", "The LoRA's name as LoraLoader lists it."),
            hidden=[io.Hidden.unique_id, io.Hidden.prompt],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, **values) -> io.NodeOutput:
        return _train(cls, values, lora=True, title="AnimeKit Train LoRA")


class AnimeKitTrainCheckpoint(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="AnimeKitTrainCheckpoint",
            display_name="AnimeKit Train Checkpoint",
            category=CATEGORY,
            description="Fine-tunes the whole model (UNet, and the text encoders if asked) and saves a single-file "
            "checkpoint to output/checkpoints. The inputs are left unchanged; chain two of these for Animagine's "
            "two-stage recipe (stage 2 fed with stage 1's model and clip).",
            inputs=head_inputs(CHECKPOINT, lora=False) + tail_inputs(CHECKPOINT, lora=False, continue_options=files.checkpoint_choices()),
            outputs=_outputs("checkpoint_name", "The checkpoint's path inside output/checkpoints."),
            hidden=[io.Hidden.unique_id, io.Hidden.prompt],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, **values) -> io.NodeOutput:
        return _train(cls, values, lora=False, title="AnimeKit Train Checkpoint")


