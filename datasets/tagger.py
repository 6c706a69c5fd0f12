"""WD14-style ONNX tagging: `model.onnx` + `selected_tags.csv`, the files of SmilingWolf's wd-*-tagger
models and their relatives, run on images without a caption.

What these models expect (their reference code): the image composited on white, padded to a square
with white, resized to the model's own input size (read from the ONNX input shape, NHWC), in BGR
channel order with values 0-255 and no normalisation. The output is one probability per row of the
CSV (the sigmoid is inside the graph; another one must not be applied). CSV categories: 0 general,
4 character, 9 rating. `onnxruntime` runs on the CPU; its CUDA provider is used when installed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from ..prompting.tagtext import is_protected, tag_key
from .images import caption_path, dataset_images, read_image
from .writing import replace_caption

MODEL_FILE = "model.onnx"
TAGS_FILE = "selected_tags.csv"
GENERAL, CHARACTER, RATING = 0, 4, 9
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class TaggerConfig:
    general_threshold: float = 0.35  # the usual defaults of the WD14 tagger packs
    character_threshold: float = 0.85
    exclude: tuple[str, ...] = ()  # tags never written (either `_` or space form)
    overwrite: bool = False  # replace existing captions (the old one is kept as `.txt.orig`)
    caption_extension: str = ".txt"
    batch_size: int = 4

    def __post_init__(self):
        for name in ("general_threshold", "character_threshold"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")


@dataclass(frozen=True)
class TagRow:
    name: str  # caption form: spaces for underscores except in emoticons (`^_^`)
    category: int


def caption_name(danbooru_name: str) -> str:
    name = danbooru_name.strip()
    return name if is_protected(name) else name.replace("_", " ")


def read_selected_tags(path: Path) -> list[TagRow]:
    """`tag_id,name,category,count` rows; a clear error for anything else."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: not a readable CSV ({exc})") from exc
    if not rows or not {"name", "category"} <= set(rows[0]):
        raise ValueError(f"{path}: expected a WD14 `selected_tags.csv` with a header `tag_id,name,category,count` and one row per tag")
    tags = []
    for line_no, row in enumerate(rows, start=2):
        try:
            tags.append(TagRow(caption_name(row["name"]), int(row["category"])))
        except (TypeError, ValueError):
            raise ValueError(f"{path}:{line_no}: expected a tag name and a whole-number category, got {row!r}") from None
    return tags


def onnx_providers(available: Sequence[str]) -> list[str]:
    """CUDA when this onnxruntime has it (onnxruntime-gpu), else the CPU."""
    return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + ["CPUExecutionProvider"]


def square_input(image: Image.Image, size: int) -> np.ndarray:
    """RGB image -> float32 HWC BGR 0-255, padded to a white square (centred) and resized to `size`."""
    width, height = image.size
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), WHITE)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    if side != size:
        canvas = canvas.resize((size, size), Image.BICUBIC)
    return np.ascontiguousarray(np.asarray(canvas, dtype=np.float32)[:, :, ::-1])


