"""Preset size tables, kohya bucket counts, nearest bucket, hires sizes, SDXL conditioning, cover crops."""

from __future__ import annotations

import math

import pytest

from animekit.sizes.sets import resolution_set, resolution_set_names, size_from_label, size_label
from animekit.prompting.profile import load_profile
from animekit.sizes.resolutions import (
    SizeConditioning, check_multiple, cover_crop_box, hires_size, kohya_buckets, nearest_bucket, parse_size,
    sdxl_size_conditioning,
)


def test_shipped_sets():
    assert resolution_set_names() == ["sdxl-9", "sdxl-7", "sdxl-paper-40", "sd15-anime"]
    with pytest.raises(ValueError, match="unknown resolution set 'nope'; valid sets: sdxl-9, sdxl-7"):
        resolution_set("nope")


def test_sdxl_nine_are_the_animagine_card_sizes():
    assert resolution_set("sdxl-9").sizes == (
        (1024, 1024), (1152, 896), (896, 1152), (1216, 832), (832, 1216), (1344, 768), (768, 1344), (1536, 640), (640, 1536))


def test_sdxl_paper_has_40_buckets_of_about_a_megapixel():
    sizes = resolution_set("sdxl-paper-40").sizes
    assert len(sizes) == len(set(sizes)) == 40
    for width, height in sizes:
        assert width % 64 == 0 and height % 64 == 0
        assert 512 <= width <= 2048 and 512 <= height <= 2048
        assert 0.85 * 1024**2 <= width * height <= 1.05 * 1024**2
    assert (1024, 1024) in sizes and (2048, 512) in sizes and (512, 2048) in sizes
    # The paper's one row without a mirror: height 704, width 1344.
    unmirrored = [s for s in sizes if (s[1], s[0]) not in sizes]
    assert unmirrored == [(1344, 704)]


def test_kohya_512_gives_17_and_1024_gives_33():
    sd15 = kohya_buckets(512, 256, 1024, 64)
    sdxl = kohya_buckets(1024, 512, 2048, 64)
    assert len(sd15) == 17 and len(sdxl) == 33
    assert sd15[0] == (256, 1024) and sd15[-1] == (1024, 256) and (512, 512) in sd15
    assert (832, 1216) in sdxl and (1216, 832) in sdxl


def test_kohya_sdxl_buckets_are_a_subset_of_the_paper_list():
    paper = set(resolution_set("sdxl-paper-40").sizes)
    sdxl = set(kohya_buckets(1024, 512, 2048, 64))
    assert sdxl < paper
    assert len(paper - sdxl) == 7


def test_profile_bucket_settings_give_those_counts():
    assert len(load_profile("sd15-anime").buckets.buckets()) == 17
    assert len(load_profile("pony-v6").buckets.buckets()) == 33


@pytest.mark.parametrize("width, height", [(1000, 1500), (1920, 1080), (640, 640), (300, 2000), (4000, 1000)])
def test_nearest_bucket_is_symmetric_for_portrait_and_landscape(width, height):
    buckets = kohya_buckets(1024, 512, 2048, 64)
    w, h = nearest_bucket(width, height, buckets)
    assert nearest_bucket(height, width, buckets) == (h, w)


def test_nearest_bucket_examples():
    buckets = kohya_buckets(1024, 512, 2048, 64)
    assert nearest_bucket(1920, 1080, buckets) == (1344, 768)  # 16:9 -> 1.75 (log distance 0.0157)
    assert nearest_bucket(1000, 1500, buckets) == (832, 1216)
    assert nearest_bucket(1234, 1234, buckets) == (1024, 1024)


def test_size_labels_round_trip():
    assert size_label((832, 1216)) == "832x1216 (13:19 portrait)"
    assert size_label((1344, 768)) == "1344x768 (7:4 landscape)"
    assert size_label((1024, 1024)) == "1024x1024 (1:1 square)"
    assert size_label((1536, 640)) == "1536x640 (12:5 landscape)"
    assert size_from_label("832x1216 (13:19 portrait)") == (832, 1216)
    assert size_from_label("512x768") == (512, 768)


def test_sizes_must_be_multiples_of_8_and_errors_name_the_input():
    assert parse_size("832x1216") == (832, 1216)
    with pytest.raises(ValueError, match="size width must be a multiple of 8, got 1004"):
        parse_size("1004x1216")
    with pytest.raises(ValueError, match=r"init_size must look like WIDTHxHEIGHT \(e.g. 832x1216\), got '832 by 1216'"):
        parse_size("832 by 1216", "init_size")
    with pytest.raises(ValueError, match="height must be a multiple of 8, got 1001"):
        check_multiple(1001, "height")
    with pytest.raises(ValueError, match="width must be a positive integer, got 0"):
        check_multiple(0, "width")
    with pytest.raises(ValueError, match="width must be a multiple of 8, got 830"):
        hires_size(830, 1216, 1.5)


def test_hires_size_rounds_to_the_multiple():
    assert hires_size(832, 1216, 1.5) == (1248, 1824)
    assert hires_size(512, 768, 1.5) == (768, 1152)
    assert hires_size(832, 1216, 1.3) == (1080, 1584)  # 1081.6 -> 1080, 1580.8 -> 1584
    assert hires_size(832, 1216, 1.3, multiple=64) == (1088, 1600)  # 1081.6 -> 1088, 1580.8 -> 1600
    assert hires_size(1024, 1024, 1.0) == (1024, 1024)
    with pytest.raises(ValueError, match="hires scale must be a number >= 1.0, got 0.5"):
        hires_size(1024, 1024, 0.5)
    with pytest.raises(ValueError, match="hires scale must be a number >= 1.0"):
        hires_size(1024, 1024, math.nan)


def test_sdxl_size_conditioning():
    assert sdxl_size_conditioning((832, 1216)) == SizeConditioning(832, 1216, 0, 0, 832, 1216)
    assert sdxl_size_conditioning((1024, 1024), original=(3000, 2000), crop=(0, 128)) == SizeConditioning(3000, 2000, 0, 128, 1024, 1024)
    with pytest.raises(ValueError, match="target width must be a multiple of 8"):
        sdxl_size_conditioning((1001, 1024))
    with pytest.raises(ValueError, match="crop_h must be a non-negative integer"):
        sdxl_size_conditioning((1024, 1024), crop=(0, -1))


@pytest.mark.parametrize("src, dst, box", [
    ((1920, 1080), (1344, 768), (15, 0, 1890, 1080)),  # 1080 * 1.75 = 1890: 15 px off each side
    ((1000, 1500), (832, 1216), (0, 19, 1000, 1462)),  # 1000 * 1216 / 832 = 1461.5 -> 1462
    ((1024, 1024), (1024, 1024), (0, 0, 1024, 1024)),
    ((512, 512), (768, 512), (0, 85, 512, 341)),
])
def test_cover_crop_box_keeps_the_target_aspect_centred(src, dst, box):
    assert cover_crop_box(*src, *dst) == box
    left, top, width, height = box
    assert abs(width / height - dst[0] / dst[1]) < 0.005
    assert abs((src[0] - width - 2 * left)) <= 1 and abs((src[1] - height - 2 * top)) <= 1


def test_kohya_buckets_refuses_resolution_below_one_step():
    import pytest
    from animekit.sizes.resolutions import kohya_buckets

    with pytest.raises(ValueError, match="at least one step"):
        kohya_buckets(3, 8, 64, 8)
