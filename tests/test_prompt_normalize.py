"""The tag normaliser's rules, one by one."""

from __future__ import annotations

import pytest

from animekit.prompting.tagtext import bare_name, format_tags, is_emoticon, is_plain, normalize_tag, split_tags, tag_key


@pytest.mark.parametrize("raw, expected", [
    ("long_hair", "long hair"),
    ("Long_Hair", "Long Hair"),
    ("looking_at_viewer", "looking at viewer"),
    ("  spaced   out  ", "spaced out"),
])
def test_underscores_become_spaces(raw, expected):
    assert normalize_tag(raw) == expected


@pytest.mark.parametrize("tag", [
    "score_9", "score_8_up", "source_anime", "rating_explicit", "Score_7_up",
    "^_^", ">_<", "o_o", "0_0", "x_x", "=_=", "@_@", "+_+", ";_;", "u_u",
])
def test_protected_tags_keep_underscores(tag):
    assert normalize_tag(tag) == tag


@pytest.mark.parametrize("tag, emoticon", [
    ("o_o", True), ("^_^", True), ("(o)_(o)", True), ("no_bra", False), ("one_eye_closed", False), ("red_eyes", False),
    ("smile", False), (":)", False),
])
def test_emoticon_detection(tag, emoticon):
    assert is_emoticon(tag) is emoticon


@pytest.mark.parametrize("raw, expected", [
    ("ganyu_(genshin_impact)", r"ganyu \(genshin impact\)"),
    ("ganyu (genshin impact)", r"ganyu \(genshin impact\)"),
    ("hoshimachi suisei (1st costume)", r"hoshimachi suisei \(1st costume\)"),
    ("(o)_(o)", r"\(o\)_\(o\)"),
    (":)", r":\)"),
    (":(", r":\("),
    (r"\(^o^)/", r"\(^o^\)/"),  # Danbooru's name starts escaped; the stray `)` is escaped, not doubled
])
def test_parentheses_in_names_are_escaped(raw, expected):
    assert normalize_tag(raw) == expected


def test_already_escaped_parentheses_are_not_escaped_twice():
    assert normalize_tag(r"ganyu \(genshin impact\)") == r"ganyu \(genshin impact\)"
    assert normalize_tag(r"ganyu_\(genshin_impact\)") == r"ganyu \(genshin impact\)"


@pytest.mark.parametrize("raw, expected", [
    ("(smile:1.2)", "(smile:1.2)"),
    ("(smile: 1.2)", "(smile:1.2)"),
    ("(smile)", "(smile)"),
    ("((masterpiece))", "((masterpiece))"),
    ("(long_hair:0.8)", "(long hair:0.8)"),
    ("(score_9:1.1)", "(score_9:1.1)"),
    ("(red_hair, blue_eyes:1.2)", "(red hair, blue eyes:1.2)"),
    ("(ganyu_(genshin_impact):1.2)", r"(ganyu \(genshin impact\):1.2)"),
    ("(rating: general)", "(rating: general)"),
    ("1girl (smile:1.2)", "1girl (smile:1.2)"),  # a weight after text is still a weight, not a name qualifier
])
def test_weight_and_emphasis_syntax_is_kept(raw, expected):
    assert normalize_tag(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("[abstract]", "(abstract:0.909)"),
    ("[[abstract]]", "(abstract:0.826)"),  # 1 / 1.1^2 = 0.8264
    ("[[[x]]]", "(x:0.751)"),  # 1 / 1.1^3 = 0.7513
    ("[long_hair]", "(long hair:0.909)"),
    ("[(x)]", "((x):0.909)"),  # ComfyUI: 0.909 * 1.1 = 1.0, as A1111
    ("([x])", "((x:1))"),  # ComfyUI sets (x:w) outright: 1.1 / 1.1 = 1
])
def test_a1111_brackets_become_comfyui_weights(raw, expected):
    assert normalize_tag(raw) == expected


@pytest.mark.parametrize("raw", ["[cat:dog:0.5]", "[cat:10]", "[cat|dog]"])
def test_a1111_prompt_editing_has_no_comfyui_form_and_is_kept(raw):
    assert normalize_tag(raw) == raw


def test_escaped_brackets_stay_escaped():
    assert normalize_tag(r"foo\[bar\]") == r"foo\[bar\]"
    assert normalize_tag(r"\(^o^\)/") == r"\(^o^\)/"


@pytest.mark.parametrize("raw, expected", [
    ("{red|blue}_hair", "{red|blue} hair"),
    ("{a_b|c_d}", "{a_b|c_d}"),
])
def test_dynamic_prompts_are_left_alone(raw, expected):
    assert normalize_tag(raw) == expected


def test_split_respects_brackets_newlines_and_stray_parentheses():
    text = "1girl, :(, smile,\n(red hair, blue eyes:1.2), {x, y|z}, , solo,"
    assert split_tags(text) == ["1girl", ":(", "smile", "(red hair, blue eyes:1.2)", "{x, y|z}", "solo"]


def test_dedupe_is_case_and_underscore_insensitive_first_wins():
    assert format_tags("Long_Hair, long hair, LONG HAIR, 1girl, smile, 1girl") == "Long Hair, 1girl, smile"
    assert format_tags("score_9, score 9") == "score_9"
    assert format_tags("ganyu_(genshin_impact), ganyu \\(genshin impact\\)") == r"ganyu \(genshin impact\)"


def test_weighted_and_plain_tags_are_different_tags():
    assert format_tags("smile, (smile:1.2)") == "smile, (smile:1.2)"


@pytest.mark.parametrize("text", ["", " , ,, ", "\n\n"])
def test_empty_input_gives_empty_output(text):
    assert format_tags(text) == ""


def test_no_stray_commas_or_double_spaces():
    out = format_tags(" 1girl ,, smile  ,   , blue_eyes , ")
    assert out == "1girl, smile, blue eyes"


def test_bare_name_and_key_for_lookup():
    assert bare_name(r"(ganyu \(genshin impact\):1.2)") == "ganyu (genshin impact)"
    assert bare_name("((masterpiece))") == "masterpiece"
    assert bare_name("[abstract]") == "abstract"
    assert tag_key(r"Ganyu_\(Genshin_Impact\)") == "ganyu (genshin impact)"
    assert is_plain(r"ganyu \(genshin impact\)") and not is_plain("(smile:1.2)")


@pytest.mark.parametrize("raw", [
    "ganyu_(genshin_impact)", "[abstract]", "[[x]]", "([x])", "[(x)]", "(smile: 1.2)", "((masterpiece))", ":)",
    "(o)_(o)", "{red|blue}_hair", "(ganyu_(genshin_impact):1.2)", "score_8_up", "foo\\[bar\\]", "[cat:dog:0.5]",
])
def test_normalising_twice_changes_nothing(raw):
    once = normalize_tag(raw)
    assert normalize_tag(once) == once
