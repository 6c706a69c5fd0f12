"""Resolution nodes: a profile's size presets with an empty latent and hires-fix target, and the
nearest training bucket for an image (profiles/resolutions.py and presets.py do the arithmetic).

Node ids and input names are public API; see nodes/__init__.py.
"""

from __future__ import annotations

import comfy.model_management
import torch
import torch.nn.functional as F
from comfy_api.latest import io

from ..prompting.profile import DEFAULT_PROFILE, load_profile, profile_ids, size_labels
from ..sizes.sets import size_label
from ..sizes.resolutions import cover_crop_box, hires_size, kohya_buckets, nearest_bucket

CATEGORY = "AnimeKit/resolution"
CUSTOM_BUCKETS = "custom"
MAX_SIDE = 16384


DEFAULT_SIZE = size_label((832, 1216))


class AnimeKitAspectPreset(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="AnimeKitAspectPreset",
            display_name="AnimeKit Aspect Preset",
            category=CATEGORY,
            description="A size the chosen model was trained at, with an empty latent batch and the size for a "
            "hires-fix pass. For SDXL's CLIPTextEncodeSDXL, width/height are both the original and the target "
            "size (crop 0).",
            inputs=[
                io.Combo.Input("profile", options=profile_ids(), default=DEFAULT_PROFILE,
                               tooltip="Model family; its card's size table is the valid set (SDXL nine for "
                               "Animagine/Pony, seven for NoobAI, 512x512/512x768/768x512 for SD 1.5 anime)."),
                io.Combo.Input("size", options=size_labels(), default=DEFAULT_SIZE,
                               tooltip="Width x height (aspect ratio). Must be one of the profile's sizes; the error "
                               "lists them if not."),
                io.Int.Input("batch_size", default=1, min=1, max=4096,
                             tooltip="Number of latent images in the batch."),
                io.Float.Input("hires_scale", default=1.5, min=1.0, max=4.0, step=0.05,
                               tooltip="Upscale factor for a hires-fix pass; hires_width/hires_height are the size "
                               "times this, rounded to multiples of 8."),
            ],
            outputs=[
                io.Int.Output("width", display_name="width", tooltip="Image width (also SDXL original and target width)."),
                io.Int.Output("height", display_name="height", tooltip="Image height (also SDXL original and target height)."),
                io.Latent.Output("latent", display_name="LATENT", tooltip="Empty latent batch at this size (4 channels, size/8)."),
                io.Int.Output("hires_width", display_name="hires_width", tooltip="Width for the hires-fix pass."),
                io.Int.Output("hires_height", display_name="hires_height", tooltip="Height for the hires-fix pass."),
            ],
        )

    @classmethod
    def execute(cls, profile, size, batch_size, hires_scale) -> io.NodeOutput:
        width, height = load_profile(profile).size(size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        hires_width, hires_height = hires_size(width, height, hires_scale)
        latent = torch.zeros([batch_size, 4, height // 8, width // 8], device=comfy.model_management.intermediate_device())
        return io.NodeOutput(width, height, {"samples": latent}, hires_width, hires_height)


class AnimeKitNearestBucket(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="AnimeKitNearestBucket",
            display_name="AnimeKit Nearest Bucket",
            category=CATEGORY,
            description="Finds the training bucket closest to an image's aspect ratio (kohya's bucket rule, "
            "compared in log aspect) and optionally resizes the image to cover it and centre-crops.",
            inputs=[
                io.Image.Input("image", tooltip="Image batch; its size decides the bucket."),
                io.Combo.Input("profile", options=[*profile_ids(), CUSTOM_BUCKETS], default=DEFAULT_PROFILE,
                               tooltip="Use this profile's training buckets (SDXL: 1024, 512-2048; SD 1.5: 512, "
                               "256-1024; step 64), or `custom` for the four numbers below."),
                io.Boolean.Input("resize_and_crop", default=True,
                                 tooltip="On: scale the image to cover the bucket and crop the overhang evenly. "
                                 "Off: pass the image through and only output the bucket size."),
                io.Int.Input("resolution", default=1024, min=64, max=MAX_SIDE, step=8,
                             tooltip="custom only: bucket area is resolution x resolution."),
                io.Int.Input("min_size", default=512, min=64, max=MAX_SIDE, step=8,
                             tooltip="custom only: smallest bucket side."),
                io.Int.Input("max_size", default=2048, min=64, max=MAX_SIDE, step=8,
                             tooltip="custom only: largest bucket side."),
                io.Int.Input("step", default=64, min=8, max=1024, step=8,
                             tooltip="custom only: bucket sides are multiples of this (a multiple of 8)."),
            ],
            outputs=[
                io.Image.Output("bucket_image", display_name="IMAGE",
                                tooltip="The image resized and centre-cropped to the bucket (or unchanged)."),
                io.Int.Output("width", display_name="width", tooltip="Bucket width."),
                io.Int.Output("height", display_name="height", tooltip="Bucket height."),
            ],
        )

    @classmethod
    def execute(cls, image, profile, resize_and_crop, resolution, min_size, max_size, step) -> io.NodeOutput:
        if image is None or image.ndim != 4 or image.shape[0] == 0:
            shape = None if image is None else tuple(image.shape)
            raise ValueError(f"image batch is empty (shape {shape}); connect at least one image")
        if profile == CUSTOM_BUCKETS:
            buckets = kohya_buckets(resolution, min_size, max_size, step)
        else:
            buckets = load_profile(profile).buckets.buckets()
        _, height, width, _ = image.shape
        bucket_width, bucket_height = nearest_bucket(width, height, buckets)
        if resize_and_crop and (width, height) != (bucket_width, bucket_height):
            left, top, crop_width, crop_height = cover_crop_box(width, height, bucket_width, bucket_height)
            pixels = image[:, top : top + crop_height, left : left + crop_width, :].movedim(-1, 1)
            pixels = F.interpolate(pixels, size=(bucket_height, bucket_width), mode="bicubic",
                                   align_corners=False, antialias=True)
            image = pixels.clamp(0.0, 1.0).movedim(1, -1)
        return io.NodeOutput(image, bucket_width, bucket_height)


