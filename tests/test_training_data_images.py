"""Images: resize to cover, crop offsets, flip, EXIF rotation, transparency, SDXL sizes."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from animekit.training.data.dataset import ImageRecord
from animekit.training.data.images import load_training_image, plan_crop, render
from support.training_images import gradient, write_image


def record_for(path, size, bucket) -> ImageRecord:
    return ImageRecord(str(path), "tag", 1, size[0], size[1], str(path.parent), bucket)


def as_uint8(pixels: torch.Tensor) -> np.ndarray:
    """[3, H, W] in [-1, 1] back to H x W x 3 bytes (exact for pixels that were never resampled)."""
    return ((pixels + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


@pytest.mark.parametrize(
    "size, bucket, resized, crop",
    [
        ((320, 200), (320, 192), (200, 320), (4, 0)),  # no resize, 8 spare rows
        ((640, 400), (320, 192), (200, 320), (4, 0)),  # scale 0.5 = max(320/640, 192/400)
        ((300, 200), (320, 192), (213, 320), (10, 0)),  # scale 16/15: 213.33 rounds to 213
        ((100, 60), (320, 192), (192, 320), (0, 0)),  # exact aspect, upscaled 3.2x
        ((341, 192), (320, 192), (192, 341), (0, 10)),  # 21 spare columns: 21 // 2
    ],
)
def test_resize_to_cover_then_centre_crop(tmp_path, size, bucket, resized, crop):
    record = record_for(write_image(tmp_path / "g.png", size), size, bucket)
    plan = plan_crop(record, False, False, random.Random(0))
    assert (plan.original_size, plan.resized_size, plan.crop_top_left, plan.target_size, plan.flipped) == (
        (size[1], size[0]), resized, crop, (bucket[1], bucket[0]), False)  # fmt: skip
    image = render(record, plan)
    assert image.pixels.shape == (3, bucket[1], bucket[0]) and image.pixels.dtype == torch.float32
    reference = gradient(*size)
    if reference.size != (resized[1], resized[0]):
        reference = reference.resize((resized[1], resized[0]), Image.Resampling.LANCZOS)
    top, left = crop
    expected = np.asarray(reference)[top : top + bucket[1], left : left + bucket[0]]
    assert np.array_equal(as_uint8(image.pixels), expected)


@pytest.mark.parametrize("size, crop", [((341, 192), (0, 10)), ((320, 209), (8, 0))])
def test_crop_offsets_select_the_right_pixels(tmp_path, size, crop):
    record = record_for(write_image(tmp_path / "g.png", size), size, (320, 192))
    image = load_training_image(record, False, False, random.Random(0))
    assert image.crop_top_left == crop
    top, left = crop
    got = as_uint8(image.pixels)
    rows, cols = np.mgrid[0:192, 0:320]
    assert np.array_equal(got[..., 0], (cols + left) % 256) and np.array_equal(got[..., 1], rows + top)
    assert float(image.pixels.min()) == -1.0 and image.pixels.max() <= 1.0


def test_flip_mirrors_and_reports_the_crop_in_the_mirrored_image(tmp_path):
    record = record_for(write_image(tmp_path / "g.png", (341, 192)), (341, 192), (320, 192))
    flips = [plan_crop(record, True, False, random.Random(seed)).flipped for seed in range(400)]
    assert 160 < sum(flips) < 240  # p = 0.5: 200 +- 4 sigma (sigma = 10)
    image = load_training_image(record, True, False, random.Random(flips.index(True)))
    assert image.flipped and image.crop_top_left == (0, 10)
    cols = np.arange(320)
    assert np.array_equal(as_uint8(image.pixels)[0, :, 0], (340 - (cols + 10)) % 256)
    assert not any(plan_crop(record, False, False, random.Random(s)).flipped for s in range(50))


@pytest.mark.parametrize("size, spare", [((340, 192), (0, 20)), ((320, 210), (18, 0))])
def test_random_crop_covers_the_spare_pixels(tmp_path, size, spare):
    record = record_for(write_image(tmp_path / "g.png", size), size, (320, 192))
    for seed in range(3):
        image = load_training_image(record, False, True, random.Random(seed))
        top, left = image.crop_top_left
        got = as_uint8(image.pixels)
        assert got[0, 0, 0] == left and got[0, 0, 1] == top
    offsets = {plan_crop(record, False, True, random.Random(seed)).crop_top_left for seed in range(300)}
    assert offsets == {(top, left) for top in range(spare[0] + 1) for left in range(spare[1] + 1)}


def test_exif_rotation_is_applied(tmp_path):
    stored = np.zeros((40, 80, 3), np.uint8)
    stored[:4, :4] = (255, 0, 0)  # red in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = write_image(tmp_path / "r.png", image=Image.fromarray(stored), exif=exif)
    image = load_training_image(record_for(path, (40, 80), (40, 80)), False, False, random.Random(0))
    got = as_uint8(image.pixels)
    assert image.original_size == (80, 40) and got.shape == (80, 40, 3)
    assert tuple(got[0, 39]) == (255, 0, 0) and tuple(got[0, 0]) == (0, 0, 0) and tuple(got[79, 39]) == (0, 0, 0)


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 0)  # fully transparent red
    rgba[0, 1] = (0, 0, 255, 255)  # opaque blue
    rgba[0, 2] = (255, 0, 0, 128)  # half red
    path = write_image(tmp_path / "a.png", image=Image.fromarray(rgba, "RGBA"))
    got = as_uint8(load_training_image(record_for(path, (8, 8), (8, 8)), False, False, random.Random(0)).pixels)
    assert tuple(got[0, 0]) == (255, 255, 255) and tuple(got[0, 1]) == (0, 0, 255)
    assert got[0, 2, 0] == 255 and abs(int(got[0, 2, 1]) - 127) <= 1


def test_palette_grey_and_16_bit_images_become_rgb(tmp_path):
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.putpixel((1, 0), 1)
    path = write_image(tmp_path / "p.png", image=palette, transparency=0)
    got = as_uint8(load_training_image(record_for(path, (8, 8), (8, 8)), False, False, random.Random(0)).pixels)
    assert tuple(got[0, 0]) == (255, 255, 255) and tuple(got[0, 1]) == (0, 255, 0)
    deep = Image.fromarray(np.full((8, 8), 40000, np.uint16))
    path = write_image(tmp_path / "d.png", image=deep)
    got = as_uint8(load_training_image(record_for(path, (8, 8), (8, 8)), False, False, random.Random(0)).pixels)
    assert (got == 40000 // 256).all()


def test_unreadable_image_at_load_names_the_file(tmp_path):
    path = tmp_path / "gone.png"
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="gone.png"):
        load_training_image(record_for(path, (8, 8), (8, 8)), False, False, random.Random(0))
