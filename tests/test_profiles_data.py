"""Each shipped profile against its model card: order, vocabularies, defaults, settings, sizes."""

from __future__ import annotations

import json

import pytest

from animekit.prompting.categories import ProfileVocabulary
from animekit.prompting.profile import SLOTS, load_profile, parse_profile, profile_ids
from animekit.prompting.tagtext import tag_key

SDXL_NINE = [(1024, 1024), (1152, 896), (896, 1152), (1216, 832), (832, 1216), (1344, 768), (768, 1344), (1536, 640), (640, 1536)]
ANIMAGINE_30_NEGATIVE = (
    "nsfw, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, "
    "worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry, artist name"
)
ANIMEDIFFUSION_NEGATIVE = (
    "lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, "
    "worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry"
)


def test_profile_ids_are_the_six_with_animagine_30_first():
    assert profile_ids() == ["animagine-xl-3.0", "animagine-xl-3.1", "animagine-xl-4.0", "noobai-xl", "pony-v6", "sd15-anime"]


def test_unknown_profile_lists_the_valid_ids():
    with pytest.raises(ValueError) as info:
        load_profile("animagine-xl-9")
    message = str(info.value)
    assert "unknown profile 'animagine-xl-9'" in message
    for pid in profile_ids():
        assert pid in message


def test_animagine_30_matches_its_card():
    p = load_profile("animagine-xl-3.0")
    assert p.family == "sdxl"
    assert p.order[:4] == ("quality", "subject", "character", "series")
    assert p.quality_position == "prefix"
    assert p.quality_tags == ("masterpiece", "best quality", "high quality", "medium quality", "normal quality", "low quality", "worst quality")
    assert p.default_quality == ("masterpiece", "best quality")
    assert p.ratings == {
        "general": ("rating: general",),
        "sensitive": ("rating: sensitive",),
        "questionable": ("rating: questionable", "nsfw"),
        "explicit": ("rating: explicit", "nsfw"),
    }
    assert [(x.tag, x.first_year, x.last_year) for x in p.periods] == [
        ("newest", 2022, 2023), ("late", 2019, 2021), ("mid", 2015, 2018), ("early", 2011, 2014), ("oldest", 2005, 2010)]
    assert p.negative == ANIMAGINE_30_NEGATIVE
    assert p.sfw_guard.positive == ("rating: general",)
    assert p.sfw_guard.negative == ("nsfw", "rating: sensitive")
    assert (p.sampling.cfg_range, p.sampling.sampler, p.sampling.clip_skip) == ((5.0, 7.0), "euler_ancestral", None)
    assert p.sampling.steps < 30 and p.sampling.steps_range[1] < 30
    assert list(p.sizes) == SDXL_NINE
    assert (p.buckets.resolution, p.buckets.min_size, p.buckets.max_size, p.buckets.step) == (1024, 512, 2048, 64)


def test_animagine_31_quality_aesthetic_and_suffix():
    p = load_profile("animagine-xl-3.1")
    assert p.quality_position == "suffix"
    assert p.order[:3] == ("subject", "character", "series")
    assert "great quality" in p.quality_tags and "high quality" not in p.quality_tags
    assert p.aesthetic_tags == ("very aesthetic", "aesthetic", "displeasing", "very displeasing")
    assert p.default_quality == ("masterpiece", "best quality", "very aesthetic", "absurdres")
    assert p.ratings["general"] == ("safe",) and p.ratings["explicit"] == ("explicit", "nsfw")
    assert [(x.tag, x.level, x.first_year, x.last_year) for x in p.periods][:2] == [
        ("newest", "newest", 2021, 2024), ("recent", "recent", 2018, 2020)]
    assert p.negative.endswith("username, scan, [abstract]")


def test_animagine_40_rating_after_series_and_quality_suffix():
    p = load_profile("animagine-xl-4.0")
    assert p.order[:4] == ("subject", "character", "series", "rating")
    assert p.order[-2:] == ("quality", "meta")
    assert p.default_quality == ("masterpiece", "high score", "great score", "absurdres")
    assert p.periods == () and p.year_tags.tag(2024) == "year 2024"
    assert (p.year_tags.min_year, p.year_tags.max_year) == (2005, 2025)
    assert "low score, bad score, average score" in p.negative


def test_pony_score_string_keeps_underscores_and_comes_first():
    p = load_profile("pony-v6")
    assert p.order[0] == "quality"
    assert ", ".join(p.default_quality) == "score_9, score_8_up, score_7_up, score_6_up, score_5_up, score_4_up"
    assert p.source_tags == ("source_anime", "source_cartoon", "source_furry", "source_pony")
    assert p.ratings == {"general": ("rating_safe",), "questionable": ("rating_questionable",), "explicit": ("rating_explicit",)}
    assert p.sampling.steps == 25 and p.sampling.clip_skip is None