class WdTagger:
    """A loaded tagger folder: `WdTagger(folder)`, then `tags(images)`."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser()
        model, table = self.folder / MODEL_FILE, self.folder / TAGS_FILE
        if not self.folder.is_dir():
            raise ValueError(f"tagger model: {str(self.folder)!r} is not a folder; give the folder holding {MODEL_FILE} and {TAGS_FILE}")
        for path in (model, table):
            if not path.is_file():
                raise ValueError(f"tagger model: {str(self.folder)!r} has no {path.name} (a WD14 tagger folder holds {MODEL_FILE} and {TAGS_FILE})")
        self.rows = read_selected_tags(table)
        try:
            import onnxruntime
        except ImportError:
            raise ValueError("the tagger needs onnxruntime: pip install onnxruntime (or comfyui-animekit[datasets])") from None
        try:
            self.session = onnxruntime.InferenceSession(str(model), providers=onnx_providers(onnxruntime.get_available_providers()))
        except Exception as exc:  # onnxruntime raises its own exception classes for corrupt files
            raise ValueError(f"tagger model: {model} is not a loadable ONNX model: {exc}") from None
        self.input_name, self.size = self._input_size()
        outputs = self.session.get_outputs()[0].shape
        if isinstance(outputs[-1], int) and outputs[-1] != len(self.rows):
            raise ValueError(f"tagger model: {model.name} gives {outputs[-1]} scores but {table.name} lists {len(self.rows)} "
                             "tags; the two files come from different taggers")

    def _input_size(self) -> tuple[str, int]:
        spec = self.session.get_inputs()[0]
        shape = list(spec.shape)
        if len(shape) != 4 or shape[3] != 3 or not isinstance(shape[1], int) or shape[1] != shape[2]:
            raise ValueError(f"tagger model: {MODEL_FILE} takes input of shape {shape}; a WD14 tagger takes "
                             "[batch, size, size, 3] (NHWC, a fixed square size)")
        return spec.name, int(shape[1])

    def probabilities(self, images: Sequence[Image.Image]) -> np.ndarray:
        """[len(images), tags] probabilities, as the model gives them."""
        batch = np.stack([square_input(image, self.size) for image in images])
        scores = self.session.run(None, {self.input_name: batch})[0]
        if scores.shape != (len(images), len(self.rows)):
            raise ValueError(f"tagger model: output shape {scores.shape}, expected ({len(images)}, {len(self.rows)})")
        return scores.astype(np.float32)

    def tags(self, probabilities: np.ndarray, cfg: TaggerConfig) -> list[str]:
        """Characters over their threshold, then general tags over theirs, each most likely first
        (ties in the CSV's order); rating rows are not caption tags (the format step adds a
        profile's rating tags from the posts' metadata)."""
        excluded = {tag_key(tag) for tag in cfg.exclude}
        picked: dict[int, list[tuple[float, int, str]]] = {CHARACTER: [], GENERAL: []}
        for index, (row, score) in enumerate(zip(self.rows, probabilities.tolist())):
            if row.category == RATING or tag_key(row.name) in excluded:
                continue
            kind = CHARACTER if row.category == CHARACTER else GENERAL
            threshold = cfg.character_threshold if kind == CHARACTER else cfg.general_threshold
            if score >= threshold:
                picked[kind].append((-score, index, row.name))
        return [name for kind in (CHARACTER, GENERAL) for _, _, name in sorted(picked[kind])]


@dataclass
class TagReport:
    written: list[Path] = field(default_factory=list)  # caption files written
    kept: list[Path] = field(default_factory=list)  # images whose caption was left as it was
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (image, why)

    def summary(self) -> str:
        text = f"tagged {len(self.written)} images, kept {len(self.kept)} existing captions"
        if self.failed:
            text += f", {len(self.failed)} unreadable (first: {self.failed[0][0]}: {self.failed[0][1]})"
        return text


def has_caption(image: Path, extension: str) -> bool:
    path = caption_path(image, extension)
    return path.is_file() and bool(path.read_text(encoding="utf-8-sig", errors="replace").strip())


def tag_folder(
    folder: str | Path, tagger: WdTagger, cfg: TaggerConfig, *,
    progress: Callable[[int, int], None] | None = None, check_cancel: Callable[[], None] | None = None,
) -> TagReport:  # fmt: skip
    """Caption every image of `folder` that has none (all of them with `cfg.overwrite`).
    `progress(done, total)` after each image; `check_cancel()` raises to stop between batches."""
    report = TagReport()
    todo = []
    for image in dataset_images(folder):
        if not cfg.overwrite and has_caption(image, cfg.caption_extension):
            report.kept.append(image)
        else:
            todo.append(image)
    done = 0
    if progress is not None:
        progress(0, len(todo))
    for start in range(0, len(todo), cfg.batch_size):
        if check_cancel is not None:
            check_cancel()
        loaded = []
        for image in todo[start : start + cfg.batch_size]:
            try:
                loaded.append((image, read_image(image)))
            except ValueError as exc:
                report.failed.append((image, str(exc)))
        if loaded:
            scores = tagger.probabilities([pixels for _, pixels in loaded])
            for (image, _), row in zip(loaded, scores):
                path = caption_path(image, cfg.caption_extension)
                replace_caption(path, ", ".join(tagger.tags(row, cfg)) + "\n")
                report.written.append(path)
        done = min(len(todo), start + cfg.batch_size)
        if progress is not None:
            progress(done, len(todo))
    return report
