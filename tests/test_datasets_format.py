"""Captions in a profile's training order with the keep-tokens separator and metadata tags."""

from __future__ import annotations

import json

import pytest

from animekit.datasets.caption_format import FormatConfig, caption_tags, format_caption, plan_folder, write_plan
from animekit.datasets.metadata import PostMetadata, read_metadata
from animekit.prompting.categories import category_source
from animekit.prompting.profile import load_profile, parse_profile
from animekit.training.data.captions import CaptionConfig, split_fixed
from PIL import Image

SHUFFLED = "smile, genshin_impact, upper_body, ganyu_(genshin_impact), 1girl"


@pytest.fixture(scope="module")
def source():
    return category_source()  # tipo-kgen, a dependency


@pytest.fixture(scope="module")
def animagine():
    return load_profile("animagine-xl-3.0")


def test_animagine_training_order_with_the_separator(animagine, source):
    out = format_caption(SHUFFLED, animagine, source, FormatConfig())
    assert out == "1girl, ganyu (genshin impact), genshin impact ||| smile, upper body"
    # kohya's caption pipeline (training/data/captions.py) keeps exactly the front part fixed
    fixed, middle, tail = split_fixed(out, CaptionConfig(keep_tokens_separator="|||"))
    assert (fixed, middle, tail) == (["1girl", "ganyu (genshin impact)", "genshin impact"], ["smile", "upper body"], [])
    assert format_caption(out, animagine, source, FormatConfig()) == out  # formatting twice changes nothing
    assert format_caption(SHUFFLED, animagine, source, FormatConfig(separator="")) == (
        "1girl, ganyu (genshin impact), genshin impact, smile, upper body")


def test_caption_tags_are_plain_training_text():
    assert caption_tags(r"ganyu \(genshin impact\), ^_^, score_9, long_hair ||| smile,, long hair") == [
        "ganyu (genshin impact)", "^_^", "score_9", "long hair", "smile"]


def test_animagine_card_score_table(animagine):
    got = {score: animagine.quality_for_score(score) for score in (500, 151, 150, 100, 99, 75, 74, 25, 24, 0, -1, -5, -6)}
    assert got == {500: "masterpiece", 151: "masterpiece", 150: "best quality", 100: "best quality", 99: "high quality",
                   75: "high quality", 74: "medium quality", 25: "medium quality", 24: "normal quality", 0: "normal quality",
                   -1: "low quality", -5: "low quality", -6: "worst quality"}
    with pytest.raises(ValueError, match="has no score -> quality table"):
        load_profile("pony-v6").quality_for_score(10)


def test_profile_score_table_is_checked():
    from importlib import resources
    data = json.loads(resources.files("animekit.prompting").joinpath("profiles/animagine-xl-3.0.profile.json").read_text())
    data["quality_scores"] = [{"tag": "masterpiece", "min_score": 10}, {"tag": "best quality", "min_score": 20}]
    with pytest.raises(ValueError, match="highest min_score down"):
        parse_profile(data, "x.json")
    data["quality_scores"] = [{"tag": "great quality", "min_score": 10}]
    with pytest.raises(ValueError, match="'great quality' is not one of its quality_tags"):
        parse_profile(data, "x.json")


def test_metadata_tags_replace_existing_ones(animagine, source):
    caption = "masterpiece, smile, rating: general, 1girl, newest, ganyu_(genshin_impact)"
    meta = PostMetadata(score=120, rating="q", year=2020)
    assert format_caption(caption, animagine, source, FormatConfig(), meta) == (
        "best quality, 1girl, ganyu (genshin impact) ||| smile, rating: questionable, nsfw, late")
    assert format_caption(caption, animagine, source, FormatConfig(use_metadata=False), meta) == (
        "masterpiece, 1girl, ganyu (genshin impact) ||| smile, rating: general, newest")
    assert format_caption("1girl", animagine, source, FormatConfig(), PostMetadata(score=-20, year=2003)) == "worst quality, 1girl ||| oldest"


