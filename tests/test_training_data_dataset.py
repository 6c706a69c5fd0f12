"""Scanning dataset folders: formats, kohya repeat folders, skipped files, errors, tag frequency."""

from __future__ import annotations

import pytest
from PIL import Image

from animekit.training.data.captions import CaptionConfig
from animekit.training.data.dataset import BucketConfig, DatasetConfig, FolderSpec, scan_dataset
from support.training_images import noise, write_image

SMALL = BucketConfig(resolution=64, min_size=32, max_size=128, step=32)


def scan(*folders, **kwargs):
    specs = tuple(f if isinstance(f, FolderSpec) else FolderSpec(str(f)) for f in folders)
    return scan_dataset(DatasetConfig(specs, buckets=SMALL, **kwargs))


def test_png_jpg_webp_with_captions(tmp_path):
    write_image(tmp_path / "a.png", (64, 48), "1girl, solo")
    write_image(tmp_path / "b.jpg", (40, 80), "1boy")
    write_image(tmp_path / "c.webp", (50, 50), "cat, no humans")
    write_image(tmp_path / "d.JPEG", (30, 20), "upper case suffix")
    (tmp_path / "notes.txt").write_text("not an image")
    index = scan(tmp_path)
    got = [(r.path.rsplit("/", 1)[1], r.caption, r.width, r.height, r.repeats) for r in index.records]
    assert got == [
        ("a.png", "1girl, solo", 64, 48, 1),
        ("b.jpg", "1boy", 40, 80, 1),
        ("c.webp", "cat, no humans", 50, 50, 1),
        ("d.JPEG", "upper case suffix", 30, 20, 1),
    ]
    assert index.skipped == []


def test_caption_is_first_non_empty_line_utf8_bom_ok(tmp_path):
    image = write_image(tmp_path / "a.png", caption=None)
    image.with_suffix(".txt").write_bytes("\ufeff\n  1girl, 初音ミク  \nsecond line\n".encode("utf-8"))
    assert [r.caption for r in scan(tmp_path).records] == ["1girl, 初音ミク"]


def test_caption_extension_is_per_folder(tmp_path):
    write_image(tmp_path / "a.png", caption="from txt")
    write_image(tmp_path / "b.png", caption=None).with_suffix(".caption").write_text("from caption")
    with pytest.warns(UserWarning, match="1 missing caption"):
        index = scan(FolderSpec(str(tmp_path), caption_extension="caption"))
    assert [(r.path.rsplit("/", 1)[1], r.caption) for r in index.records] == [("b.png", "from caption")]


def test_repeat_folders(tmp_path):
    write_image(tmp_path / "10_miku" / "a.png")
    write_image(tmp_path / "plain" / "b.png")
    write_image(tmp_path / "3_teto" / "c.png")
    index = scan(tmp_path / "10_miku", tmp_path / "plain", FolderSpec(str(tmp_path / "3_teto"), repeats=2))
    assert [(r.folder.rsplit("/", 1)[1], r.repeats) for r in index.records] == [("10_miku", 10), ("plain", 1), ("3_teto", 2)]


def test_kohya_parent_folder_expands_repeat_subfolders(tmp_path):
    write_image(tmp_path / "img" / "5_miku" / "a.png")
    write_image(tmp_path / "img" / "5_miku" / "b.png")
    write_image(tmp_path / "img" / "2_teto" / "c.png")
    write_image(tmp_path / "img" / "reg" / "ignored.png")
    write_image(tmp_path / "img" / "top.png")
    index = scan(tmp_path / "img", tmp_path / "img" / "5_miku")  # listed twice: scanned once
    assert [(r.path.rsplit("/", 1)[1], r.repeats) for r in index.records] == [("top.png", 1), ("c.png", 2), ("a.png", 5), ("b.png", 5)]
    assert index.bucket_counts() == {(64, 64): 13}


def test_unreadable_images_and_missing_captions_are_skipped_with_one_warning(tmp_path):
    write_image(tmp_path / "good.png")
    (tmp_path / "garbage.png").write_bytes(b"not a png at all")
    (tmp_path / "garbage.txt").write_text("tag")
    truncated = write_image(tmp_path / "truncated.png", image=noise(64, 64))
    truncated.write_bytes(truncated.read_bytes()[:6000])
    write_image(tmp_path / "nocaption.png", caption=None)
    with pytest.warns(UserWarning, match=r"skipped 3 of 4 images \(1 missing caption, 2 unreadable image\)"):
        index = scan(tmp_path)
    assert [r.path.rsplit("/", 1)[1] for r in index.records] == ["good.png"]
    reasons = {path.rsplit("/", 1)[1]: reason for path, reason in index.skipped}
    assert set(reasons) == {"garbage.png", "truncated.png", "nocaption.png"}
    assert reasons["nocaption.png"] == "missing caption"
    assert reasons["garbage.png"].startswith("unreadable image: UnidentifiedImageError")
    assert reasons["truncated.png"].startswith("unreadable image")


def test_truncated_image_passes_a_header_only_scan(tmp_path):
    truncated = write_image(tmp_path / "truncated.png", image=noise(64, 64))
    truncated.write_bytes(truncated.read_bytes()[:6000])
    assert len(scan(tmp_path, verify_images=False).records) == 1


def test_empty_dataset_error_names_the_folders(tmp_path):
    write_image(tmp_path / "one" / "a.png", caption=None)
    (tmp_path / "two").mkdir()
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"no usable image .*'.*one'.*'.*two'.*missing caption"):
        scan(tmp_path / "one", tmp_path / "two")


def test_missing_folder_and_bad_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        scan(tmp_path / "does_not_exist")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(ValueError, match="not a folder"):
        scan(tmp_path / "file.png")
    with pytest.raises(ValueError, match="repeats"):
        scan(FolderSpec(str(tmp_path), repeats=0))
    with pytest.raises(ValueError, match="at least one folder"):
        DatasetConfig(())
    with pytest.raises(ValueError, match="batch_size"):
        DatasetConfig((FolderSpec(str(tmp_path)),), batch_size=0)
    with pytest.raises(ValueError, match="min_size"):
        BucketConfig(resolution=512, min_size=1024, max_size=512)


def test_exif_rotation_swaps_the_recorded_size(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    write_image(tmp_path / "rotated.jpg", (80, 40), exif=exif)
    record = scan(tmp_path).records[0]
    assert (record.width, record.height) == (40, 80)
    assert record.bucket == (32, 96)


def test_per_folder_caption_config_is_recorded(tmp_path):
    write_image(tmp_path / "x" / "a.png")
    write_image(tmp_path / "y" / "b.png")
    special = CaptionConfig(shuffle_caption=True, keep_tokens=1)
    default = CaptionConfig(caption_dropout_rate=0.1)
    index = scan(FolderSpec(str(tmp_path / "x"), captions=special), tmp_path / "y", captions=default)
    assert [r.captions for r in index.records] == [special, default]


def test_tag_frequency_per_folder(tmp_path):
    write_image(tmp_path / "5_miku" / "a.png", caption="1girl, Hatsune Miku ||| smile, smile")
    write_image(tmp_path / "5_miku" / "b.png", caption="1girl, long hair")
    write_image(tmp_path / "other" / "c.png", caption="1girl")
    captions = CaptionConfig(keep_tokens_separator="|||")
    index = scan(tmp_path / "5_miku", tmp_path / "other", captions=captions)
    assert index.tag_frequency() == {
        "5_miku": {"1girl": 2, "hatsune miku": 1, "smile": 1, "long hair": 1},
        "other": {"1girl": 1},
    }
