"""Aesthetic scoring, AnimeDiffusion's filtering step: a score per image, written beside the images
(training/data/scores.py), so training can leave out the weak ones without deleting anything.

Two kinds of scorer, from files the user provides (nothing is downloaded):
- a transformers image-classification model folder (`config.json` + weights + usually
  `preprocessor_config.json`), the kind Cafe-aesthetic is: the score is the softmax probability of
  the label `aesthetic` (or the label given);
- a CLIP vision model folder plus an MLP over its L2-normalised image embedding, the kind
  waifu-scorer (and LAION's improved aesthetic predictor) is: the MLP is the one `.safetensors` /
  `.pth` file in the folder besides the CLIP weights (or given explicitly); `.pth` is read with
  torch's weights-only loader, never as a general pickle.

Both resize, crop and normalise as the folder's `preprocessor_config.json` says (CLIP's defaults
when there is none), in numpy/PIL, so no torchvision is needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..training.data.scores import write_scores
from .images import dataset_images, read_image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_TYPES = ("clip", "clip_vision_model")
MODEL_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
MLP_SUFFIXES = (".safetensors", ".pth", ".pt")


@dataclass(frozen=True)
class Preprocess:
    """What a `preprocessor_config.json` says, for the keys image models use."""

    size: dict
    crop: dict | None
    resample: int
    rescale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_folder(cls, folder: Path, default_size: int) -> "Preprocess":
        path = folder / "preprocessor_config.json"
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        size = data.get("size", {"shortest_edge": default_size})
        size = {"shortest_edge": size} if isinstance(size, int) else dict(size)
        crop = data.get("crop_size", {"height": default_size, "width": default_size}) if data.get("do_center_crop", not data) else None
        crop = {"height": crop, "width": crop} if isinstance(crop, int) else crop
        return cls(
            size=size if data.get("do_resize", True) else {},
            crop=crop,
            resample=int(data.get("resample", Image.BICUBIC)),
            rescale=float(data.get("rescale_factor", 1 / 255)) if data.get("do_rescale", True) else 1.0,
            mean=tuple(data.get("image_mean", CLIP_MEAN)) if data.get("do_normalize", True) else (0.0, 0.0, 0.0),
            std=tuple(data.get("image_std", CLIP_STD)) if data.get("do_normalize", True) else (1.0, 1.0, 1.0),
        )  # fmt: skip

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.from_numpy(np.stack([self._one(image) for image in images]))

    def _one(self, image: Image.Image) -> np.ndarray:
        if "shortest_edge" in self.size:
            edge = int(self.size["shortest_edge"])
            scale = edge / min(image.size)
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), self.resample)
        elif "height" in self.size:
            image = image.resize((int(self.size["width"]), int(self.size["height"])), self.resample)
        if self.crop:
            height, width = int(self.crop["height"]), int(self.crop["width"])
            left, top = (image.width - width) // 2, (image.height - height) // 2
            image = image.crop((left, top, left + width, top + height))
        array = np.asarray(image, dtype=np.float32) * self.rescale
        array = (array - np.array(self.mean, np.float32)) / np.array(self.std, np.float32)
        return np.ascontiguousarray(array.transpose(2, 0, 1))


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _config(folder: Path) -> dict:
    path = folder / "config.json"
    if not folder.is_dir():
        raise ValueError(f"aesthetic model: {str(folder)!r} is not a folder")
    if not path.is_file():
        raise ValueError(f"aesthetic model: {str(folder)!r} has no config.json; give a transformers image-classification "
                         "folder (Cafe-aesthetic kind) or a CLIP vision folder with an MLP file (waifu-scorer kind)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"aesthetic model: {path} is not JSON ({exc})") from None


class ClassifierScorer:
    """A transformers image-classification model; score = P(label)."""

    kind = "image-classification"

    def __init__(self, folder: Path, label: str | None = None):
        from transformers import AutoModelForImageClassification

        self.folder = folder
        try:
            self.model = AutoModelForImageClassification.from_pretrained(str(folder)).eval().to(_device())
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"aesthetic model: cannot load {str(folder)!r} as an image classifier: {exc}") from None
        labels = {int(i): str(name) for i, name in self.model.config.id2label.items()}
        wanted = label or ("aesthetic" if "aesthetic" in {n.lower() for n in labels.values()} else None)
        matches = [i for i, name in labels.items() if wanted is not None and name.lower() == wanted.lower()]
        if not matches:
            raise ValueError(f"aesthetic model: give the label to score by (one of {', '.join(labels.values())})"
                             + (f"; {wanted!r} is not one" if wanted else ""))
        self.index, self.label = matches[0], labels[matches[0]]
        self.preprocess = Preprocess.from_folder(folder, int(getattr(self.model.config, "image_size", 224)))

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.folder.name}:{self.label}"

    @torch.no_grad()
    def scores(self, images: Sequence[Image.Image]) -> list[float]:
        logits = self.model(pixel_values=self.preprocess(images).to(_device())).logits.float()
        return logits.softmax(-1)[:, self.index].tolist()


class EmbeddingMlp:
    """An MLP given as `<prefix>.<index>.weight/bias` tensors (an nn.Sequential's state dict):
    2-D weights are Linear layers, ones with running statistics BatchNorm (eval mode). Activations
    carry no weights, so they follow the two known families: with BatchNorm it is waifu-scorer's
    layout (ReLU after every Linear but the last), without it LAION's (no activation)."""

    def __init__(self, tensors: dict[str, torch.Tensor], where: str):
        modules: dict[int, dict[str, torch.Tensor]] = {}
        for key, tensor in tensors.items():
            parts = key.split(".")
            if len(parts) < 2 or not parts[-2].isdigit():
                raise ValueError(f"aesthetic MLP {where}: unexpected key {key!r}; expected an nn.Sequential state dict (layers.N.weight)")
            modules.setdefault(int(parts[-2]), {})[parts[-1]] = tensor.float()
        self.layers = [modules[i] for i in sorted(modules)]
        linears = [layer for layer in self.layers if "weight" in layer and layer["weight"].dim() == 2]
        if not linears or linears[-1]["weight"].shape[0] != 1:
            raise ValueError(f"aesthetic MLP {where}: expected Linear layers ending in one output")
        self.relu = any("running_mean" in layer for layer in self.layers)
        self.input_size = linears[0]["weight"].shape[1]
        self.last = linears[-1]

    def to(self, device: torch.device) -> "EmbeddingMlp":
        self.layers = [{k: v.to(device) for k, v in layer.items()} for layer in self.layers]
        self.last = next(layer for layer in reversed(self.layers) if layer["weight"].dim() == 2)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            if "running_mean" in layer:
                x = torch.nn.functional.batch_norm(x, layer["running_mean"], layer["running_var"], layer.get("weight"),
                                                   layer.get("bias"), training=False, eps=1e-5)  # fmt: skip
            elif "weight" in layer and layer["weight"].dim() == 2:
                x = torch.nn.functional.linear(x, layer["weight"], layer.get("bias"))
                if self.relu and layer is not self.last:
                    x = torch.relu(x)
        return x[:, 0]


def load_mlp(path: Path) -> EmbeddingMlp:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(str(path))
    else:
        try:
            tensors = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # the weights-only unpickler refuses anything but tensors
            raise ValueError(f"aesthetic MLP {path}: not a plain tensor file ({exc})") from None
        tensors = tensors.get("state_dict", tensors) if isinstance(tensors, dict) else tensors
        if not isinstance(tensors, dict):
            raise ValueError(f"aesthetic MLP {path}: expected a state dict of tensors")
    return EmbeddingMlp(tensors, path.name)


def find_mlp(folder: Path) -> Path:
    found = sorted(p for p in folder.iterdir() if p.suffix in MLP_SUFFIXES and p.name not in MODEL_WEIGHTS and p.is_file())
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise ValueError(f"aesthetic model: {str(folder)!r} is a CLIP model; it needs exactly one MLP file "
                         f"(.safetensors/.pth besides {MODEL_WEIGHTS[0]}) for a waifu-scorer-kind scorer, found {listed}")
    return found[0]


class ClipMlpScorer:
    """CLIP image embedding (projected, L2-normalised) -> MLP -> score."""

    kind = "clip-mlp"

    def __init__(self, folder: Path, mlp: Path | None = None):
        from transformers import CLIPVisionModelWithProjection

        self.folder = folder
        self.mlp_path = mlp or find_mlp(folder)
        try:
            self.clip = CLIPVisionModelWithProjection.from_pretrained(str(folder)).eval().to(_device())
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"aesthetic model: cannot load {str(folder)!r} as a CLIP vision model: {exc}") from None
        self.mlp = load_mlp(self.mlp_path).to(_device())
        width = self.clip.config.projection_dim
        if self.mlp.input_size != width:
            raise ValueError(f"aesthetic MLP {self.mlp_path.name} takes {self.mlp.input_size}-wide embeddings but "
                             f"the CLIP model in {str(folder)!r} gives {width}; they belong to different scorers")
        self.preprocess = Preprocess.from_folder(folder, int(self.clip.config.image_size))

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.folder.name}:{self.mlp_path.name}"

    @torch.no_grad()
    def scores(self, images: Sequence[Image.Image]) -> list[float]:
        embeds = self.clip(pixel_values=self.preprocess(images).to(_device())).image_embeds.float()
        embeds = embeds / embeds.norm(dim=-1, keepdim=True)
        return self.mlp(embeds).tolist()


