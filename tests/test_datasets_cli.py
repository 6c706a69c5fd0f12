"""`animekit dataset tag|format|score|stats`: help, output, exit codes and clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from animekit.__main__ import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("step", ["tag", "format", "score", "stats"])
def test_each_step_has_help(capsys, step):
    with pytest.raises(SystemExit) as info:
        main(["dataset", step, "--help"])
    assert info.value.code == 0
    assert f"usage: animekit dataset {step}" in capsys.readouterr().out


@pytest.fixture
def raw(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    Image.new("RGB", (8, 4), (0, 0, 255)).save(folder / "a.png")
    Image.new("RGB", (8, 8), (0, 255, 0)).save(folder / "b.png")
    return folder


def test_tag_format_stats_from_a_raw_folder(tmp_path, capsys, raw):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from support.tiny_tagger import write_tagger

    tagger = write_tagger(tmp_path / "wd")
    (raw / "broken.png").write_bytes(b"x")
    code, out, err = run(capsys, "dataset", "tag", str(raw), "--model", str(tagger), "--threshold", "0.6", "--exclude", "watermark")
    assert code == 1  # one unreadable image: reported, the rest tagged
    assert out.strip().startswith("tagged 2 images, kept 0 existing captions, 1 unreadable")
    assert f"skipped {raw / 'broken.png'}: cannot read" in err
    (raw / "broken.png").unlink()
    assert (raw / "b.txt").read_text() == "ganyu (genshin impact), 1girl\n"
    (raw / "b.png.json").write_text(json.dumps({"score": 200, "rating": "g", "date": "2023-03-03"}))
    code, out, _ = run(capsys, "dataset", "format", str(raw), "--profile", "animagine-xl-3.0")
    assert code == 0
    assert out.splitlines() == [
        "a.txt", "  - blue tag, 1girl", "  + 1girl ||| blue tag",
        "b.txt", "  - ganyu (genshin impact), 1girl", "  + masterpiece, 1girl, ganyu (genshin impact) ||| rating: general, newest",
        "2 captions to rewrite, 0 already in order",
        "nothing written; run again with --write to rewrite them (originals kept as <caption>.orig)",
    ]
    assert (raw / "a.txt").read_text() == "blue tag, 1girl\n"
    code, out, _ = run(capsys, "dataset", "format", str(raw), "--write")
    assert code == 0 and out.startswith("rewrote 2 captions (2 originals kept as .orig)")
    assert (raw / "a.txt").read_text() == "1girl ||| blue tag\n" and (raw / "a.txt.orig").read_text() == "blue tag, 1girl\n"
    code, out, _ = run(capsys, "dataset", "stats", str(raw), "--json")
    report = json.loads(out)
    assert code == 0 and report["images"] == 2 and report["tags"] == {"1girl": 2, "blue tag": 1, "masterpiece": 1,
                                                                      "ganyu (genshin impact)": 1, "rating: general": 1, "newest": 1}
    assert report["buckets"] == {"1024x1024": 1, "1408x704": 1}
    assert [Path(x["image"]).name for x in report["too_small"]] == ["a.png", "b.png"]


def test_clean_errors(tmp_path, capsys, raw):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "dataset", "stats", str(empty))
    assert code == 2 and err.strip() == f"animekit dataset: error: folder '{empty}' has no images (png, jpg, jpeg, webp, bmp) in it or in kohya `N_name` subfolders"
    code, _, err = run(capsys, "dataset", "tag", str(raw), "--model", str(empty))
    assert code == 2 and "has no model.onnx" in err
    code, _, err = run(capsys, "dataset", "score", str(raw), "--model", str(empty))
    assert code == 2 and "has no config.json" in err
    code, _, err = run(capsys, "dataset", "format", str(tmp_path / "missing"))
    assert code == 2 and "does not exist" in err
    code, _, err = run(capsys, "dataset", "format", str(raw), "--profile", "nope")
    assert code == 2 and "unknown profile 'nope'" in err
