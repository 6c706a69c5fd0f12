"""Dataset nodes in a real ComfyUI executor: a raw folder tagged, ordered, scored and inspected, then
AnimeKit Dataset training only above an aesthetic threshold; progress and Cancel."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from PIL import Image

from support.executor import configure_folders, execute_prompt, run_prompt
from support.train_nodes import DATASET_DEFAULTS

pytestmark = pytest.mark.host
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
transformers = pytest.importorskip("transformers")

BY_PATH = "(use the path below)"


def _tiny_classifier(folder):
    torch.manual_seed(0)
    config = transformers.ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                    image_size=32, patch_size=8, num_labels=2, id2label={0: "aesthetic", 1: "not_aesthetic"},
                                    label2id={"aesthetic": 0, "not_aesthetic": 1})  # fmt: skip
    transformers.ViTForImageClassification(config).save_pretrained(folder)
    return folder


def _raw_folder(root):
    folder = root / "raw"
    folder.mkdir(parents=True)
    for name, colour in (("blue", (0, 0, 255)), ("green", (0, 255, 0)), ("red", (255, 0, 0))):
        Image.new("RGB", (256, 256), colour).save(folder / f"{name}.png")
    (folder / "green.png.json").write_text(json.dumps({"score": 120, "rating": "g", "date": "2021-06-01"}))
    return folder


def _prep_prompt(folder, tagger, scorer):
    return {
        "tag": {"class_type": "AnimeKitTagImages", "inputs": {
            "folder": str(folder), "tagger": BY_PATH, "tagger_path": str(tagger), "general_threshold": 0.6,
            "character_threshold": 0.85, "exclude": "watermark", "overwrite": False}},
        "format": {"class_type": "AnimeKitFormatCaptions", "inputs": {
            "folder": ["tag", 0], "profile": "animagine-xl-3.0", "write": True, "use_metadata": True, "separator": "|||"}},
        "score": {"class_type": "AnimeKitScoreImages", "inputs": {
            "folder": ["format", 0], "scorer": BY_PATH, "scorer_path": str(scorer), "label": ""}},
        "stats": {"class_type": "AnimeKitDatasetStats", "inputs": {
            "folder": ["score", 0], "profile": "sd15-anime", "near_distance": 4}},
    }  # fmt: skip


def test_raw_folder_to_filtered_dataset(comfy_host, tmp_path):
    from support.tiny_tagger import write_tagger

    with configure_folders(tmp_path) as folders:
        folder = _raw_folder(folders.input)
        tagger = write_tagger(tmp_path / "wd-tiny")
        scorer = _tiny_classifier(tmp_path / "cafe-tiny")
        result = run_prompt(comfy_host, _prep_prompt("raw", tagger, scorer))  # relative: inside the input folder
        assert result.output("tag", 1) == "tagged 3 images, kept 0 existing captions"
        assert (folder / "blue.txt").read_text() == "1girl ||| blue tag\n"
        assert (folder / "green.txt").read_text() == "best quality, 1girl, ganyu (genshin impact) ||| rating: general, late\n"
        assert (folder / "red.txt").read_text() == "1girl ||| red tag\n"
        assert (folder / "green.txt.orig").read_text() == "ganyu (genshin impact), 1girl\n"
        assert result.output("format", 1).startswith("rewrote 3 captions (3 originals kept as .orig)")
        scores = json.loads((folder / "aesthetic_scores.json").read_text())["scores"]
        assert sorted(scores) == ["blue.png", "green.png", "red.png"]
        stats = result.output("stats", 1)
        assert stats.startswith(f"3 images in {folder}, 3 with captions") and "token counts: CLIP tokenizer" in stats
        assert "buckets: 512x512: 3" in stats and "exact duplicates: 0 groups" in stats
        nodes_with_progress = {p["node"] for p in result.progress}
        assert {"tag", "format", "score", "stats"} <= nodes_with_progress

        ranked = sorted(scores, key=scores.get)
        threshold = round((scores[ranked[0]] + scores[ranked[1]]) / 2, 6)
        prompt = {"dataset": {"class_type": "AnimeKitDataset", "inputs": dict(
            DATASET_DEFAULTS, folder="raw", keep_tokens_separator="|||", min_aesthetic_score=threshold)},
            "show": {"class_type": "PreviewAny", "inputs": {"source": ["dataset", 1]}}}
        spec = run_prompt(comfy_host, prompt).output("dataset", 0)
        assert sorted(r.path.split("/")[-1] for r in spec.index.records) == sorted(ranked[1:])
        assert spec.config.min_aesthetic_score == threshold
        assert spec.preview.endswith(f"aesthetic score >= {threshold:g}: training on 2 of 3 images; 1 left out (not deleted)")
        assert (folder / ranked[0]).is_file()
        prompt["dataset"]["inputs"].pop("min_aesthetic_score")  # optional: old workflows without it train on all
        assert len(run_prompt(comfy_host, prompt).output("dataset", 0).index.records) == 3


def test_tagging_can_be_cancelled(comfy_host, tmp_path, monkeypatch):
    import comfy.utils
    import nodes

    from support.tiny_tagger import write_tagger

    real = comfy.utils.ProgressBar.update_absolute

    def interrupting(self, value, total=None, preview=None):
        if value >= 1:
            nodes.interrupt_processing()
        return real(self, value, total, preview)

    monkeypatch.setattr(comfy.utils.ProgressBar, "update_absolute", interrupting)
    with configure_folders(tmp_path) as folders:
        folder = folders.input / "many"
        folder.mkdir()
        for i in range(12):
            Image.new("RGB", (16, 16), (0, 0, 255)).save(folder / f"{i:02}.png")
        prompt = {"tag": _prep_prompt("many", write_tagger(tmp_path / "wd"), tmp_path)["tag"]}
        try:
            result = execute_prompt(comfy_host, prompt)
        finally:
            nodes.interrupt_processing(False)
        assert not result.success and result.error["node_type"] == "AnimeKitTagImages"
        assert 0 < len(list(folder.glob("*.txt"))) < 12  # stopped between batches


def test_model_folder_choices_and_errors(comfy_host, tmp_path):
    import folder_paths

    model_folders = sys.modules[f"{comfy_host.pack_module}.nodes.datasets.model_folders"]
    from support.tiny_tagger import write_tagger

    base = tmp_path / "taggers"
    write_tagger(base / "wd-tiny")
    (base / "not-a-tagger").mkdir()
    model_folders.register()
    saved = folder_paths.folder_names_and_paths[model_folders.TAGGERS]
    folder_paths.folder_names_and_paths[model_folders.TAGGERS] = ([str(base)], set())
    try:
        assert model_folders.choices(model_folders.TAGGERS) == ["wd-tiny", BY_PATH]
        assert model_folders.resolve(model_folders.TAGGERS, "wd-tiny", "") == base / "wd-tiny"
        with pytest.raises(ValueError, match="choose a folder from models/animekit_taggers or give a model path"):
            model_folders.resolve(model_folders.TAGGERS, BY_PATH, "")
        with pytest.raises(ValueError, match="is not a folder in models/animekit_taggers"):
            model_folders.resolve(model_folders.TAGGERS, "../taggers", "")
    finally:
        folder_paths.folder_names_and_paths[model_folders.TAGGERS] = saved
    with configure_folders(tmp_path / "run"):
        prompt = {"stats": _prep_prompt(str(tmp_path / "nothing-here"), tmp_path, tmp_path)["stats"]}
        prompt["stats"]["inputs"]["folder"] = str(tmp_path / "nothing-here")
        result = execute_prompt(comfy_host, prompt)
        assert not result.success and "does not exist" in result.error["exception_message"]


def test_bundled_workflow_prepares_a_raw_folder(comfy_host, tmp_path):
    """The raw-folder-to-lora workflow's dataset half (tag -> format -> score -> stats -> Dataset), run as
    the file says with tiny tagger and scorer paths filled in; training is the trainer tests' subject."""
    from support.tiny_tagger import write_tagger
    from support.workflow_files import WORKFLOWS_DIR, load
    from support.workflow_ui_to_api import ui_to_api
    from workflows.nodeinfo import LiveCatalog
    from workflows.specs import MIN_AESTHETIC, RAW_DATASET

    keep = {"AnimeKitTagImages", "AnimeKitFormatCaptions", "AnimeKitScoreImages", "AnimeKitDatasetStats", "AnimeKitDataset", "PreviewAny"}
    prompt = {k: v for k, v in ui_to_api(load(WORKFLOWS_DIR / "raw-folder-to-lora.json"), LiveCatalog(comfy_host)).items()
              if v["class_type"] in keep}
    ids = {v["class_type"]: k for k, v in prompt.items()}
    assert prompt[ids["AnimeKitDataset"]]["inputs"]["min_aesthetic_score"] == MIN_AESTHETIC
    assert prompt[ids["AnimeKitDataset"]]["inputs"]["keep_tokens_separator"] == "|||"
    scorer = _tiny_classifier(tmp_path / "cafe")
    with torch.no_grad():  # a constant classifier: P(aesthetic) = sigmoid(2) = 0.88 for every image
        model = transformers.ViTForImageClassification.from_pretrained(scorer)
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([1.0, -1.0]))
        model.save_pretrained(scorer)
    prompt[ids["AnimeKitTagImages"]]["inputs"]["tagger_path"] = str(write_tagger(tmp_path / "wd"))
    prompt[ids["AnimeKitScoreImages"]]["inputs"]["scorer_path"] = str(scorer)
    with configure_folders(tmp_path / "run") as folders:
        folder = folders.input / RAW_DATASET
        folder.mkdir()
        for name, colour in (("blue", (0, 0, 255)), ("green", (0, 255, 0))):
            Image.new("RGB", (640, 640), colour).save(folder / f"{name}.png")
        result = run_prompt(comfy_host, prompt)
        assert (folder / "green.txt").read_text() == "1girl, ganyu (genshin impact) ||| ^_^\n"  # no metadata: no special tags
        assert (folder / "blue.txt").read_text() == "1girl ||| blue tag, ^_^\n"  # threshold 0.35, watermark excluded
        scores = json.loads((folder / "aesthetic_scores.json").read_text())["scores"]
        assert scores == pytest.approx({"blue.png": 0.8808, "green.png": 0.8808}, abs=1e-4)
        spec = result.output(ids["AnimeKitDataset"], 0)
        assert len(spec.index.records) == 2 and spec.config.captions.keep_tokens_separator == "|||"
        assert "training on 2 of 2 images" in spec.preview