def test_metadata_sidecars(tmp_path):
    image = tmp_path / "a.png"
    assert read_metadata(image) is None
    (tmp_path / "a.png.json").write_text(json.dumps({"score": 151, "rating": "e", "created_at": "2023-05-01T10:00:00.000+09:00"}))
    assert read_metadata(image) == PostMetadata(151, "explicit", 2023)
    (tmp_path / "b.json").write_text(json.dumps({"score": 3, "rating": "safe", "date": "2012-01-01"}))
    assert read_metadata(tmp_path / "b.jpg") == PostMetadata(3, "general", 2012)
    (tmp_path / "c.json").write_text(json.dumps({"rating": "x"}))
    with pytest.raises(ValueError, match=r"c\.json: 'rating' must be one of g, s, q, e"):
        read_metadata(tmp_path / "c.webp")
    (tmp_path / "d.json").write_text("{broken")
    with pytest.raises(ValueError, match=r"d\.json: not a JSON file"):
        read_metadata(tmp_path / "d.png")


def test_folder_preview_then_write_keeps_originals(tmp_path, animagine, source):
    folder = tmp_path / "set"
    folder.mkdir()
    for name in ("a", "b", "c", "d"):
        Image.new("RGB", (8, 8)).save(folder / f"{name}.png")
    (folder / "a.txt").write_text(SHUFFLED + "\n")
    (folder / "b.txt").write_text("1girl ||| smile\n")  # already in order
    (folder / "d.txt").write_text("1girl, smile\n")
    (folder / "d.png.json").write_text(json.dumps({"score": 80, "rating": "g", "date": "2022-02-02"}))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    plan = plan_folder(folder, animagine, source, FormatConfig())
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # a preview writes nothing
    assert plan.preview(folder).splitlines() == [
        "a.txt",
        "  - " + SHUFFLED,
        "  + 1girl, ganyu (genshin impact), genshin impact ||| smile, upper body",
        "d.txt",
        "  - 1girl, smile",
        "  + high quality, 1girl ||| smile, rating: general, newest",
        "2 captions to rewrite, 1 already in order, 1 images without a caption (tag them first)",
    ]
    kept = write_plan(plan)
    assert [p.name for p in kept] == ["a.txt.orig", "d.txt.orig"]
    assert (folder / "a.txt").read_text() == "1girl, ganyu (genshin impact), genshin impact ||| smile, upper body\n"
    assert (folder / "a.txt.orig").read_bytes() == before["a.txt"]
    assert (folder / "b.txt").read_bytes() == before["b.txt"] and not (folder / "b.txt.orig").exists()
    assert not list(folder.glob("*.partial")) and not list(folder.glob(".*"))
    again = plan_folder(folder, animagine, source, FormatConfig())
    assert again.changes == [] and again.unchanged == 3


def test_bad_sidecar_is_reported_not_fatal(tmp_path, animagine, source):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("1girl")
    (tmp_path / "a.json").write_text(json.dumps({"score": "high"}))
    plan = plan_folder(tmp_path, animagine, source, FormatConfig())
    assert plan.changes == [] and "'score' must be a number" in plan.failed[0][1]
    with pytest.raises(ValueError, match="fixed_through must be one of the profile's slots"):
        plan_folder(tmp_path, animagine, source, FormatConfig(fixed_through="characters"))


def test_captions_sweep_their_folder_once(tmp_path, monkeypatch):
    """Dead writers' partial files are removed once per folder, not listed again for every caption."""
    from animekit.datasets import writing

    stale = tmp_path / ".a.txt.pid999999999.abc.partial"
    stale.write_text("half")
    monkeypatch.setattr(writing, "_SWEPT", set())
    calls = []
    real = writing.remove_stale_partials
    monkeypatch.setattr(writing, "remove_stale_partials", lambda folder: calls.append(folder) or real(folder))
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.txt").write_text("x")
        writing.replace_caption(tmp_path / f"{name}.txt", "y\n")
    assert calls == [tmp_path] and not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "a.txt.orig", "b.txt", "b.txt.orig", "c.txt", "c.txt.orig"]
