"""Dataset nodes: a raw image folder -> tagged, ordered, scored, inspected, ready for AnimeKit Dataset.

Each takes the dataset `folder` (inside ComfyUI's input folder or absolute) and passes it on, so
they chain in the order a user takes the steps (Tag -> Format -> Score -> Stats -> Dataset) and each
runs after the one before. They show progress, stop on Cancel between images, and re-run when a
file in the folder changes. Node ids and input names are public API.
"""

from __future__ import annotations

import os

import comfy.model_management
import comfy.utils
from comfy_api.latest import io, ui

from ...datasets.aesthetic import load_scorer, score_folder
from ...datasets.caption_format import KEEP_TOKENS_SEPARATOR, FormatConfig, plan_folder, write_plan
from ...datasets.stats import StatsConfig, dataset_stats
from ...datasets.tagger import TaggerConfig, WdTagger, tag_folder
from ...prompting.categories import category_source
from ...prompting.profile import DEFAULT_PROFILE, load_profile, profile_ids
from ...training.data.dataset import BucketConfig
from ..training.dataset import folder_fingerprint, resolve_folder
from . import model_folders

CATEGORY = "AnimeKit/dataset"
FOLDER_TOOLTIP = "Image folder: a path inside ComfyUI's input folder (e.g. `my_character`) or an absolute path; kohya `N_name` subfolders are included."


def _folder_input():
    return io.String.Input("folder", default="", tooltip=FOLDER_TOOLTIP)


def _outputs():
    return [
        io.String.Output("folder_out", display_name="folder", tooltip="The same folder, for the next dataset step."),
        io.String.Output("report", display_name="report", tooltip="What was done."),
    ]


class _Progress:
    """comfy.utils.ProgressBar for a core function's progress(done, total); Cancel checked between items."""

    def __init__(self):
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = comfy.utils.ProgressBar(max(total, 1))
        self.bar.update_absolute(done, max(total, 1))

    @staticmethod
    def cancel() -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()


def _failures(text: str, failed) -> str:
    return text + "".join(f"\nskipped {path}: {why}" for path, why in failed[:20])


class AnimeKitTagImages(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="AnimeKitTagImages",
            display_name="AnimeKit Tag Images",
            category=CATEGORY,
            description="Caption every image without a caption using a WD14-style ONNX tagger (model.onnx + "
            "selected_tags.csv in models/animekit_taggers/<name>/ or at a path). onnxruntime on the CPU, CUDA when "
            "onnxruntime-gpu is installed.",
            is_output_node=True,
            inputs=[
                _folder_input(),
                io.Combo.Input("tagger", options=model_folders.choices(model_folders.TAGGERS),
                               tooltip="A tagger folder in models/animekit_taggers (holding model.onnx and selected_tags.csv)."),
                io.String.Input("tagger_path", default="", tooltip="Or the tagger folder's path (used when set)."),
                io.Float.Input("general_threshold", default=0.35, min=0.0, max=1.0, step=0.01,
                               tooltip="Write general tags at or above this probability (0.35 usual)."),
                io.Float.Input("character_threshold", default=0.85, min=0.0, max=1.0, step=0.01,
                               tooltip="Write character tags at or above this probability (0.85 usual)."),
                io.String.Input("exclude", default="", tooltip="Comma-separated tags never written (e.g. `watermark, signature`)."),
                io.Boolean.Input("overwrite", default=False,
                                 tooltip="Re-tag images that already have a caption (each original kept as .txt.orig)."),
            ],
            outputs=_outputs(),
        )

    @classmethod
    def fingerprint_inputs(cls, folder, **kwargs):
        return folder_fingerprint(folder)

    @classmethod
    def execute(cls, folder, tagger, tagger_path, general_threshold, character_threshold, exclude, overwrite) -> io.NodeOutput:
        path = resolve_folder(folder)
        cfg = TaggerConfig(general_threshold=general_threshold, character_threshold=character_threshold,
                           exclude=tuple(t.strip() for t in exclude.split(",") if t.strip()), overwrite=overwrite)  # fmt: skip
        model = WdTagger(model_folders.resolve(model_folders.TAGGERS, tagger, tagger_path))
        progress = _Progress()
        report = tag_folder(path, model, cfg, progress=progress, check_cancel=progress.cancel)
        text = _failures(report.summary(), report.failed)
        return io.NodeOutput(folder, text, ui=ui.PreviewText(text))