def test_noobai_prefix_and_special_tags():
    p = load_profile("noobai-xl")
    assert p.quality_position == "prefix"
    assert p.default_quality == ("masterpiece", "best quality", "newest", "absurdres", "highres")
    assert p.aesthetic_tags == ("very awa", "worst aesthetic")
    assert p.quality_tags == ("masterpiece", "best quality", "good quality", "normal quality", "worst quality")
    assert [x.tag for x in p.periods] == ["newest", "recent", "mid", "early", "old"]
    assert p.negative.startswith("nsfw, worst quality, old, early, low quality, lowres")
    assert list(p.sizes) == [(768, 1344), (832, 1216), (896, 1152), (1024, 1024), (1152, 896), (1216, 832), (1344, 768)]


def test_sd15_anime_matches_animediffusion_card():
    p = load_profile("sd15-anime")
    assert p.family == "sd15"
    assert p.order[:2] == ("quality", "subject")
    assert p.default_quality == ("masterpiece", "best quality")
    assert p.negative == ANIMEDIFFUSION_NEGATIVE
    assert p.sampling.clip_skip == 2
    assert p.ratings == {} and p.periods == () and p.year_tags is None
    assert p.sfw_guard.positive == () and p.sfw_guard.negative == ("nsfw",)
    assert list(p.sizes) == [(512, 512), (512, 768), (768, 512)]
    assert (p.buckets.resolution, p.buckets.min_size, p.buckets.max_size) == (512, 256, 1024)


@pytest.mark.parametrize("pid", profile_ids())
def test_every_profile_orders_all_slots_and_places_its_defaults(pid):
    p = load_profile(pid)
    assert sorted(p.order) == sorted(SLOTS)
    assert p.order.index("subject") < p.order.index("character") < p.order.index("series") < p.order.index("general")
    vocab = ProfileVocabulary(p)
    for tag in (*p.default_quality, *p.sfw_guard.positive):
        info = vocab.lookup(tag_key(tag))
        assert info is not None and info.category != "general", f"{pid}: default tag {tag!r} has no slot"
    assert p.sampling.clip_skip == (2 if p.family == "sd15" else None)
    for width, height in p.sizes:
        assert width % 64 == 0 and height % 64 == 0


def _valid_json(pid: str) -> dict:
    from importlib import resources

    return json.loads(resources.files("animekit.prompting").joinpath("profiles", f"{pid}.profile.json").read_text())


def test_parse_profile_rejects_missing_slot_naming_the_file():
    data = _valid_json("pony-v6")
    data["order"] = [slot for slot in data["order"] if slot != "meta"]
    with pytest.raises(ValueError, match=r"broken\.json: 'order' must list each slot once"):
        parse_profile(data, "broken.json")


def test_parse_profile_rejects_unknown_rating_level_and_resolution_set():
    data = _valid_json("pony-v6")
    data["ratings"]["spicy"] = "rating_spicy"
    with pytest.raises(ValueError, match="rating level 'spicy'"):
        parse_profile(data, "x.json")
    data = _valid_json("pony-v6")
    data["resolutions"] = "sdxl-12"
    with pytest.raises(ValueError, match="unknown resolution set 'sdxl-12'"):
        parse_profile(data, "x.json")


def test_year_values_map_to_each_profiles_tags():
    a30, a31, a40, noob = (load_profile(p) for p in ("animagine-xl-3.0", "animagine-xl-3.1", "animagine-xl-4.0", "noobai-xl"))
    assert a30.year_tag("recent") == ("late",)
    assert a30.year_tag("2020") == ("late",)
    assert a30.year_tag(2018) == ("mid",)
    assert a30.year_tag("2025") == ("newest",)  # past the newest range: clamped
    assert a30.year_tag("1999") == ("oldest",)
    assert a31.year_tag("2021") == ("newest",)
    assert noob.year_tag("oldest") == ("old",)
    assert noob.year_tag("2019") == ("year 2019",)
    assert a40.year_tag("2025") == ("year 2025",)
    assert a30.year_tag("none") == ()
    with pytest.raises(ValueError, match="animagine-xl-4.0 has no period tags"):
        a40.year_tag("newest")
    with pytest.raises(ValueError, match="knows years 2005-2025; got 2030"):
        a40.year_tag("2030")
    with pytest.raises(ValueError, match="sd15-anime has no year or period tags"):
        load_profile("sd15-anime").year_tag("2020")
    with pytest.raises(ValueError, match="year must be none, a period"):
        a30.year_tag("last year")


def test_rating_and_aesthetic_errors_name_the_profile_and_choices():
    with pytest.raises(ValueError, match="pony-v6 has no 'sensitive' rating; its ratings: general, questionable, explicit"):
        load_profile("pony-v6").rating_tags("sensitive")
    with pytest.raises(ValueError, match="sd15-anime has no 'general' rating"):
        load_profile("sd15-anime").rating_tags("general")
    with pytest.raises(ValueError, match="rating must be one of none, general"):
        load_profile("pony-v6").rating_tags("safe")
    with pytest.raises(ValueError, match="noobai-xl has no aesthetic tag 'very aesthetic'; its aesthetic tags: very awa, worst aesthetic"):
        load_profile("noobai-xl").aesthetic_tag("very aesthetic")


def test_profiles_core_imports_neither_comfyui_nor_torch():
    import subprocess
    import sys

    code = ("import sys, animekit.prompting.cli, animekit.prompting.prompt, animekit.sizes.sets; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('comfy', 'comfy_api', 'folder_paths', 'nodes', 'torch')); "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
