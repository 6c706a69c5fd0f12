"""Text-encoder output caching: refused with TE training, variants keep shuffle and dropout alive."""

from __future__ import annotations

import pytest

from animekit.training.data.captions import CaptionConfig
from animekit.training.data.text_cache import caption_variants, check_text_cache_allowed, choose_variant

CAPTION = "1girl, a, b, c, d, e"


def test_refused_with_text_encoder_training():
    with pytest.raises(ValueError, match="cache_text_encoder_outputs cannot be used while training the text encoder"):
        check_text_cache_allowed(True, True)
    for cache, train in ((True, False), (False, True), (False, False)):
        check_text_cache_allowed(cache, train)


def test_variants_differ_with_shuffle_and_keep_fixed_tags():
    variants = caption_variants(CAPTION, CaptionConfig(shuffle_caption=True, keep_tokens=1), 8, seed=0)
    assert len(variants) == 8 and len(set(variants)) == 8
    for variant in variants:
        tags = variant.split(", ")
        assert tags[0] == "1girl" and sorted(tags[1:]) == ["a", "b", "c", "d", "e"]
    assert caption_variants(CAPTION, CaptionConfig(shuffle_caption=True, keep_tokens=1), 8, seed=0) == variants
    assert caption_variants(CAPTION, CaptionConfig(shuffle_caption=True, keep_tokens=1), 8, seed=1) != variants


def test_empty_caption_is_a_variant_only_when_dropout_is_on():
    assert caption_variants(CAPTION, CaptionConfig(), 4, seed=0) == [CAPTION]
    assert caption_variants(CAPTION, CaptionConfig(caption_dropout_rate=0.1), 4, seed=0) == [CAPTION, ""]
    assert caption_variants(CAPTION, CaptionConfig(caption_dropout_every_n_epochs=5), 1, seed=0) == [CAPTION, ""]
    with_dropout = caption_variants(CAPTION, CaptionConfig(shuffle_caption=True, caption_dropout_rate=0.1), 3, seed=0)
    assert len(with_dropout) == 4 and with_dropout[-1] == "" and all(with_dropout[:3])


def test_variants_apply_prefix_and_tag_dropout():
    cfg = CaptionConfig(prefix="masterpiece", keep_tokens=1, caption_tag_dropout_rate=0.5)
    variants = caption_variants("1girl, a, b, c, d, e, f, g, h", cfg, 6, seed=3)
    tags = [v.split(", ") for v in variants]
    assert all(t[0] == "masterpiece" and set(t[1:]) <= set("1girl a b c d e f g h".split()) for t in tags)
    assert len(set(variants)) > 1 and min(len(t) for t in tags) < 10


def test_choose_variant():
    variants = ["x, a, b", "x, b, a", ""]
    assert choose_variant(variants, "") == 2
    assert choose_variant(variants, "x, b, a") == 1
    picks = {choose_variant(variants, f"x, other {i}") for i in range(40)}
    assert picks == {0, 1}  # never the empty one for a caption that was not dropped
    assert choose_variant(variants, "x, other 7") == choose_variant(variants, "x, other 7")
    with pytest.raises(ValueError, match="variants"):
        choose_variant([], "x")
    with pytest.raises(ValueError, match="positive integer"):
        caption_variants(CAPTION, CaptionConfig(), 0, seed=0)
