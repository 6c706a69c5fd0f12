"""Aesthetic scorers of both kinds with tiny random models of the real classes, scores beside the
images, and the trainer leaving out images under a threshold."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

transformers = pytest.importorskip("transformers")

from animekit.datasets.aesthetic import ClassifierScorer, ClipMlpScorer, load_scorer, score_folder  # noqa: E402
from animekit.training.data.dataset import DatasetConfig, scan_dataset  # noqa: E402
from animekit.training.data.scores import SCORES_FILE, read_scores  # noqa: E402


def _images(folder, colours):
    folder.mkdir(parents=True, exist_ok=True)
    for name, colour in colours.items():
        Image.new("RGB", (40, 24), colour).save(folder / name)
    return folder


@pytest.fixture
def classifier_folder(tmp_path):
    """A Cafe-aesthetic-shaped folder: ViT image classifier, labels aesthetic / not_aesthetic."""
    torch.manual_seed(0)
    config = transformers.ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                    image_size=32, patch_size=8, num_labels=2,
                                    id2label={0: "aesthetic", 1: "not_aesthetic"}, label2id={"aesthetic": 0, "not_aesthetic": 1})
    folder = tmp_path / "cafe_tiny"
    transformers.ViTForImageClassification(config).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "do_resize": True, "size": {"height": 32, "width": 32}, "resample": 2, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}))
    return folder


def _waifu_mlp(width):
    """waifu-scorer v3's layout (Linear, ReLU, BatchNorm1d, Dropout ..., Linear(32, 1)) at tiny size."""
    layers = torch.nn.Sequential(
        torch.nn.Linear(width, 24), torch.nn.ReLU(), torch.nn.BatchNorm1d(24), torch.nn.Dropout(0.3),
        torch.nn.Linear(24, 12), torch.nn.ReLU(), torch.nn.BatchNorm1d(12), torch.nn.Dropout(0.1),
        torch.nn.Linear(12, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1),
    )
    for module in layers:
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return layers.eval()


@pytest.fixture
def clip_folder(tmp_path):
    """A waifu-scorer-shaped folder: CLIP vision model with projection + an MLP safetensors."""
    from safetensors.torch import save_file

    torch.manual_seed(1)
    config = transformers.CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                           image_size=32, patch_size=8, projection_dim=12)
    folder = tmp_path / "waifu_tiny"
    transformers.CLIPVisionModelWithProjection(config).save_pretrained(folder)
    mlp = _waifu_mlp(12)
    save_file({f"layers.{k}": v.contiguous() for k, v in mlp.state_dict().items() if not k.endswith("num_batches_tracked")},
              str(folder / "waifu-scorer-tiny.safetensors"))
    return folder, mlp


