"""Slow tier: the LoRA trainer node on the real SD1.5 architecture (random weights), CPU, end to end.

CheckpointLoaderSimple -> AnimeKitDataset -> AnimeKitTrainLora (2 steps at 256x256) -> KSampler ->
VAEDecode in one prompt, then the stock LoraLoader maps every key of the saved file onto the
loaded checkpoint. About 4 GB of RAM and a few minutes on two CPU cores; ANIMEKIT_SLOW=1.
"""

from __future__ import annotations

import logging

import pytest

from support.comfy_models import write_full_checkpoint
from support.executor import run_prompt
from support.train_nodes import DATASET_DEFAULTS, LORA_DEFAULTS, add_sampling, write_dataset

pytestmark = [pytest.mark.host, pytest.mark.slow]


def test_lora_trains_on_the_real_sd15_layout_and_the_result_samples(comfy_host, comfy_folders):
    import nodes

    write_full_checkpoint(comfy_folders.checkpoints / "sd15-random.safetensors", "sd15", seed=0)
    write_dataset(comfy_folders.input / "chars", count=2, size=256)
    prompt = {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15-random.safetensors"}},
        "dataset": {"class_type": "AnimeKitDataset", "inputs": dict(DATASET_DEFAULTS, folder="chars", resolution=256)},
        "train": {
            "class_type": "AnimeKitTrainLora",
            "inputs": {**LORA_DEFAULTS, "filename": "sd15-slow", "steps": 2, "unet_lr": 1e-4, "model": ["ckpt", 0],
                       "clip": ["ckpt", 1], "vae": ["ckpt", 2], "dataset": ["dataset", 0]},
        },  # fmt: skip
    }
    add_sampling(prompt)
    prompt["decode"]["inputs"]["vae"] = ["ckpt", 2]
    prompt["latent"]["inputs"].update(width=256, height=256)
    result = run_prompt(comfy_host, prompt)

    image = result.output("decode", 0)
    assert image.shape == (1, 256, 256, 3) and not image.isnan().any()
    assert result.output("train", 2) == "sd15-slow.safetensors"
    loaded = result.output("ckpt", 0), result.output("ckpt", 1)
    warned: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = warned.append
    logging.getLogger().addHandler(handler)
    try:
        model, clip = nodes.LoraLoader().load_lora(*loaded, "sd15-slow.safetensors", 1.0, 0.0)
    finally:
        logging.getLogger().removeHandler(handler)
    assert not [r for r in warned if "lora key not loaded" in r.getMessage()]
    assert len(model.patches) == 192  # kohya's SD1.5 attention LoRA: 16 transformers x (proj_in, proj_out, 10 linears)
