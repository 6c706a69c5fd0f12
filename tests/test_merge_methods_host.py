"""The registry's SuperMerger modes in a real ComfyUI: the lazy MODEL merge samples with exactly the
independent formula per key, and the node's method combo is the registry."""

from __future__ import annotations

import pytest
import torch

from support.comfy_models import tiny_models
from support.merge_formulas import cos_stats, expected

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def tiny():
    return {seed: tiny_models("sd15", seed) for seed in (1, 2, 3)}


def _weights() -> list[float]:
    return [0.3] + [round(i / 24, 4) for i in range(25)]  # BASE, then a ramp with 0 and 1 in it


def _blocks(keys):
    from animekit.checkpoints.architecture import SD15
    from animekit.checkpoints.keys import unet_relative
    from animekit.merge.blocks import unet_block

    return {k: SD15.blocks.index(unet_block(SD15, unet_relative(k))) for k in keys}


def _sampled(patcher) -> dict[str, torch.Tensor]:
    import comfy.model_management as mm

    mm.load_models_gpu([patcher], force_patch_weights=True)
    try:
        return {k: v.detach().clone() for k, v in patcher.model.state_dict().items()}
    finally:
        mm.unload_all_models()


def test_method_combo_is_the_registry(comfy_host):
    from animekit.merge.methods import METHODS

    schema = comfy_host.node_class("AnimeKitBlockMergeModel").define_schema()
    method = next(i for i in schema.inputs if i.id == "method")
    assert method.options == list(METHODS) and "train-difference" in method.tooltip


@pytest.mark.parametrize("name", ["slerp", "train-difference", "cosine-a", "cosine-b", "triple-sum", "sum-twice"])
def test_in_graph_merge_matches_the_formula(comfy_host, tiny, name):
    a, b, c = tiny[1], tiny[2], tiny[3]
    weights = _weights()
    node = comfy_host.node_class("AnimeKitBlockMergeModel")
    merged, report = node.execute(a.model, b.model, "custom", ",".join(map(str, weights)), name, 0.5, 0, c.model, 0.25).result
    assert f"method: {name}" in report
    states = [m.model.model_state_dict("diffusion_model.") for m in (a, b, c)]
    a_state = {k: v.clone() for k, v in states[0].items()}
    blocks = _blocks(a_state)
    merged_keys = [k for k in a_state if ("weight" in k or "bias" in k) and a_state[k].is_floating_point()]
    stats = None
    if name.startswith("cosine"):  # the MODEL node sees the UNet only, so its first pass covers the UNet
        stats = cos_stats(((a_state[k].float(), states[1][k].float()) for k in merged_keys), name == "cosine-a")
    sampled = _sampled(merged)
    wrong = []
    for key in merged_keys:
        w = weights[blocks[key]]
        want = expected(name, w, a_state[key].float(), states[1][key].float(), states[2][key].float(), beta=0.25, stats=stats)
        if not torch.equal(sampled[key], want.to(a_state[key].dtype)):
            wrong.append(key)
    assert wrong == [] and len(merged_keys) > 100
    assert all(torch.equal(v, a.model.model_state_dict()[k]) for k, v in a_state.items())  # A untouched
