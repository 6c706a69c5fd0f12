"""Tag autocomplete core: ranking, aliases, escaping, profile-first ordering (pure)."""

from __future__ import annotations

import importlib.util

import pytest

from animekit.prompting.autocomplete import CompletionSettings, TagIndex, suggest
from animekit.prompting.autocomplete.index import TIER_LISTED, TIER_UNRANKED, IndexEntry
from animekit.prompting.autocomplete.sources import index_entries
from animekit.prompting.autocomplete.suggestions import query_key
from animekit.prompting.categories import category_source

CSV = """name,type,count,aliases
looking_at_viewer,0,1000,
long_hair,0,900,"longhair,long_hairs"
long_sleeves,0,500,
longer,0,50,
ganyu_(genshin_impact),4,300,"ganyu,ganyu_(genshin)"
genshin_impact,3,800,
lumine_(genshin_impact),4,250,
artoria_pendragon_(fate),4,200,saber
fate_(series),3,700,
:),0,150,
score_9_ish,5,10,
"""


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    path = tmp_path_factory.mktemp("tags") / "danbooru.csv"
    path.write_text(CSV, encoding="utf-8")
    return TagIndex.build(index_entries(category_source(path, use_kgen=False)))


def tags(found):
    return [s.tag for s in found]


def ask(index, query, **settings):
    return suggest(index, query, CompletionSettings(**settings))


def test_counted_tags_rank_by_count(index):
    found = ask(index, "lo")
    # counted tags by count, then the built-in common tags, then the families' tags
    assert tags(found) == ["looking at viewer", "long hair", "long sleeves", "longer", "lowres", "low quality", "low score"]
    assert [s.count for s in found] == [1000, 900, 500, 50, None, None, None]
    assert [s.category for s in found] == ["general"] * 4 + ["meta", "quality", "quality"]
    assert tags(ask(index, "lo", limit=2)) == ["looking at viewer", "long hair"]
    assert [(s.tag, s.category) for s in ask(index, "g", limit=3)] == [
        ("genshin impact", "series"), ("ganyu (genshin impact)", "character"), ("great quality", "quality")]


def test_listed_tags_interleave_by_position_and_unranked_artists_come_last():
    entries = [
        IndexEntry("kana a", "character", TIER_LISTED), IndexEntry("kana b", "character", TIER_LISTED),
        IndexEntry("kana series", "series", TIER_LISTED), IndexEntry("kana artist", "artist", TIER_UNRANKED),
        IndexEntry("kana c", "character", TIER_LISTED),
    ]
    index = TagIndex.build(entries)
    found = suggest(index, "kana", CompletionSettings())
    assert tags(found) == ["kana a", "kana series", "kana b", "kana c", "kana artist"]
    assert [s.count for s in found] == [None] * 5


def test_alias_suggests_the_canonical_tag_once(index):
    found = ask(index, "longh")
    assert tags(found) == ["long hair"]
    assert (found[0].alias, found[0].insert, found[0].count) == ("longhair", "long hair", 900)
    both = ask(index, "long")  # the tag and its aliases all match: the tag once, by its own name
    assert tags(both) == ["long hair", "long sleeves", "longer"]
    assert both[0].alias is None
    saber = ask(index, "sab")
    assert (saber[0].tag, saber[0].alias, saber[0].insert) == ("artoria pendragon (fate)", "saber", "artoria pendragon \\(fate\\)")


def test_inserted_text_is_comfyui_form_with_escaped_parentheses(index):
    ganyu = ask(index, "gany")[0]
    assert (ganyu.tag, ganyu.insert, ganyu.category) == ("ganyu (genshin impact)", "ganyu \\(genshin impact\\)", "character")
    assert ask(index, "gany", underscores=True)[0].insert == "ganyu_\\(genshin_impact\\)"
    assert ask(index, "looking", underscores=True)[0].insert == "looking_at_viewer"
    assert ask(index, ":")[0].insert == ":\\)"
    # what the user typed may carry escapes, underscores and capitals
    assert ask(index, "Ganyu_\\(gen")[0].tag == "ganyu (genshin impact)"
    assert query_key("long_") == "long " and query_key("long") == "long" and query_key("  ") == ""
    assert tags(ask(index, "long ")) == tags(ask(index, "long_")) == ["long hair", "long sleeves"]
    assert tags(ask(index, "long")) == ["long hair", "long sleeves", "longer"]
    assert ask(index, "   ") == []


def test_characters_carry_their_series(index):
    assert [(s.tag, s.series) for s in ask(index, "ganyu (")] == [("ganyu (genshin impact)", "genshin impact")]
    assert ask(index, "artoria")[0].series == "fate (series)"  # `(fate)` -> the series spelled `fate (series)`
    assert ask(index, "genshin")[0].series is None  # a series itself


