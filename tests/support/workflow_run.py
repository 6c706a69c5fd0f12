"""Make a bundled workflow's API prompt small enough to execute on CPU, and read back what it made.

The slow host tier runs each workflow end to end on random-weight checkpoints of the real layout.
Only sizes, step counts and CPU-only settings change: every sampler gets a few steps; each latent
a workflow makes is scaled down by a core LatentUpscale inserted after its source (so the nodes
that made it still run), with hires targets replaced by small constants; datasets bucket around
256 px; trainers run a couple of steps at batch 1 in fp32 without periodic samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

SAMPLER_TYPES = ("KSampler", "KSamplerAdvanced")
LATENT_SOURCE_SLOTS = {"AnimeKitAspectPreset": 2, "EmptyLatentImage": 0}


@dataclass(frozen=True)
class Shrink:
    steps: int = 2
    width: int = 64
    height: int = 64
    hires_width: int = 128
    hires_height: int = 128
    train_steps: int = 2
    train_resolution: int = 256  # the dataset node's minimum

    def input_overrides(self) -> dict[str, dict]:
        """Per node type, the inputs set outright."""
        trainer = {"steps": self.train_steps, "batch_size": 1, "gradient_accumulation": 1, "warmup_steps": 0,
                   "sample_every_n_steps": 0, "save_every_n_steps": 0, "mixed_precision": "no"}
        return {
            "AnimeKitDataset": {"resolution": self.train_resolution, "min_bucket_size": self.train_resolution // 2,
                                "max_bucket_size": self.train_resolution * 2},
            "AnimeKitTrainLora": trainer,
            "AnimeKitTrainCheckpoint": trainer,
        }


def shrink_prompt(prompt: dict, shrink: Shrink = Shrink()) -> dict:
    """A copy of `prompt` with few sampler steps and tiny latents; node ids of the original are kept."""
    prompt = {node_id: {**entry, "inputs": dict(entry["inputs"])} for node_id, entry in prompt.items()}
    overrides = shrink.input_overrides()
    for node_id, entry in list(prompt.items()):
        kind = entry["class_type"]
        for name, value in overrides.get(kind, {}).items():
            if name not in entry["inputs"]:
                raise KeyError(f"{kind} has no input {name!r} to shrink: update support/workflow_run.py")
            entry["inputs"][name] = value
        if kind in SAMPLER_TYPES:
            entry["inputs"]["steps"] = shrink.steps
            if "end_at_step" in entry["inputs"]:
                entry["inputs"]["end_at_step"] = shrink.steps
        if kind in LATENT_SOURCE_SLOTS:
            _shrink_latent(prompt, node_id, LATENT_SOURCE_SLOTS[kind], shrink)
        if kind == "LatentUpscale":
            entry["inputs"]["width"], entry["inputs"]["height"] = shrink.hires_width, shrink.hires_height
    return prompt


def _shrink_latent(prompt: dict, node_id: str, slot: int, shrink: Shrink) -> None:
    small_id = f"{node_id}_small"
    consumers = [(entry, name) for entry in prompt.values() for name, value in entry["inputs"].items()
                 if value == [node_id, slot]]
    prompt[small_id] = {"class_type": "LatentUpscale", "inputs": {
        "samples": [node_id, slot], "upscale_method": "nearest-exact",
        "width": shrink.width, "height": shrink.height, "crop": "disabled"}}
    for entry, name in consumers:
        entry["inputs"][name] = [small_id, 0]


def nodes_titled(workflow: dict, prefix: str) -> list[dict]:
    return [node for node in workflow["nodes"] if (node.get("title") or "").startswith(prefix)]


def saved_images(result, output_dir: Path, node_id: str) -> list[Image.Image]:
    """The images a SaveImage node wrote, read back from disk."""
    entries = result.ui[node_id]["images"]
    images = []
    for entry in entries:
        assert entry["type"] == "output"
        path = output_dir / entry["subfolder"] / entry["filename"]
        with Image.open(path) as image:
            image.load()
            images.append(image)
    return images