def test_classifier_scores_are_the_aesthetic_probability(tmp_path, classifier_folder):
    scorer = load_scorer(classifier_folder)
    assert isinstance(scorer, ClassifierScorer) and scorer.label == "aesthetic"
    images = [Image.new("RGB", (40, 24), (200, 30, 90)), Image.new("RGB", (24, 24), (10, 200, 250))]
    reference = transformers.ViTImageProcessorPil.from_pretrained(classifier_folder)
    pixels = reference(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = scorer.model(pixel_values=pixels).logits.softmax(-1)[:, 0]
    np.testing.assert_allclose(scorer.scores(images), expected.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="give the label to score by"):
        load_scorer(classifier_folder, label="pretty")
    assert load_scorer(classifier_folder, label="not_aesthetic").index == 1


def test_clip_mlp_scores_match_clip_and_the_waifu_layout(clip_folder):
    folder, mlp = clip_folder
    scorer = load_scorer(folder)
    assert isinstance(scorer, ClipMlpScorer) and scorer.mlp.relu
    images = [Image.new("RGB", (40, 24), (200, 30, 90)), Image.new("RGB", (30, 50), (10, 200, 250))]
    reference = transformers.CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    pixels = reference(images=images, return_tensors="pt")["pixel_values"]
    np.testing.assert_allclose(scorer.preprocess(images).numpy(), pixels.numpy(), atol=2e-2)  # resize rounding only
    with torch.no_grad():
        embeds = scorer.clip(pixel_values=scorer.preprocess(images)).image_embeds
        expected = mlp(embeds / embeds.norm(dim=-1, keepdim=True))[:, 0]
    np.testing.assert_allclose(scorer.scores(images), expected.numpy(), atol=1e-5)


def test_clip_folder_needs_one_matching_mlp(tmp_path, clip_folder):
    from safetensors.torch import save_file

    folder, _ = clip_folder
    save_file({"layers.0.weight": torch.zeros(1, 7), "layers.0.bias": torch.zeros(1)}, str(folder / "other.safetensors"))
    with pytest.raises(ValueError, match="exactly one MLP file"):
        load_scorer(folder)
    with pytest.raises(ValueError, match="takes 7-wide embeddings but the CLIP model"):
        load_scorer(folder, mlp=folder / "other.safetensors")
    with pytest.raises(ValueError, match="has no config.json"):
        load_scorer(tmp_path)


def test_scores_beside_images_and_training_above_the_threshold(tmp_path, classifier_folder):
    folder = _images(tmp_path / "set", {"a.png": (250, 250, 250), "b.png": (0, 0, 0), "c.png": (255, 0, 0)})
    _images(folder / "2_alice", {"d.png": (0, 255, 0)})
    (folder / "broken.png").write_bytes(b"nope")
    for image in list(folder.glob("*.png")) + list((folder / "2_alice").glob("*.png")):
        image.with_suffix(".txt").write_text("1girl, smile")
    scorer = load_scorer(classifier_folder)
    seen = []
    report = score_folder(folder, scorer, batch_size=2, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(0, 5), (2, 5), (4, 5), (5, 5)]
    assert [p.name for p, _ in report.failed] == ["broken.png"]
    scores = read_scores(folder)
    assert sorted(scores) == ["a.png", "b.png", "c.png"] and read_scores(folder / "2_alice").keys() == {"d.png"}
    assert json.loads((folder / SCORES_FILE).read_text())["scorer"] == "image-classification:cafe_tiny:aesthetic"
    expected = scorer.scores([Image.open(folder / n).convert("RGB") for n in ("a.png", "b.png", "c.png")])
    np.testing.assert_allclose([scores[n] for n in ("a.png", "b.png", "c.png")], expected, atol=1e-6)
    # the trainer's dataset config takes a threshold: images under it are left out, never deleted
    ranked = sorted(scores, key=scores.get)
    threshold = (scores[ranked[0]] + scores[ranked[1]]) / 2
    cfg = DatasetConfig(folders=(str(folder),), min_aesthetic_score=threshold, verify_images=True)
    with pytest.warns(UserWarning, match="below aesthetic threshold"):
        index = scan_dataset(cfg)
    names = sorted(a.split("/")[-1] for a in (r.path for r in index.records))
    wanted = sorted(ranked[1:] + (["d.png"] if read_scores(folder / "2_alice")["d.png"] >= threshold else []))
    assert names == wanted
    assert any(reason.startswith("below aesthetic threshold") for _, reason in index.skipped)
    assert (folder / ranked[0]).is_file()
    (folder / "e.png").write_bytes((folder / "a.png").read_bytes())
    (folder / "e.txt").write_text("1girl")
    with pytest.warns(UserWarning):
        index = scan_dataset(cfg)
    assert dict(index.skipped)[str(folder / "e.png")].startswith("no aesthetic score: e.png is not in aesthetic_scores.json")
    with pytest.raises(ValueError, match="min_aesthetic_score must be a number"):
        DatasetConfig(folders=(str(folder),), min_aesthetic_score="high")


def test_training_toml_takes_the_threshold(tmp_path):
    import tomllib

    from animekit.training.config_toml import config_from_dict

    table = tomllib.loads((__import__("pathlib").Path(__file__).parents[1] / "training" / "animagine_stage1.toml").read_text())
    table["dataset"]["min_aesthetic_score"] = 0.75
    assert config_from_dict(table, tmp_path).dataset.min_aesthetic_score == 0.75


def test_score_command(tmp_path, capsys, classifier_folder):
    from animekit.__main__ import main

    folder = _images(tmp_path / "set", {"a.png": (250, 250, 250), "b.png": (0, 0, 0)})
    assert main(["dataset", "score", str(folder), "--model", str(classifier_folder)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("scored 2 images: min ") and out[1] == f"wrote {folder / SCORES_FILE}"
    assert sorted(read_scores(folder)) == ["a.png", "b.png"]
