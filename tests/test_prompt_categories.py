"""Tag categories from a tagcomplete CSV and from tipo-kgen's name lists, and auto-ordering with them."""

from __future__ import annotations

import sys

import pytest

from animekit.prompting.categories import ChainedSource, CsvTagCategories, KgenTagLists, TagInfo, category_source
from animekit.prompting.ordering import format_for_profile, order_tags
from animekit.prompting.profile import load_profile
from animekit.prompting.prompt import PromptRequest, build_prompt

DANBOORU_CSV = '''1girl,0,4114588,"1girls,sole_female"
solo,0,3426446,"female_solo,solo_female"
smile,0,2200000,""
hatsune_miku,4,120000,"miku,hatsune_miku_(vocaloid)"
vocaloid,3,180000,""
ganyu_(genshin_impact),4,15000,"ganyu"
genshin_impact,3,500000,"genshin"
wlop,1,2000,""
highres,5,5000000,"high_res"
commentary_request,5,3000000
e621_species,8,100,""
'''


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "danbooru.csv"
    path.write_text(DANBOORU_CSV, encoding="utf-8")
    return path


def test_csv_types_and_aliases(csv_file):
    source = CsvTagCategories.from_file(csv_file)
    assert source.lookup("hatsune miku") == TagInfo("character")
    assert source.lookup("vocaloid") == TagInfo("series")
    assert source.lookup("wlop") == TagInfo("artist")
    assert source.lookup("commentary request") == TagInfo("meta")
    assert source.lookup("smile") == TagInfo("general")
    assert source.lookup("e621 species") == TagInfo("general")  # unknown type numbers are general
    assert source.lookup("miku") == TagInfo("character", "hatsune miku")
    assert source.lookup("genshin") == TagInfo("series", "genshin impact")
    assert source.lookup("not a tag") is None


def test_auto_order_with_csv_categories(csv_file):
    profile = load_profile("animagine-xl-3.0")
    text = "smile, genshin_impact, wlop, ganyu_(genshin_impact), 1girl, masterpiece, highres, outdoors"
    out = format_for_profile(text, profile, CsvTagCategories.from_file(csv_file))
    assert out == r"masterpiece, 1girl, ganyu \(genshin impact\), genshin impact, wlop, smile, outdoors, highres"


def test_alias_is_replaced_by_its_name_unless_weighted(csv_file):
    profile = load_profile("animagine-xl-3.1")
    source = CsvTagCategories.from_file(csv_file)
    slots = order_tags(["miku", "(genshin:1.2)", "sole female"], profile, source)
    assert slots["character"] == ["hatsune miku"]
    assert slots["series"] == ["(genshin:1.2)"]
    assert slots["general"] == ["1girl"]  # the CSV says its name is general; the name replaces the alias
    assert format_for_profile("miku, hatsune_miku", profile, source) == "hatsune miku"


def test_builder_uses_the_csv_for_tags_typed_in_the_general_field(csv_file):
    profile = load_profile("noobai-xl")
    out = build_prompt(profile, PromptRequest(subject="1girl", tags="smile, wlop, miku, vocaloid", sfw_guard=False),
                       category_source(csv_file, use_kgen=False))
    assert out.positive == "masterpiece, best quality, newest, absurdres, highres, 1girl, hatsune miku, vocaloid, wlop, smile"


@pytest.mark.parametrize("content, line, what", [
    ("1girl,0,10\nbroken line without type\n", 2, "expected 'name,type,count"),
    ("1girl,0,10\nsmile,general,10\n", 2, "tag type must be a number"),
    ('1girl,0,10\n,0,5\n', 2, "expected 'name,type,count"),
])
def test_malformed_csv_names_file_and_line(tmp_path, content, line, what):
    path = tmp_path / "tags.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as info:
        CsvTagCategories.from_file(path)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert what in str(info.value)