class AnimeKitFormatCaptions(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="AnimeKitFormatCaptions",
            display_name="AnimeKit Format Captions",
            category=CATEGORY,
            description="Rewrite captions in a profile's training order (Animagine: 1girl/1boy, character, series ||| "
            "everything else, for kohya's keep_tokens_separator), with quality / rating / year tags from each image's "
            "metadata JSON (score, rating, date). Shows a preview; with `write` on it writes (originals kept as .orig).",
            is_output_node=True,
            inputs=[
                _folder_input(),
                io.Combo.Input("profile", options=profile_ids(), default=DEFAULT_PROFILE, tooltip="The model whose training order to use."),
                io.Boolean.Input("write", default=False, tooltip="Off: only show what would change. On: rewrite the captions."),
                io.Boolean.Input("use_metadata", default=True,
                                 tooltip="Add the profile's quality / rating / year tags from image.png.json or image.json."),
                io.String.Input("separator", default=KEEP_TOKENS_SEPARATOR,
                                tooltip="Written after the fixed part (set the Dataset node's keep_tokens_separator to the same); empty for none."),
            ],
            outputs=_outputs(),
        )

    @classmethod
    def fingerprint_inputs(cls, folder, **kwargs):
        return folder_fingerprint(folder)

    @classmethod
    def execute(cls, folder, profile, write, use_metadata, separator) -> io.NodeOutput:
        path = resolve_folder(folder)
        chosen = load_profile(profile)
        cfg = FormatConfig(profile=chosen.id, separator=separator, use_metadata=use_metadata)
        progress = _Progress()
        plan = plan_folder(path, chosen, category_source(), cfg, progress=progress, check_cancel=progress.cancel)
        if write:
            kept = write_plan(plan, progress=_Progress(), check_cancel=progress.cancel)
            text = f"rewrote {len(plan.changes)} captions ({len(kept)} originals kept as .orig); {plan.summary()}"
        else:
            text = plan.preview(path)
        text = _failures(text, plan.failed)
        return io.NodeOutput(folder, text, ui=ui.PreviewText(text))


class AnimeKitScoreImages(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="AnimeKitScoreImages",
            display_name="AnimeKit Score Images",
            category=CATEGORY,
            description="Score each image with an aesthetic model (a transformers image classifier such as Cafe-aesthetic, "
            "or a CLIP vision model + MLP such as waifu-scorer) from models/animekit_aesthetic/<name>/ or a path. Scores "
            "go to aesthetic_scores.json beside the images; AnimeKit Dataset's min_aesthetic_score trains above a threshold.",
            is_output_node=True,
            inputs=[
                _folder_input(),
                io.Combo.Input("scorer", options=model_folders.choices(model_folders.AESTHETIC),
                               tooltip="A model folder in models/animekit_aesthetic (with config.json)."),
                io.String.Input("scorer_path", default="", tooltip="Or the model folder's path (used when set)."),
                io.String.Input("label", default="", tooltip="Classifier label whose probability is the score (empty: `aesthetic`)."),
            ],
            outputs=_outputs(),
        )

    @classmethod
    def fingerprint_inputs(cls, folder, **kwargs):
        return folder_fingerprint(folder)

    @classmethod
    def execute(cls, folder, scorer, scorer_path, label) -> io.NodeOutput:
        path = resolve_folder(folder)
        model = load_scorer(model_folders.resolve(model_folders.AESTHETIC, scorer, scorer_path), label=label.strip() or None)
        progress = _Progress()
        report = score_folder(path, model, progress=progress, check_cancel=progress.cancel)
        text = _failures(report.summary(), report.failed)
        return io.NodeOutput(folder, text, ui=ui.PreviewText(text))


def _host_tokenizer() -> str | None:
    """ComfyUI's own CLIP vocabulary (comfy/sd1_tokenizer), for exact token counts in the host."""
    folder = os.path.join(os.path.dirname(comfy.utils.__file__), "sd1_tokenizer")
    return folder if os.path.isfile(os.path.join(folder, "vocab.json")) else None


class AnimeKitDatasetStats(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="AnimeKitDatasetStats",
            display_name="AnimeKit Dataset Stats",
            category=CATEGORY,
            description="Inspect a folder before training: tag frequencies, bucket histogram, captions over 75 / 225 CLIP "
            "tokens, images smaller than the smallest bucket, exact and near duplicates.",
            is_output_node=True,
            inputs=[
                _folder_input(),
                io.Combo.Input("profile", options=profile_ids(), default=DEFAULT_PROFILE, tooltip="Whose training buckets to use."),
                io.Int.Input("near_distance", default=4, min=0, max=32, tooltip="dHash bits that may differ for near duplicates (of 64)."),
            ],
            outputs=_outputs(),
        )

    @classmethod
    def fingerprint_inputs(cls, folder, **kwargs):
        return folder_fingerprint(folder)

    @classmethod
    def execute(cls, folder, profile, near_distance) -> io.NodeOutput:
        path = resolve_folder(folder)
        b = load_profile(profile).buckets
        cfg = StatsConfig(buckets=BucketConfig(b.resolution, b.min_size, b.max_size, b.step), near_distance=near_distance,
                          tokenizer=_host_tokenizer())  # fmt: skip
        progress = _Progress()
        text = dataset_stats(path, cfg, progress=progress, check_cancel=progress.cancel).text()
        return io.NodeOutput(folder, text, ui=ui.PreviewText(text))
