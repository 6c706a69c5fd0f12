"""The structured prompt builder: each profile's order, modifiers, SFW guard and negative presets."""

from __future__ import annotations

import pytest

from animekit.prompting.profile import load_profile
from animekit.prompting.prompt import PromptRequest, build_prompt

A30_NEGATIVE = (
    "nsfw, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, "
    "worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry, artist name"
)


def build(pid: str, **fields):
    return build_prompt(load_profile(pid), PromptRequest(**fields))


def test_animagine_30_card_template_with_sfw_guard():
    out = build("animagine-xl-3.0", subject="1girl", characters="souryuu_asuka_langley", series="neon_genesis_evangelion",
                tags="solo, upper_body, v, smile")
    assert out.positive == ("masterpiece, best quality, 1girl, souryuu asuka langley, neon genesis evangelion, "
                            "solo, upper body, v, smile, rating: general")
    assert out.negative == A30_NEGATIVE + ", rating: sensitive"


def test_animagine_30_default_negative_is_verbatim_without_guard():
    out = build("animagine-xl-3.0", sfw_guard=False)
    assert out.negative == A30_NEGATIVE
    assert out.positive == "masterpiece, best quality"


def test_animagine_31_reproduces_the_card_example():
    out = build("animagine-xl-3.1", subject="1girl", characters="souryuu asuka langley", series="neon genesis evangelion",
                tags="solo, upper body, v, smile, looking at viewer, outdoors, night", sfw_guard=False)
    assert out.positive == ("1girl, souryuu asuka langley, neon genesis evangelion, solo, upper body, v, smile, "
                            "looking at viewer, outdoors, night, masterpiece, best quality, very aesthetic, absurdres")
    assert out.negative.endswith("artistic error, username, scan, (abstract:0.909)")


def test_animagine_40_reproduces_the_card_example():
    out = build("animagine-xl-4.0", subject="1girl", characters="arima kana", series="oshi no ko",
                tags="hoshimachi suisei, hoshimachi_suisei_(1st_costume), cosplay, looking at viewer, smile, outdoors, night, v",
                sfw_guard=False)
    assert out.positive == ("1girl, arima kana, oshi no ko, hoshimachi suisei, hoshimachi suisei \\(1st costume\\), "
                            "cosplay, looking at viewer, smile, outdoors, night, v, masterpiece, high score, great score, absurdres")


def test_animagine_40_rating_sits_after_the_series():
    out = build("animagine-xl-4.0", subject="1girl", series="oshi no ko", tags="smile", rating="general", quality="none", sfw_guard=False)
    assert out.positive == "1girl, oshi no ko, safe, smile"


def test_sd15_card_order_quality_subject_solo():
    out = build("sd15-anime", subject="1girl", solo=True, tags="white_background, smile")
    assert out.positive == "masterpiece, best quality, 1girl, solo, white background, smile"
    assert out.negative.startswith("lowres, bad anatomy") and out.negative.endswith("blurry, nsfw")


def test_pony_score_string_first_and_source_then_rating():
    out = build("pony-v6", subject="1girl", tags="source_anime, smile", sfw_guard=True)
    assert out.positive == ("score_9, score_8_up, score_7_up, score_6_up, score_5_up, score_4_up, source_anime, rating_safe, "
                            "1girl, smile")
    assert out.negative == "score_6, score_5, score_4, rating_questionable, rating_explicit"


def test_noobai_prefix_and_explicit_year_replaces_default_period():
    out = build("noobai-xl", subject="1girl", artists="wlop", tags="smile", sfw_guard=False)
    assert out.positive == "masterpiece, best quality, newest, absurdres, highres, 1girl, wlop, smile"
    out = build("noobai-xl", subject="1girl", tags="smile", year="2019", aesthetic="very awa", sfw_guard=False)
    assert out.positive == "masterpiece, best quality, very awa, year 2019, absurdres, highres, 1girl, smile"


def test_explicit_aesthetic_replaces_the_default_one():
    out = build("animagine-xl-3.1", subject="1girl", aesthetic="aesthetic", sfw_guard=False)
    assert out.positive == "1girl, masterpiece, best quality, aesthetic, absurdres"


def test_rating_and_year_modifiers_in_animagine_30_words():
    out = build("animagine-xl-3.0", subject="1boy", rating="explicit", year="2020", quality="none", sfw_guard=False)
    assert out.positive == "1boy, rating: explicit, nsfw, late"


def test_sfw_guard_rejects_a_contradicting_rating():
    with pytest.raises(ValueError, match="rating 'questionable' contradicts the SFW guard"):
        build("animagine-xl-3.0", rating="questionable")
    out = build("animagine-xl-3.0", rating="general", quality="none", negative="none")
    assert (out.positive, out.negative) == ("rating: general", "nsfw, rating: sensitive")


def test_quality_typed_in_tags_goes_to_the_quality_slot_once():
    out = build("animagine-xl-3.1", subject="1girl", tags="masterpiece, smile, best_quality, worst quality", sfw_guard=False)
    assert out.positive == "1girl, smile, masterpiece, best quality, worst quality, very aesthetic, absurdres"


def test_negative_presets_and_extra_negative():
    out = build("animagine-xl-3.0", negative="none", extra_negative="bad_feet, (extra arms:1.3), bad feet", sfw_guard=False)
    assert out.negative == "bad feet, (extra arms:1.3)"
    out = build("animagine-xl-3.0", negative="default", extra_negative="bad_feet, nsfw", sfw_guard=False)
    assert out.negative == A30_NEGATIVE + ", bad feet"


@pytest.mark.parametrize("pid", ["animagine-xl-3.0", "animagine-xl-3.1", "animagine-xl-4.0", "noobai-xl", "pony-v6", "sd15-anime"])
def test_all_empty_fields_leave_no_stray_separators(pid):
    out = build(pid, subject="none", quality="none", sfw_guard=False, negative="none", characters=" , ", tags=" ,, ")
    assert out.positive == "" and out.negative == ""
    out = build(pid, subject="1girl", characters="", series="", artists="", tags="")
    for text in (out.positive, out.negative):
        assert ", ," not in text and "  " not in text and not text.startswith(",") and not text.endswith(",")


def test_invalid_choices_name_the_input():
    with pytest.raises(ValueError, match="quality must be one of default, none, got 'best'"):
        build("pony-v6", quality="best")
    with pytest.raises(ValueError, match="negative preset must be one of default, none"):
        build("pony-v6", negative="strong")
