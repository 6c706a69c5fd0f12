"""AnimeKitMergeGrid in a real ComfyUI: each cell is the merge sampled on the same seed (alpha 0 is
exactly model A's image, alpha 1 model B's), the grid is labelled and laid out, bad axes fail before
sampling, and the node runs in a prompt through the executor with progress."""

from __future__ import annotations

import pytest
import torch

from animekit.merge.grid import parse_axis
from support.comfy_models import tiny_models
from support.executor import execute_prompt, run_prompt, tiny_txt2img_prompt

pytestmark = pytest.mark.host
SAMPLING = dict(seed=3, steps=2, cfg=5.0, sampler_name="euler", scheduler="normal")


def _sample(model, positive, negative, latent, vae):
    import nodes

    return vae.decode(nodes.common_ksampler(model, SAMPLING["seed"], SAMPLING["steps"], SAMPLING["cfg"], "euler", "normal",
                                            positive, negative, latent)[0]["samples"])[0]


def test_cells_are_the_merges_on_one_seed(comfy_host):
    a, b = tiny_models("sd15", 1), tiny_models("sd15", 2)
    positive = a.clip.encode_from_tokens_scheduled(a.clip.tokenize("1girl, smile"))
    negative = a.clip.encode_from_tokens_scheduled(a.clip.tokenize("lowres"))
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    grid_node = comfy_host.node_class("AnimeKitMergeGrid")
    grid, cells, labels = grid_node.execute(a.model, b.model, positive, negative, latent, a.vae, **SAMPLING, preset="custom",
                                            weights="0.5", method="weighted-sum", density=0.5, x_type="alpha", x_values="0; 1",
                                            y_type="method", y_values="weighted-sum\nslerp").result
    assert cells.shape == (4, 64, 64, 3)
    assert labels.splitlines() == ["alpha: 0 | method: weighted-sum", "alpha: 1 | method: weighted-sum",
                                   "alpha: 0 | method: slerp", "alpha: 1 | method: slerp"]
    assert torch.equal(cells[0], _sample(a.model, positive, negative, latent, a.vae))
    assert torch.equal(cells[1], _sample(b.model, positive, negative, latent, a.vae))
    assert not torch.equal(cells[0], cells[1])
    left = grid.shape[2] - 2 * 64
    assert grid.shape[0] == 1 and grid.shape[1] == 24 + 2 * 64 and left >= 96
    # the cells are pasted where the labels say
    assert torch.allclose(grid[0, 24 + 64:24 + 128, left + 64:left + 128], cells[3], atol=1 / 255)
    assert (grid[0, :20, left:left + 64] < 0.5).any()  # the x label is written


def test_bad_axis_fails_before_sampling(comfy_host):
    with pytest.raises(ValueError, match="x axis: unknown method 'lerp'"):
        parse_axis("method", "weighted-sum; lerp", name="x axis")
    prompt = tiny_txt2img_prompt("sd15")
    prompt["models_b"] = {"class_type": "AnimeKitTest_TinyModels", "inputs": {"arch": "sd15", "seed": 2}}
    prompt["grid"] = {"class_type": "AnimeKitMergeGrid", "inputs": {
        "model_a": ["models", 0], "model_b": ["models_b", 0], "positive": ["positive", 0], "negative": ["negative", 0],
        "latent_image": ["latent", 0], "vae": ["models", 2], **SAMPLING, "preset": "HIGHRES_REPLACE", "weights": "",
        "method": "weighted-sum", "density": 0.5, "x_type": "preset", "x_values": "HIGHRES_REPLACE; LOWRES_REPLACE",
        "y_type": "density", "y_values": "2"}}
    prompt["preview"]["inputs"]["images"] = ["grid", 0]
    failed = execute_prompt(comfy_host, prompt)
    assert not failed.success and "density 2 must be in (0, 1]" in failed.error["exception_message"]
    prompt["grid"]["inputs"].update(y_type="none", y_values="")
    result = run_prompt(comfy_host, prompt)
    assert result.output("grid", 0).shape == (1, 24 + 64, 2 * 64, 3)
    assert result.output("grid", 1).shape == (2, 64, 64, 3)
    assert any(event == "progress" for event, _ in result.messages)