def test_profile_tags_come_first_in_family_order(index):
    pony = ask(index, "s", profile="pony-v6", limit=8)
    assert tags(pony) == ["score_9", "score_8_up", "score_7_up", "score_6_up", "score_5_up", "score_4_up", "score_8", "score_7"]
    assert all(s.family and not s.unused and s.category == "quality" for s in pony)
    assert [s.insert for s in pony[:2]] == ["score_9", "score_8_up"]  # underscores kept in spaces mode
    rating = ask(index, "r", profile="animagine-xl-3.0", underscores=True)
    assert [(s.tag, s.insert, s.category) for s in rating[:4]] == [
        ("rating: general", "rating: general", "rating"), ("rating: sensitive", "rating: sensitive", "rating"),
        ("rating: questionable", "rating: questionable", "rating"), ("rating: explicit", "rating: explicit", "rating"),
    ]
    years = ask(index, "year 202", profile="animagine-xl-4.0")
    assert tags(years) == ["year 2025", "year 2024", "year 2023", "year 2022", "year 2021", "year 2020"]
    assert [(s.tag, s.family, s.unused) for s in ask(index, "very", profile="animagine-xl-3.1")] == [
        ("very aesthetic", True, False), ("very displeasing", True, False), ("very awa", False, True)]


def test_other_families_tags_are_marked_and_put_last(index):
    found = ask(index, "score", profile="animagine-xl-3.0")
    assert found[0].tag == "score 9 ish" and not found[0].unused  # a plain tag first
    assert tags(found[1:4]) == ["score_9", "score_8_up", "score_7_up"] and len(found) == 12
    assert all(s.unused and not s.family for s in found[1:])
    # Animagine 3.0's own rating tags first; Pony's rating tags and 3.1's `recent` are marked
    rated = ask(index, "r", profile="animagine-xl-3.0", limit=6)
    assert [(s.tag, s.family, s.unused) for s in rated] == [
        ("rating: general", True, False), ("rating: sensitive", True, False), ("rating: questionable", True, False),
        ("rating: explicit", True, False), ("recent", False, True), ("rating_safe", False, True)]
    unmarked = ask(index, "score", profile="none")
    assert not any(s.unused or s.family for s in unmarked)
    assert tags(unmarked)[:2] == ["score 9 ish", "score_9"]  # family tags rank above listed-only tags
    # absurdres is in Animagine 4.0's quality tags but a Danbooru meta tag for everyone
    absurd = ask(index, "absurd", profile="pony-v6")
    assert [(s.tag, s.category, s.unused) for s in absurd] == [("absurdres", "meta", False)]
    assert [(s.tag, s.unused) for s in ask(index, "very", profile="pony-v6")] == [
        ("very aesthetic", True), ("very displeasing", True), ("very awa", True)]


def test_settings_are_checked():
    with pytest.raises(ValueError, match="limit must be a whole number from 1 to 100, got 0"):
        CompletionSettings(limit=0)
    with pytest.raises(ValueError, match="unknown profile 'sdxl'; valid profiles: animagine-xl-3.0"):
        CompletionSettings(profile="sdxl")


@pytest.mark.skipif(importlib.util.find_spec("kgen") is None, reason="tipo-kgen is not installed")
def test_full_index_knows_ganyu_from_tipo_kgen():
    from animekit.prompting.autocomplete import default_index

    index = default_index()
    assert len(index) > 900_000
    found = suggest(index, "gany", CompletionSettings(limit=5, profile="animagine-xl-3.0"))
    assert (found[0].tag, found[0].insert, found[0].series) == ("ganyu (genshin impact)", "ganyu \\(genshin impact\\)", "genshin impact")


def test_ready_index_does_not_wait_for_the_build_and_keeps_its_error(monkeypatch):
    import threading

    from animekit.prompting.autocomplete import default_index, ready_index
    from animekit.prompting.autocomplete import suggestions as suggest_module

    release = threading.Event()
    small = TagIndex.build([IndexEntry("kana a", "character", TIER_LISTED)])

    def slow_build(csv_path):
        release.wait(30)
        if str(csv_path).endswith("bad.csv"):
            raise ValueError("bad.csv:3: tag type must be a number")
        return small

    monkeypatch.setattr(suggest_module, "_build", slow_build)
    monkeypatch.setattr(suggest_module, "_builds", {})
    assert ready_index("/nowhere/good.csv") is None  # building
    assert ready_index("/nowhere/bad.csv") is None
    release.set()
    assert default_index("/nowhere/good.csv") is small
    assert ready_index("/nowhere/good.csv") is small
    with pytest.raises(ValueError, match="bad.csv:3: tag type must be a number"):
        default_index("/nowhere/bad.csv")
    with pytest.raises(ValueError, match="bad.csv:3"):
        ready_index("/nowhere/bad.csv")  # reported again, not rebuilt
