"""The dataset report: tags, buckets, token lengths, small images, exact and near duplicates."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from animekit.datasets.stats import StatsConfig, TokenCounter, dataset_stats, difference_hash, near_pairs
from animekit.training.data.dataset import BucketConfig


def _gradient(width, height, flip=False):
    row = np.linspace(0, 255, width, dtype=np.float32)
    pixels = np.repeat(row[None, :], height, axis=0)
    pixels = pixels[:, ::-1] if flip else pixels
    return Image.fromarray(np.stack([pixels] * 3, -1).astype(np.uint8))


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "set"
    (root / "2_alice").mkdir(parents=True)
    _gradient(1024, 1024).save(root / "a.png")
    (root / "a_copy.png").write_bytes((root / "a.png").read_bytes())  # exact duplicate
    _gradient(1024, 1024).save(root / "a_jpeg.jpg", quality=90)  # same picture, other bytes: near duplicate
    _gradient(1216, 832, flip=True).save(root / "2_alice" / "wide.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 200, 3), dtype=np.uint8)).save(root / "small.png")
    (root / "broken.png").write_bytes(b"not an image")
    (root / "a.txt").write_text("1girl, smile ||| long hair")
    (root / "a_copy.txt").write_text("1girl, smile")
    (root / "2_alice" / "wide.txt").write_text(", ".join(f"tag number {i}" for i in range(40)))
    return root


def test_report_numbers(folder):
    cfg = StatsConfig(buckets=BucketConfig(resolution=1024, min_size=512, max_size=2048, step=64))
    seen = []
    report = dataset_stats(folder, cfg, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (6, 6) and report.images == 6 and report.captioned == 3
    assert report.tag_counts["1girl"] == 2 and report.tag_counts["long hair"] == 1 and report.tag_counts["tag number 7"] == 1
    assert report.buckets[(1024, 1024)] == 3 and report.buckets[(1216, 832)] == 1 and sum(report.buckets.values()) == 5
    # 40 tags "tag number N": 2 words each, 39 commas, digits one piece each (10 + 30 x 2) = 80 + 39 + 70 = 189
    assert [(Path(c).name, n) for c, n in report.over_limits[75]] == [("wide.txt", 189)]
    assert report.over_limits[225] == []
    assert [(Path(p).name, w, h) for p, w, h in report.too_small] == [("small.png", 200, 300)]
    assert [[Path(p).name for p in group] for group in report.exact_duplicates] == [["a.png", "a_copy.png"]]
    near = {(Path(a).name, Path(b).name) for a, b, _ in report.near_duplicates}
    assert near == {("a.png", "a_jpeg.jpg"), ("a_copy.png", "a_jpeg.jpg")}
    assert [Path(p).name for p, _ in report.unreadable] == ["broken.png"]
    data = report.to_dict()
    assert data["buckets"]["1024x1024"] == 3 and data["exact_duplicates"] == [[str(folder / "a.png"), str(folder / "a_copy.png")]]
    text = report.text()
    assert "captions over 75 tokens: 1 (longest: wide.txt (189))" in text
    assert "exact duplicates: 1 groups\n  a.png = a_copy.png" in text
    assert "approximate" in text


def test_difference_hash_and_pairs():
    left, right = difference_hash(_gradient(64, 64)), difference_hash(_gradient(64, 64, flip=True))
    assert left == 2**64 - 1 and right == 0  # every step brighter / every step darker
    assert near_pairs([left, right, left ^ 0b111], 4) == [(0, 2, 3)]


@pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="exact counts use ComfyUI's bundled CLIP vocabulary")
def test_exact_token_counts_with_a_clip_tokenizer():
    folder = Path(os.environ["COMFYUI_PATH"]) / "comfy" / "sd1_tokenizer"
    exact = TokenCounter(str(folder))
    assert exact.exact and exact("1girl, ganyu (genshin impact), genshin impact, smile, upper body") == 19
    assert TokenCounter(None)("1girl, ganyu (genshin impact), genshin impact, smile, upper body") == 15  # a lower bound
    with pytest.raises(ValueError, match="needs CLIP's vocab.json and merges.txt"):
        TokenCounter(str(folder.parent))
