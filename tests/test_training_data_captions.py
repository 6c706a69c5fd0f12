"""The caption pipeline: fixed parts never move, shuffle permutes, rates hold statistically."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter

import pytest

from animekit.training.data.captions import CaptionConfig, process_caption

TAGS = ["a", "b", "c", "d", "e"]


def draws(caption: str, cfg: CaptionConfig, n: int, epoch: int = 1) -> list[str]:
    return [process_caption(caption, cfg, random.Random(i), epoch) for i in range(n)]


def within_binomial(count: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def test_prefix_and_suffix_are_joined_as_tags():
    cfg = CaptionConfig(prefix="masterpiece", suffix="absurdres")
    assert process_caption("1girl, solo", cfg, random.Random(0), 1) == "masterpiece, 1girl, solo, absurdres"
    cfg = CaptionConfig(prefix="masterpiece, ", suffix=", absurdres")
    assert process_caption("1girl,solo", cfg, random.Random(0), 1) == "masterpiece, 1girl, solo, absurdres"


def test_prefix_counts_towards_keep_tokens_as_in_kohya():
    cfg = CaptionConfig(prefix="artist", keep_tokens=2, shuffle_caption=True)
    for text in draws("1girl, a, b, c, d", cfg, 200):
        assert text.split(", ")[:2] == ["artist", "1girl"]


def test_keep_tokens_prefix_never_moves_and_is_never_dropped():
    cfg = CaptionConfig(keep_tokens=2, shuffle_caption=True, caption_tag_dropout_rate=0.5)
    seen = set()
    for text in draws("1girl, solo, a, b, c, d, e", cfg, 1000):
        tags = text.split(", ")
        assert tags[:2] == ["1girl", "solo"]
        assert set(tags[2:]) <= set(TAGS)
        seen.add(tuple(tags[2:]))
    assert len(seen) > 50


def test_keep_tokens_separator_fixes_prefix_and_suffix():
    caption = "1girl, hatsune miku ||| a, b, c, d, e ||| best quality, absurdres"
    cfg = CaptionConfig(keep_tokens=4, keep_tokens_separator="|||", shuffle_caption=True, caption_tag_dropout_rate=0.3)
    for text in draws(caption, cfg, 1000):
        tags = text.split(", ")
        assert tags[:2] == ["1girl", "hatsune miku"]
        assert tags[-2:] == ["best quality", "absurdres"]
        assert set(tags[2:-2]) <= set(TAGS) and "|||" not in text


def test_keep_tokens_separator_without_second_marker_has_no_suffix():
    cfg = CaptionConfig(keep_tokens_separator="|||", shuffle_caption=True)
    texts = draws("x ||| a, b, c, d, e", cfg, 300)
    assert all(t.startswith("x, ") for t in texts)
    assert {t.split(", ")[-1] for t in texts} == set(TAGS)


def test_keep_tokens_separator_absent_falls_back_to_keep_tokens():
    cfg = CaptionConfig(keep_tokens=1, keep_tokens_separator="|||", shuffle_caption=True)
    assert all(t.startswith("1girl, ") for t in draws("1girl, a, b, c, d, e", cfg, 300))


def test_shuffle_permutes_uniformly_and_keeps_the_tags():
    texts = draws(", ".join(TAGS), CaptionConfig(shuffle_caption=True), 6000)
    orders = Counter(tuple(t.split(", ")) for t in texts)
    assert set(orders) == set(itertools.permutations(TAGS))  # all 120 orders, nothing lost or added
    assert max(orders.values()) < 100  # expected 50 each


def test_no_shuffle_keeps_order_and_normalises_spacing():
    cfg = CaptionConfig()
    assert process_caption(" a,b ,,  c ,", cfg, random.Random(0), 1) == "a, b, c"
    assert process_caption("x ||| y", CaptionConfig(keep_tokens_separator="|||"), random.Random(0), 1) == "x, y"


def test_rejoins_with_the_separator_it_split_on():
    cfg = CaptionConfig(caption_separator=";", shuffle_caption=True)
    texts = draws("long hair, smile;blue eyes ;  red ribbon", cfg, 200)
    assert {frozenset(t.split("; ")) for t in texts} == {frozenset(["long hair, smile", "blue eyes", "red ribbon"])}
    assert len(set(texts)) == 6


def test_tag_dropout_rate_holds_and_hits_only_shuffled_tags():
    cfg = CaptionConfig(keep_tokens=1, shuffle_caption=True, caption_tag_dropout_rate=0.3)
    middle = [f"t{i}" for i in range(10)]
    n = 10000
    kept = 0
    for text in draws(", ".join(["fixed"] + middle), cfg, n):
        tags = text.split(", ") if text else []
        assert tags[0] == "fixed"
        kept += len(tags) - 1
    dropped = n * len(middle) - kept
    assert within_binomial(dropped, n * len(middle), 0.3)


def test_tag_dropout_without_shuffle_keeps_order():
    cfg = CaptionConfig(caption_tag_dropout_rate=0.5)
    for text in draws(", ".join(TAGS), cfg, 300):
        tags = text.split(", ") if text else []
        assert tags == sorted(tags)


def test_caption_dropout_rate_holds():
    cfg = CaptionConfig(prefix="pre", caption_dropout_rate=0.2, shuffle_caption=True)
    texts = draws("a, b, c", cfg, 10000)
    empty = sum(t == "" for t in texts)
    assert within_binomial(empty, 10000, 0.2)
    assert all(t == "" or sorted(t.split(", ")) == ["a", "b", "c", "pre"] for t in texts)


def test_caption_dropout_every_n_epochs():
    cfg = CaptionConfig(caption_dropout_every_n_epochs=3)
    for epoch in range(1, 10):
        texts = draws("a, b", cfg, 20, epoch=epoch)
        assert texts == ([""] * 20 if epoch % 3 == 0 else ["a, b"] * 20), epoch


def test_same_rng_seed_same_draw():
    cfg = CaptionConfig(shuffle_caption=True, caption_tag_dropout_rate=0.2, caption_dropout_rate=0.1)
    assert draws("a, b, c, d, e, f", cfg, 50) == draws("a, b, c, d, e, f", cfg, 50)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"caption_dropout_rate": 1.5}, "caption_dropout_rate"),
        ({"caption_tag_dropout_rate": -0.1}, "caption_tag_dropout_rate"),
        ({"keep_tokens": -1}, "keep_tokens"),
        ({"caption_dropout_every_n_epochs": 1.5}, "caption_dropout_every_n_epochs"),
        ({"caption_separator": ""}, "caption_separator"),
        ({"keep_tokens_separator": ","}, "keep_tokens_separator"),
    ],
)
def test_bad_config_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CaptionConfig(**kwargs)
