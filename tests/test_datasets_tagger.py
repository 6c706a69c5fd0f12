"""WD14-style ONNX tagging with a tiny tagger of known outputs (tests/support/tiny_tagger.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from animekit.datasets.tagger import TaggerConfig, WdTagger, onnx_providers, square_input, tag_folder  # noqa: E402
from support.tiny_tagger import ROWS, write_tagger  # noqa: E402


@pytest.fixture
def tagger(tmp_path):
    return WdTagger(write_tagger(tmp_path / "wd-tiny"))


def test_preprocessing_is_bgr_white_padded_square_at_the_model_size(tagger):
    assert tagger.size == 8
    wide_blue = Image.new("RGB", (8, 4), (0, 0, 255))
    array = square_input(wide_blue, tagger.size)
    assert array.shape == (8, 8, 3) and array.dtype == np.float32
    assert array[0, 0].tolist() == [255.0, 255.0, 255.0]  # white padding rows 0-1 and 6-7
    assert array[4, 4].tolist() == [255.0, 0.0, 0.0]  # blue first: BGR, 0-255, not normalised
    assert array[:2].min() == 255.0 and array[6:].min() == 255.0 and array[2:6, :, 1].max() == 0.0
    big = square_input(Image.new("RGB", (32, 16), (0, 0, 255)), tagger.size)  # resized to 8x8
    assert big.shape == (8, 8, 3) and big[4, 4].tolist() == [255.0, 0.0, 0.0] and big[0, 0].tolist() == [255.0] * 3


def test_probabilities_are_the_model_outputs_unchanged(tagger):
    # blue 8x4 padded with white: B mean 255, G and R mean 127.5
    scores = tagger.probabilities([Image.new("RGB", (8, 4), (0, 0, 255)), Image.new("RGB", (8, 8), (0, 255, 0))])
    expected_first = [0.7, 0.2, 0.9, 1.0, 0.5, 0.5, 0.1, 0.95, 0.5]  # no second sigmoid
    np.testing.assert_allclose(scores[0], expected_first, atol=1e-6)
    np.testing.assert_allclose(scores[1], [0.7, 0.2, 0.9, 0.0, 0.0, 0.5, 0.1, 0.95, 1.0], atol=1e-6)


def test_thresholds_exclusions_order_and_names(tagger):
    blue, green = tagger.probabilities([Image.new("RGB", (8, 4), (0, 0, 255)), Image.new("RGB", (8, 8), (0, 255, 0))])
    assert tagger.tags(blue, TaggerConfig()) == ["blue tag", "watermark", "1girl", "red tag", "^_^"]
    assert tagger.tags(blue, TaggerConfig(general_threshold=0.6, exclude=("watermark",))) == ["blue tag", "1girl"]
    # the character row passes its own threshold and comes first, with spaces for underscores
    assert tagger.tags(green, TaggerConfig(general_threshold=0.6)) == ["ganyu (genshin impact)", "watermark", "1girl"]
    assert tagger.tags(green, TaggerConfig(general_threshold=0.6, character_threshold=1.0)) == ["ganyu (genshin impact)", "watermark", "1girl"]
    assert "ganyu (genshin impact)" not in tagger.tags(blue, TaggerConfig(character_threshold=0.51))


def test_tag_folder_keeps_existing_captions_unless_asked(tmp_path, tagger):
    folder = tmp_path / "raw"
    (folder / "3_alice").mkdir(parents=True)
    Image.new("RGB", (8, 4), (0, 0, 255)).save(folder / "a.png")
    Image.new("RGB", (8, 8), (0, 255, 0)).save(folder / "3_alice" / "b.jpg", quality=100)
    Image.new("RGB", (8, 8), (0, 255, 0)).save(folder / "c.webp", lossless=True)
    (folder / "c.txt").write_text("my own caption\n", encoding="utf-8")
    (folder / "broken.png").write_bytes(b"not a png")
    cfg = TaggerConfig(general_threshold=0.6, exclude=("watermark",))
    seen = []
    report = tag_folder(folder, tagger, cfg, progress=lambda done, total: seen.append((done, total)))
    assert (folder / "a.txt").read_text() == "blue tag, 1girl\n"
    assert (folder / "3_alice" / "b.txt").read_text() == "ganyu (genshin impact), 1girl\n"
    assert (folder / "c.txt").read_text() == "my own caption\n"
    assert report.kept == [folder / "c.webp"]
    assert [p.name for p, _ in report.failed] == ["broken.png"] and "broken.png" in report.failed[0][1]
    assert seen == [(0, 3), (3, 3)]
    assert not (folder / "broken.txt").exists()
    report = tag_folder(folder, tagger, TaggerConfig(general_threshold=0.6, exclude=("watermark",), overwrite=True))
    assert (folder / "c.txt").read_text() == "ganyu (genshin impact), 1girl\n"
    assert (folder / "c.txt.orig").read_text() == "my own caption\n"  # the original is kept
    assert len(report.written) == 3


def test_cancel_stops_before_the_next_batch(tmp_path, tagger):
    folder = tmp_path / "raw"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (0, 0, 255)).save(folder / f"{i}.png")
    calls = []

    def cancel():
        calls.append(1)
        if len(calls) == 2:
            raise InterruptedError("cancelled")

    with pytest.raises(InterruptedError):
        tag_folder(folder, tagger, TaggerConfig(batch_size=2), check_cancel=cancel)
    assert sorted(p.name for p in folder.glob("*.txt")) == ["0.txt", "1.txt"]


def test_missing_and_wrong_model_files(tmp_path):
    with pytest.raises(ValueError, match="has no model.onnx"):
        WdTagger(tmp_path)
    with pytest.raises(ValueError, match="is not a folder"):
        WdTagger(tmp_path / "nope")
    bad = tmp_path / "bad"
    write_tagger(bad)
    (bad / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"model\.onnx is not a loadable ONNX model"):
        WdTagger(bad)
    mismatch = write_tagger(tmp_path / "mismatch", csv_rows=ROWS[:-1])
    with pytest.raises(ValueError, match=r"gives 9 scores but selected_tags\.csv lists 8 tags"):
        WdTagger(mismatch)
    no_header = write_tagger(tmp_path / "noheader")
    (no_header / "selected_tags.csv").write_text("1,1girl,0,5\n")
    with pytest.raises(ValueError, match="expected a WD14 `selected_tags.csv`"):
        WdTagger(no_header)


def test_empty_folder_is_a_clear_error(tmp_path, tagger):
    with pytest.raises(ValueError, match="has no images"):
        tag_folder(tmp_path, tagger, TaggerConfig())


def test_gpu_provider_only_when_installed():
    assert onnx_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert onnx_providers(["CUDAExecutionProvider", "CPUExecutionProvider"]) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(ValueError, match="general_threshold must be between 0 and 1"):
        TaggerConfig(general_threshold=1.5)