def test_unreadable_csv_errors(tmp_path):
    binary = tmp_path / "latin1.csv"
    binary.write_bytes("caf\xe9,0,1\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.csv: not UTF-8 text"):
        CsvTagCategories.from_file(binary)
    with pytest.raises(FileNotFoundError):
        CsvTagCategories.from_file(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="is a folder"):
        CsvTagCategories.from_file(tmp_path)


def test_csv_header_line_and_bom_are_accepted(tmp_path):
    path = tmp_path / "with-header.csv"
    path.write_text("\ufeffname,type,count,aliases\nwlop,1,10,\n", encoding="utf-8")
    assert CsvTagCategories.from_file(path).lookup("wlop") == TagInfo("artist")


def _fake_kgen(root, package="kgen_fake"):
    """A package shaped like tipo-kgen whose __init__ would fail if imported (model code must not run)."""
    folder = root / package
    (folder / "tag-list").mkdir(parents=True)
    (folder / "__init__.py").write_text("raise RuntimeError('kgen model code must not be imported')\n")
    (folder / "tag-list" / "characters.txt").write_text("hatsune miku\nganyu (genshin impact)\n")
    (folder / "tag-list" / "copyrights.txt").write_text("vocaloid\ngenshin impact\n")
    (folder / "tag-list" / "artist.txt").write_text("wlop\nask (askzy)\n")
    (folder / "tag-list" / "meta.txt").write_text("highres\ncommentary request\n")
    return package


