"""An invalid value for a choice is refused with the list of valid values, not a message about
something else; values once mapped silently (a year far outside the table) are refused."""

from __future__ import annotations

import datetime

import pytest

from animekit.__main__ import main
from animekit.prompting.profile import load_profile
from animekit.prompting.prompt import PromptRequest, build_prompt


@pytest.mark.parametrize(
    "request_kwargs, expected",
    [
        ({"rating": "bogus"}, "rating must be one of none, general, sensitive, questionable, explicit; got 'bogus'"),
        ({"rating": "bogus", "sfw_guard": False}, "rating must be one of none, general, sensitive, questionable, explicit"),
        ({"quality": "best"}, "quality must be one of default, none, got 'best'"),
        ({"negative": "strong"}, "negative preset must be one of default, none, got 'strong'"),
        ({"year": "1800"}, "profile animagine-xl-3.0 takes years 1900-"),
        ({"year": "3000"}, "got 3000 (or give a period: newest, recent, mid, early, oldest)"),
        ({"year": "soon"}, "year must be none, a period (newest, recent, mid, early, oldest) or a year such as 2020"),
    ],
)
def test_invalid_choices_name_the_valid_ones(request_kwargs, expected):
    with pytest.raises(ValueError) as info:
        build_prompt(load_profile("animagine-xl-3.0"), PromptRequest(tags="1girl", **request_kwargs))
    assert expected in str(info.value)


def test_years_inside_the_table_or_up_to_this_year_map_to_periods():
    profile = load_profile("animagine-xl-3.0")
    assert profile.year_tag("2005") == ("oldest",)
    assert profile.year_tag("1990") == ("oldest",)  # older than the table: still its oldest period
    assert profile.year_tag(str(datetime.date.today().year)) == ("newest",)


def test_buckets_cli_defaults_stay_on_the_step_grid(capsys):
    assert main(["buckets", "--resolution", "1000"]) == 0
    sizes = [tuple(map(int, line.split("x"))) for line in capsys.readouterr().out.split()]
    assert sizes and all(w % 64 == 0 and h % 64 == 0 and min(w, h) >= 448 for w, h in sizes)
    assert main(["buckets", "--resolution", "1000", "--min", "500"]) == 2
    assert "min_size must be a multiple of step (64), got 500; nearest valid: 448 or 512" in capsys.readouterr().err


def test_merge_weights_outside_0_1_are_reported_not_silent(tmp_path, capsys, monkeypatch):
    from support.checkpoints import write_checkpoint

    monkeypatch.setenv("ANIMEKIT_HASH_CACHE", str(tmp_path / "cache.json"))
    a = write_checkpoint(tmp_path / "a.safetensors", "sd15", seed=1)
    b = write_checkpoint(tmp_path / "b.safetensors", "sd15", seed=2)
    weights = ["0.5"] * 26
    weights[4], weights[20] = "1.5", "-0.25"  # IN03, OUT06
    out = tmp_path / "m.safetensors"
    assert main(["merge", str(a), str(b), "--weights=" + ",".join(weights), "--quiet", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "note: weights outside 0..1 extrapolate" in err and "IN03=1.5, OUT06=-0.25" in err
    assert main(["merge", str(a), str(b), "--alpha", "0.5", "--quiet", "-o", str(tmp_path / "n.safetensors")]) == 0
    assert "outside 0..1" not in capsys.readouterr().err
    assert main(["merge", str(a), str(b), "--weights=" + ",".join(weights), "--explain"]) == 0
    assert "note: weights outside 0..1 extrapolate" in capsys.readouterr().out