def load_scorer(folder: str | Path, *, label: str | None = None, mlp: str | Path | None = None):
    """The scorer a folder holds, told apart by its config.json's model type."""
    folder = Path(folder).expanduser()
    config = _config(folder)
    if config.get("model_type") in CLIP_TYPES:
        return ClipMlpScorer(folder, Path(mlp) if mlp else None)
    if any(str(name).endswith("ForImageClassification") for name in config.get("architectures", [])):
        return ClassifierScorer(folder, label)
    raise ValueError(f"aesthetic model: {str(folder)!r} is neither an image classifier (architectures "
                     f"*ForImageClassification) nor a CLIP model; its config.json says model_type {config.get('model_type')!r}")


@dataclass
class ScoreReport:
    scores: dict[Path, float] = field(default_factory=dict)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # the scores files written

    def summary(self) -> str:
        if not self.scores:
            return f"no image scored ({len(self.failed)} unreadable)"
        values = sorted(self.scores.values())
        text = (f"scored {len(values)} images: min {values[0]:.4g}, median {values[len(values) // 2]:.4g}, "
                f"max {values[-1]:.4g}")  # fmt: skip
        if self.failed:
            text += f"; {len(self.failed)} unreadable (first: {self.failed[0][0]}: {self.failed[0][1]})"
        return text


def score_folder(folder: str | Path, scorer, *, batch_size: int = 8,
                 progress: Callable[[int, int], None] | None = None,
                 check_cancel: Callable[[], None] | None = None) -> ScoreReport:  # fmt: skip
    """Score every image of `folder`; the scores found so far are written even when cancelled."""
    images = dataset_images(folder)
    report = ScoreReport()
    if progress is not None:
        progress(0, len(images))
    try:
        for start in range(0, len(images), batch_size):
            if check_cancel is not None:
                check_cancel()
            loaded = []
            for image in images[start : start + batch_size]:
                try:
                    loaded.append((image, read_image(image)))
                except ValueError as exc:
                    report.failed.append((image, str(exc)))
            if loaded:
                for (image, _), value in zip(loaded, scorer.scores([pixels for _, pixels in loaded])):
                    report.scores[image] = float(value)
            if progress is not None:
                progress(min(len(images), start + batch_size), len(images))
    finally:
        by_folder: dict[Path, dict[str, float]] = {}
        for image, value in report.scores.items():
            by_folder.setdefault(image.parent, {})[image.name] = value
        for parent, values in sorted(by_folder.items()):
            report.files.append(write_scores(parent, values, scorer.name))
    return report
