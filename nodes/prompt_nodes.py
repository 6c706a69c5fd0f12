"""Prompt nodes: structured Danbooru prompts per model profile (profiles/prompt.py does the work).

Node ids and input names are public API; see nodes/__init__.py.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..prompting.categories import category_source
from ..prompting.ordering import format_for_profile
from ..prompting.profile import DEFAULT_PROFILE, RATING_LEVELS, YEAR_CHOICES, aesthetic_choices, load_profile, profile_ids
from ..prompting.prompt import NEGATIVE_CHOICES, QUALITY_CHOICES, SUBJECT_CHOICES, PromptRequest, build_prompt
from ..prompting.tagtext import format_tags

CATEGORY = "AnimeKit/prompt"


def profile_input(tooltip_extra: str = "") -> io.Combo.Input:
    return io.Combo.Input(
        "profile", options=profile_ids(), default=DEFAULT_PROFILE,
        tooltip="Model family whose tag order, special tags and defaults to use (Animagine XL 3.0/3.1/4.0, "
        "Pony V6, NoobAI/Illustrious, SD 1.5 anime)." + tooltip_extra,
    )


def prompt_inputs() -> list:
    """The structured prompt fields shared by AnimeKitPromptBuilder and AnimeKitPromptEncode."""
    return [
        profile_input(),
        io.Combo.Input("subject", options=list(SUBJECT_CHOICES), default="1girl",
                       tooltip="Subject count tag, first in every profile's order (none: leave it to the tags)."),
        io.Boolean.Input("solo", default=False, tooltip="Add `solo` (first of the general tags)."),
        io.String.Input("characters", default="", tooltip="Character tags, comma-separated, e.g. `ganyu (genshin impact)`. "
                        "Underscores and parentheses are fixed for you."),
        io.String.Input("series", default="", tooltip="Series (copyright) tags, comma-separated, e.g. `genshin impact`."),
        io.String.Input("artists", default="", tooltip="Artist tags, comma-separated."),
        io.String.Input("tags", multiline=True, dynamic_prompts=True, default="",
                        tooltip="Everything else, comma-separated. Normalised (underscores, escapes, A1111 [x]), "
                        "deduplicated and sorted into the profile's order; quality/rating/year tags typed here go "
                        "to their slots. Weights like (smile:1.2) and {a|b} are kept."),
        io.Combo.Input("quality", options=list(QUALITY_CHOICES), default="default",
                       tooltip="default: the profile card's quality tags (e.g. `masterpiece, best quality`), "
                       "placed where the card puts them (prefix or suffix); none: no quality tags."),
        io.Combo.Input("rating", options=["none", *RATING_LEVELS], default="none",
                       tooltip="Rating tag in the profile's words (Animagine 3.0 `rating: general`, Pony `rating_safe`...). "
                       "Anything but none/general needs sfw_guard off."),
        io.Combo.Input("year", options=list(YEAR_CHOICES), default="none",
                       tooltip="Period (newest ... oldest) or year. Mapped to the profile's tags: `year 2020` where it has "
                       "year tags, else the period whose years contain it."),
        io.Combo.Input("aesthetic", options=aesthetic_choices(), default="none",
                       tooltip="Aesthetic tag (Animagine 3.1: very aesthetic ... very displeasing; NoobAI: very awa, "
                       "worst aesthetic). Replaces the one in the default quality tags."),
        io.Boolean.Input("sfw_guard", default=True,
                         tooltip="The Animagine card's advice: quality tags skew NSFW, so add the general rating to "
                         "the positive and NSFW ratings (`nsfw, rating: sensitive`) to the negative."),
        io.Combo.Input("negative_preset", options=list(NEGATIVE_CHOICES), default="default",
                       tooltip="default: the profile card's negative prompt; none: only extra_negative and the SFW guard."),
        io.String.Input("extra_negative", multiline=True, dynamic_prompts=True, default="",
                        tooltip="More negative tags, appended (normalised and deduplicated too)."),
    ]


def request_from(kwargs: dict) -> PromptRequest:
    return PromptRequest(
        subject=kwargs["subject"], solo=kwargs["solo"], characters=kwargs["characters"], series=kwargs["series"],
        artists=kwargs["artists"], tags=kwargs["tags"], quality=kwargs["quality"], rating=kwargs["rating"],
        year=kwargs["year"], aesthetic=kwargs["aesthetic"], sfw_guard=kwargs["sfw_guard"],
        negative=kwargs["negative_preset"], extra_negative=kwargs["extra_negative"],
    )


def build(kwargs: dict):
    profile = load_profile(kwargs["profile"])
    return profile, build_prompt(profile, request_from(kwargs), category_source())


class AnimeKitPromptBuilder(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="AnimeKitPromptBuilder",
            display_name="AnimeKit Prompt Builder",
            category=CATEGORY,
            description="Builds positive and negative prompt text in the tag order and vocabulary the chosen "
            "model was trained on. Wire the outputs into CLIPTextEncode.",
            inputs=prompt_inputs(),
            outputs=[
                io.String.Output("positive", display_name="positive", tooltip="Ordered, normalised positive prompt."),
                io.String.Output("negative", display_name="negative", tooltip="Negative prompt."),
            ],
        )

    @classmethod
    def execute(cls, **kwargs) -> io.NodeOutput:
        _, built = build(kwargs)
        return io.NodeOutput(built.positive, built.negative)


class AnimeKitPromptEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="AnimeKitPromptEncode",
            display_name="AnimeKit Prompt Encode",
            category=CATEGORY,
            description="AnimeKit Prompt Builder plus CLIP text encoding, with the profile's clip skip "
            "(SD 1.5 anime: 2; SDXL encoders already use the penultimate layer).",
            inputs=[io.Clip.Input("clip", tooltip="The CLIP (text encoder) from the checkpoint loader.")] + prompt_inputs(),
            outputs=[
                io.Conditioning.Output("positive", display_name="positive", tooltip="Encoded positive prompt."),
                io.Conditioning.Output("negative", display_name="negative", tooltip="Encoded negative prompt."),
                io.String.Output("positive_text", display_name="positive_text", tooltip="The positive prompt text."),
                io.String.Output("negative_text", display_name="negative_text", tooltip="The negative prompt text."),
            ],
        )

    @classmethod
    def execute(cls, clip, **kwargs) -> io.NodeOutput:
        if clip is None:
            raise ValueError("clip input is empty: the checkpoint has no text encoder; load one with a CLIP loader")
        profile, built = build(kwargs)
        if profile.sampling.clip_skip is not None:
            clip = clip.clone()
            clip.clip_layer(-profile.sampling.clip_skip)
        positive = clip.encode_from_tokens_scheduled(clip.tokenize(built.positive))
        negative = clip.encode_from_tokens_scheduled(clip.tokenize(built.negative))
        return io.NodeOutput(positive, negative, built.positive, built.negative)


class AnimeKitTagFormatter(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="AnimeKitTagFormatter",
            display_name="AnimeKit Tag Formatter",
            category=CATEGORY,
            description="Cleans any tag string for ComfyUI (underscores, escaped parentheses, A1111 [x] weights, "
            "duplicates) and sorts it into the profile's tag order.",
            inputs=[
                io.String.Input("tags", multiline=True, dynamic_prompts=True, default="",
                                tooltip="Comma-separated tags, e.g. from a tagger or a booru post."),
                profile_input(" Used for ordering and its special tags."),
                io.Boolean.Input("reorder", default=True,
                                 tooltip="Sort into the profile's slots (subject, character, series, ..., quality). "
                                 "Off: only normalise and deduplicate, keeping your order."),
                io.Boolean.Input("add_quality", default=False,
                                 tooltip="Add the profile card's default quality tags."),
            ],
            outputs=[io.String.Output("formatted", display_name="tags", tooltip="The cleaned, ordered tags.")],
        )

    @classmethod
    def execute(cls, tags, profile, reorder, add_quality) -> io.NodeOutput:
        chosen = load_profile(profile)
        if add_quality:
            tags = f"{tags}, {', '.join(chosen.default_quality)}"  # empty pieces are dropped
        if reorder:
            return io.NodeOutput(format_for_profile(tags, chosen, category_source()))
        return io.NodeOutput(format_tags(tags))


