"""The CLIP BPE vocabulary SD1.5 / SDXL were trained with, found on this machine (never downloaded).

Single-file checkpoints carry no tokenizer. Every SD text encoder (CLIP-L, OpenCLIP-G) uses
OpenAI's 49,408-token BPE, which ComfyUI ships as `comfy/sd1_tokenizer/` (vocab.json + merges.txt)
and which a diffusers model folder ships as `tokenizer/`. Where to look, in order:

1. `model.tokenizer` when set (a folder with vocab.json and merges.txt);
2. the ComfyUI install: the `comfy` package if Python can find it, `$COMFYUI_PATH`, or the ComfyUI
   folder this pack sits in (`ComfyUI/custom_nodes/<pack>`).

The tokenizers are transformers' CLIPTokenizer over those files, configured as ComfyUI's
SDTokenizer (CLIP-L pads with the end token, SDXL's OpenCLIP-G with id 0, "!"), so token ids are
ComfyUI's (tests/test_training_tokenizer_host.py compares them).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

VOCAB_FILES = ("vocab.json", "merges.txt")
FAST_FILE = "tokenizer.json"  # what transformers >= 5 saves instead
COMFY_TOKENIZER_DIR = Path("comfy") / "sd1_tokenizer"
MODEL_MAX_LENGTH = 77
PAD_TOKENS = {"te1": "<|endoftext|>", "te2": "!"}  # ComfyUI: SD1/CLIP-L pad_with_end, SDXL CLIP-G pads with 0


def _has_vocab(folder: Path) -> bool:
    return all((folder / name).is_file() for name in VOCAB_FILES) or (folder / FAST_FILE).is_file()


def comfyui_vocab_candidates() -> list[Path]:
    """Where ComfyUI's tokenizer folder may be, most specific first (nothing is imported)."""
    found: list[Path] = []
    try:
        spec = importlib.util.find_spec("comfy")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        found += [Path(p) / "sd1_tokenizer" for p in spec.submodule_search_locations]
    if os.environ.get("COMFYUI_PATH"):
        found.append(Path(os.environ["COMFYUI_PATH"]) / COMFY_TOKENIZER_DIR)
    pack = Path(__file__).resolve().parents[2]  # <pack>/training/adapters/clip_vocab.py
    found.append(pack.parent.parent / COMFY_TOKENIZER_DIR)  # ComfyUI/custom_nodes/<pack>
    return found


def find_clip_vocab(explicit: str = "") -> Path:
    """The folder holding vocab.json + merges.txt; FileNotFoundError saying where it looked."""
    if explicit:
        folder = Path(explicit)
        if folder.is_dir() and (folder / "tokenizer").is_dir() and not _has_vocab(folder):
            folder = folder / "tokenizer"  # a diffusers model folder
        if not _has_vocab(folder):
            raise FileNotFoundError(
                f"model.tokenizer {explicit!r} must be a folder with {' and '.join(VOCAB_FILES)} (or {FAST_FILE}) "
                "(for example ComfyUI/comfy/sd1_tokenizer, or a diffusers model's tokenizer/ folder)"
            )
        return folder
    tried = comfyui_vocab_candidates()
    for folder in tried:
        if _has_vocab(folder):
            return folder
    raise FileNotFoundError(
        "a single-file checkpoint carries no tokenizer and ComfyUI's CLIP vocabulary was not found (looked in "
        + ", ".join(str(p) for p in dict.fromkeys(tried))
        + "); set COMFYUI_PATH to your ComfyUI folder, or model.tokenizer to a folder with vocab.json and merges.txt"
    )


def clip_tokenizers(arch: str, folder: Path) -> list:
    """[CLIP-L] for SD1.5, [CLIP-L, OpenCLIP-G] for SDXL, over the tokenizer files in `folder`."""
    from transformers import CLIPTokenizer

    parts = ("te1", "te2") if arch == "sdxl" else ("te1",)
    return [
        CLIPTokenizer.from_pretrained(
            str(folder), pad_token=PAD_TOKENS[part], model_max_length=MODEL_MAX_LENGTH, local_files_only=True
        )
        for part in parts
    ]