@pytest.fixture
def kgen_package(tmp_path, monkeypatch):
    package = _fake_kgen(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package
    assert package not in sys.modules


def test_kgen_lists_are_read_without_importing_the_package(kgen_package):
    source = KgenTagLists.discover(kgen_package)
    assert source is not None
    assert source.lookup("hatsune miku") == TagInfo("character")
    assert source.lookup("genshin impact") == TagInfo("series")
    assert source.lookup("ask (askzy)") == TagInfo("artist")
    assert source.lookup("commentary request") == TagInfo("meta")
    assert source.lookup("smile") is None
    assert kgen_package not in sys.modules


def test_auto_order_with_kgen_categories(kgen_package):
    profile = load_profile("animagine-xl-4.0")
    source = ChainedSource([KgenTagLists.discover(kgen_package)])
    out = format_for_profile("smile, ask_(askzy), genshin_impact, 1girl, ganyu_(genshin_impact), rating_safe, safe", profile, source)
    assert out == r"1girl, ganyu \(genshin impact\), genshin impact, safe, ask \(askzy\), smile, rating_safe"  # not a 4.0 tag: general, underscores kept


def test_kgen_absent_or_without_lists(tmp_path, monkeypatch):
    assert KgenTagLists.discover("animekit_no_such_package") is None
    (tmp_path / "kgen_empty").mkdir()
    (tmp_path / "kgen_empty" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert KgenTagLists.discover("kgen_empty") is None


def test_csv_wins_over_kgen(tmp_path, kgen_package):
    path = tmp_path / "override.csv"
    path.write_text("wlop,0,1,\n", encoding="utf-8")
    chained = ChainedSource([CsvTagCategories.from_file(path), KgenTagLists.discover(kgen_package)])
    assert chained.lookup("wlop") == TagInfo("general")
    assert chained.lookup("vocaloid") == TagInfo("series")


def test_builtin_fallback_without_any_source():
    profile = load_profile("pony-v6")
    slots = order_tags(["smile", "2girls", "score_9", "source_anime", "rating_explicit", "absurdres"], profile)
    assert (slots["subject"], slots["quality"], slots["source"], slots["rating"], slots["meta"], slots["general"]) == (
        ["2girls"], ["score_9"], ["source_anime"], ["rating_explicit"], ["absurdres"], ["smile"])
    noob = load_profile("noobai-xl")
    slots = order_tags(["year 2021", "old", "very awa", "yearly"], noob)
    assert (slots["year"], slots["aesthetic"], slots["general"]) == (["year 2021", "old"], ["very awa"], ["yearly"])


# --- the installed tipo-kgen (a dependency) and the hashed index ----------------------------------

def test_fresh_install_orders_the_issue_example(capsys):
    """tipo-kgen is a dependency, so the shuffled example orders with no CSV and no setup."""
    from animekit.__main__ import main

    assert KgenTagLists.discover() is not None, "tipo-kgen (a dependency) is not installed"
    tags = "smile, genshin_impact, upper_body, ganyu_(genshin_impact), 1girl"
    assert main(["prompt", "--profile", "animagine-xl-3.0", "--quality", "none", "--no-sfw-guard",
                 "--negative", "none", tags]) == 0
    assert capsys.readouterr().out.splitlines()[0] == r"positive: 1girl, ganyu \(genshin impact\), genshin impact, smile, upper body"
    assert main(["prompt", "--profile", "animagine-xl-3.0", tags]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        r"positive: masterpiece, best quality, 1girl, ganyu \(genshin impact\), genshin impact, smile, upper body, rating: general")


def test_installed_kgen_lists_and_index_size():
    source = KgenTagLists.discover()
    assert source.lookup("hatsune miku") == TagInfo("character")
    assert source.lookup("honkai: star rail") == TagInfo("series")
    assert source.lookup("commentary request") == TagInfo("meta")
    assert source.lookup("smile") is None and source.lookup("upper body") is None
    assert len(source.index) > 900_000
    assert source.index.nbytes == 8 * len(source.index)  # one int64 per name, nothing else


def test_index_keys_match_tag_key_for_untidy_lines(tmp_path):
    """The whole-text normalisation gives exactly tag_key() of each line (CRLF, tabs, stray and
    doubled spaces, full-width space, underscores, escapes, upper case)."""
    from animekit.prompting.categories import _keys_of_lines
    from animekit.prompting.tagtext import tag_key

    lines = ["Hatsune_Miku", "  leading", "trailing  ", "a  b\tc", "x\u3000y", r"name \(series\)", "", "plain", " ",
             "UPPER Case_Name (Series)", "last"]
    path = tmp_path / "characters.txt"
    path.write_bytes("\r\n".join(lines).encode("utf-8"))
    assert _keys_of_lines(path) == [tag_key(line) for line in lines]


def test_a_name_in_two_lists_gets_the_earlier_list(tmp_path, monkeypatch):
    package = _fake_kgen(tmp_path, "kgen_twice")
    (tmp_path / package / "tag-list" / "artist.txt").write_text("wlop\nhatsune miku\n")  # also a character
    monkeypatch.syspath_prepend(str(tmp_path))
    source = KgenTagLists.discover(package)
    assert source.lookup("hatsune miku") == TagInfo("character")
    assert [(e.name, e.category) for e in source.entries()] == [
        ("hatsune miku", "character"), ("ganyu (genshin impact)", "character"), ("vocaloid", "series"),
        ("genshin impact", "series"), ("wlop", "artist"), ("highres", "meta"), ("commentary request", "meta")]


def test_entries_of_csv_and_chain(csv_file, kgen_package):
    from animekit.prompting.categories import TagEntry

    csv_source = CsvTagCategories.from_file(csv_file)
    entries = list(csv_source.entries())
    assert entries[0] == TagEntry("1girl", "general", 4114588, ("1girls", "sole female"))
    assert entries[3] == TagEntry("hatsune miku", "character", 120000, ("miku", "hatsune miku (vocaloid)"))
    assert entries[9] == TagEntry("commentary request", "meta", 3000000, ())
    assert len(entries) == 11
    chained = list(ChainedSource([csv_source, KgenTagLists.discover(kgen_package)]).entries())
    assert chained[:11] == entries
    # kgen adds only what the CSV does not know: its own names minus the CSV's.
    assert [(e.name, e.category, e.count) for e in chained[11:]] == [("ask (askzy)", "artist", None)]


def test_csv_count_must_be_a_number(tmp_path):
    path = tmp_path / "tags.csv"
    path.write_text("1girl,0,many\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"tags\.csv:1: post count must be a whole number"):
        CsvTagCategories.from_file(path)
