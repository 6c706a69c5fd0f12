"""A folder made ready to train (training/data/folder_dataset.py, summary.py): the Dataset node's work, pure."""

from __future__ import annotations

import os

import pytest

from animekit.training.data.captions import CaptionConfig
from animekit.training.data.folder_dataset import bucket_config, build_dataset, folder_fingerprint, resolve_folder
from support.training_images import write_image


def build(folder, resolution=256, **changes):
    settings = dict(repeats=0, caption_extension=".txt", buckets=bucket_config(resolution, 0, 0, 64, False),
                    captions=CaptionConfig(shuffle_caption=False), flip=False, random_crop=False)  # fmt: skip
    settings.update(changes)
    return build_dataset(folder, **settings)


def test_relative_folders_stay_inside_the_input_folder(tmp_path):
    (tmp_path / "input" / "chars").mkdir(parents=True)
    (tmp_path / "input" / "file.txt").write_text("x", encoding="utf-8")
    assert resolve_folder(" chars ", tmp_path / "input") == (tmp_path / "input" / "chars").resolve()
    assert resolve_folder(str(tmp_path / "input"), "/unused") == tmp_path / "input"  # absolute: as given
    with pytest.raises(ValueError, match=r"^folder: empty; give a folder inside"):
        resolve_folder("  ", tmp_path / "input")
    with pytest.raises(ValueError, match=r"^folder '\.\./x' escapes the folder"):
        resolve_folder("../x", tmp_path / "input")
    with pytest.raises(ValueError, match=r"^folder: '.*missing' does not exist$"):
        resolve_folder("missing", tmp_path / "input")
    with pytest.raises(ValueError, match=r"^folder: '.*file.txt' is not a folder$"):
        resolve_folder("file.txt", tmp_path / "input")


def test_bucket_bounds_default_to_kohyas_half_and_double():
    b = bucket_config(1024, 0, 0, 64, False)
    assert (b.resolution, b.min_size, b.max_size, b.step) == (1024, 512, 2048, 64)
    b = bucket_config(512, 320, 0, 64, True)
    assert (b.min_size, b.max_size, b.no_upscale) == (320, 1024, True)
    with pytest.raises(ValueError, match=r"^buckets \(resolution 512, min_bucket_size 1024, max_bucket_size 1024, bucket_step 64\): "):
        bucket_config(512, 1024, 0, 64, False)


def test_the_commonest_mistakes_get_their_own_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"^folder: no images \(png, jpg, webp, bmp\) in .*empty' or its kohya `N_name` subfolders$"):
        build(tmp_path / "empty")
    write_image(tmp_path / "nocaps" / "a.png", caption=None)
    with pytest.raises(ValueError, match=r"^folder: none of the 1 images in .* has a caption file \(e.g. a.txt\)"):
        build(tmp_path / "nocaps")
    write_image(tmp_path / "small" / "a.png", size=(100, 90))
    with pytest.raises(ValueError, match=r"^folder: every image is smaller than the smallest bucket side \(256 px\).*a.png is 100x90\)$"):
        build(tmp_path / "small", resolution=512)


def test_the_summary_says_what_was_found(tmp_path):
    folder = tmp_path / "mix"
    write_image(folder / "a.png", size=(256, 256), caption="1girl, solo, smile")
    write_image(folder / "b.png", size=(384, 256), caption="1girl, outdoors")
    write_image(folder / "c.png", size=(256, 256), caption=None)
    write_image(folder / "d.png", size=(64, 64), caption="1girl")
    write_image(folder / "3_extra" / "e.png", size=(256, 384), caption="1boy, solo")
    spec = build(folder)
    assert len(spec.index.records) == 3 and sum(r.repeats for r in spec.index.records) == 5
    assert spec.folder == folder and spec.config.folders[0].repeats is None
    assert spec.preview.splitlines() == [
        f"3 images in {folder} (5 samples per epoch with repeats)",
        "folders: 3_extra (1 x 3), mix (2 x 1)",
        "buckets (resolution 256, 128..512, step 64): 192x320: 3, 256x256: 1, 320x192: 1",
        "top tags: 1girl (2), solo (2), smile (1), outdoors (1), 1boy (1)",
        "skipped 2: c.png: missing caption; d.png: too small: 64x64 is under the smallest bucket side 128",
        "caption as trained (one draw): '1girl, solo, smile'",
    ]


def test_the_summary_shows_a_dropped_caption_and_caps_the_skipped_list(tmp_path):
    folder = tmp_path / "many"
    write_image(folder / "keep.png", size=(256, 256), caption="1girl")
    for i in range(7):
        write_image(folder / f"s{i}.png", size=(256, 256), caption=None)
    spec = build(folder, captions=CaptionConfig(caption_dropout_rate=0.999999))
    lines = spec.preview.splitlines()
    assert lines[-2].startswith("skipped 7: s0.png: missing caption; ") and lines[-2].endswith(" (+2 more)")
    assert lines[-2].count("missing caption") == 5
    assert lines[-1] == "caption as trained (one draw): '' (dropped)"


def test_fingerprint_changes_with_the_files_not_with_time(tmp_path):
    folder = tmp_path / "set"
    write_image(folder / "a.png", caption="1girl")
    first = folder_fingerprint(folder)
    assert folder_fingerprint(folder) == first
    caption = folder / "a.txt"
    caption.write_text("1girl, smile", encoding="utf-8")
    edited = folder_fingerprint(folder)
    assert edited != first
    write_image(folder / "2_more" / "b.png", caption="1boy")
    added = folder_fingerprint(folder)
    assert added != edited
    stat = caption.stat()
    os.utime(caption, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # saved again, same bytes
    assert folder_fingerprint(folder) != added


def test_an_aesthetic_threshold_leaves_out_low_and_unscored_images(tmp_path):
    from animekit.training.data.folder_dataset import above_aesthetic_score
    from animekit.training.data.scores import write_scores

    folder = tmp_path / "scored"
    for name in ("a", "b", "c"):
        write_image(folder / f"{name}.png", size=(256, 256), caption="1girl")
    write_scores(folder, {"a.png": 0.9, "b.png": 0.4}, scorer="test")
    spec = build(folder)
    kept = above_aesthetic_score(spec, 0.5)
    assert [r.path for r in kept.index.records] == [str(folder / "a.png")]
    assert kept.config.min_aesthetic_score == 0.5 and spec.config.min_aesthetic_score != 0.5  # the input is unchanged
    assert kept.preview == spec.preview + "\naesthetic score >= 0.5: training on 1 of 3 images; 2 left out (not deleted)"
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".png") == ["a.png", "b.png", "c.png"]  # nothing deleted
    with pytest.raises(ValueError, match=r"^min_aesthetic_score: no image scores 0\.95 or more \(3 left out, e\.g\. "):
        above_aesthetic_score(spec, 0.95)
