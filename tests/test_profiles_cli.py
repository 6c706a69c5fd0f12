"""`animekit prompt` and `animekit buckets`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from animekit.__main__ import main
from animekit.sizes.resolutions import kohya_buckets


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_buckets_sd15_prints_17_lines(capsys):
    code, out, _ = run(capsys, "buckets", "--resolution", "512", "--min", "256", "--max", "1024", "--step", "64")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 17
    assert lines[0] == "256x1024" and lines[-1] == "1024x256" and "512x512" in lines


def test_buckets_sdxl_prints_33_lines_and_defaults_min_max(capsys):
    code, out, _ = run(capsys, "buckets", "--resolution", "1024")
    assert code == 0
    assert out.splitlines() == [f"{w}x{h}" for w, h in kohya_buckets(1024, 512, 2048, 64)]
    assert len(out.splitlines()) == 33


def test_buckets_from_profile(capsys):
    code, out, _ = run(capsys, "buckets", "--profile", "sd15-anime")
    assert code == 0 and len(out.splitlines()) == 17
    code, out, _ = run(capsys, "buckets", "--profile", "noobai-xl", "--step", "128")
    assert code == 0 and out.splitlines() == [f"{w}x{h}" for w, h in kohya_buckets(1024, 512, 2048, 128)]


def test_buckets_unknown_profile_exits_2_with_the_list(capsys):
    code, out, err = run(capsys, "buckets", "--profile", "sdxl")
    assert code == 2 and out == ""
    assert err.strip() == ("animekit buckets: error: unknown profile 'sdxl'; valid profiles: animagine-xl-3.0, "
                           "animagine-xl-3.1, animagine-xl-4.0, noobai-xl, pony-v6, sd15-anime")


def test_buckets_needs_profile_or_resolution_and_a_valid_step(capsys):
    code, _, err = run(capsys, "buckets")
    assert code == 2 and "give --profile ID or --resolution R" in err
    code, _, err = run(capsys, "buckets", "--resolution", "512", "--step", "60")
    assert code == 2 and "step must be a multiple of 8" in err


def test_prompt_text_output(capsys):
    code, out, _ = run(capsys, "prompt", "--profile", "animagine-xl-3.0", "smile, 1girl, ganyu_(genshin_impact), masterpiece, smile")
    assert code == 0
    assert out.splitlines() == [
        # tipo-kgen (a dependency) knows ganyu is a character: it moves before the general tags
        r"positive: masterpiece, best quality, 1girl, ganyu \(genshin impact\), smile, rating: general",
        "negative: nsfw, lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, "
        "cropped, worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, blurry, "
        "artist name, rating: sensitive",
    ]


def test_prompt_json_with_modifiers(capsys):
    code, out, _ = run(capsys, "prompt", "--profile", "pony-v6", "--json", "--no-sfw-guard", "--rating", "explicit",
                       "--negative", "none", "--extra-negative", "lowres", "1girl, source_anime")
    assert code == 0
    assert json.loads(out) == {
        "positive": "score_9, score_8_up, score_7_up, score_6_up, score_5_up, score_4_up, source_anime, rating_explicit, 1girl",
        "negative": "lowres",
    }


def test_prompt_year_aesthetic_and_no_quality(capsys):
    code, out, _ = run(capsys, "prompt", "--profile", "animagine-xl-3.1", "--json", "--quality", "none", "--year", "2019",
                       "--aesthetic", "very aesthetic", "--no-sfw-guard", "1girl, smile")
    assert code == 0
    assert json.loads(out)["positive"] == "1girl, smile, recent, very aesthetic"


def test_prompt_with_tags_csv(capsys, tmp_path):
    csv_path = tmp_path / "danbooru.csv"
    csv_path.write_text('hatsune_miku,4,1,"miku"\nvocaloid,3,1,""\n', encoding="utf-8")
    code, out, _ = run(capsys, "prompt", "--profile", "animagine-xl-3.0", "--json", "--tags-csv", str(csv_path),
                       "smile, vocaloid, miku, 1girl")
    assert code == 0
    assert json.loads(out)["positive"] == "masterpiece, best quality, 1girl, hatsune miku, vocaloid, smile, rating: general"


def test_prompt_errors_exit_2(capsys, tmp_path):
    code, _, err = run(capsys, "prompt", "--profile", "nope", "1girl")
    assert code == 2 and "unknown profile 'nope'" in err
    code, _, err = run(capsys, "prompt", "--rating", "explicit", "1girl")
    assert code == 2 and "contradicts the SFW guard" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("smile,zero,1\n", encoding="utf-8")
    code, _, err = run(capsys, "prompt", "--tags-csv", str(bad), "1girl")
    assert code == 2 and f"{bad}:1: tag type must be a number" in err
    code, _, err = run(capsys, "prompt", "--tags-csv", str(tmp_path / "missing.csv"), "1girl")
    assert code == 2 and "missing.csv" in err


def test_console_entry_point_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "animekit", "buckets", "--profile", "animagine-xl-3.0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 33
