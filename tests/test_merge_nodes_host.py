"""Block-merge nodes in a real ComfyUI: lazy exact MODEL/CLIP merges, agreement with the file merge,
a merged MODEL sampling in a prompt, and the checkpoint-file node writing into output/checkpoints."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from support.checkpoints import write_checkpoint
from support.comfy_models import tiny_models
from support.executor import configure_folders, execute_prompt, run_prompt, tiny_txt2img_prompt

pytestmark = pytest.mark.host

NODE_IDS = ("AnimeKitBlockMergeModel", "AnimeKitBlockMergeClip", "AnimeKitBlockMergeCheckpoint")
WEIGHT_NOTE = "fraction of model B (0 = A, 1 = B)"
INPUTS = {
    "AnimeKitBlockMergeModel": ["model_a", "model_b", "preset", "weights", "method", "density", "seed", "model_c", "beta"],
    "AnimeKitBlockMergeClip": ["clip_a", "clip_b", "preset", "weights", "method", "density", "seed", "clip_c", "beta"],
    "AnimeKitBlockMergeCheckpoint": ["ckpt_a", "ckpt_b", "preset", "weights", "method", "density", "seed", "ckpt_c",
                                     "dtype", "vae", "filename_prefix", "beta"],
}
ARCH_BLOCKS = {"sd15": 26, "sdxl": 20}


@pytest.fixture(autouse=True)
def private_hash_cache(tmp_path_factory, monkeypatch):
    """Remembered input hashes go to a test file, never the user's cache."""
    monkeypatch.setenv("ANIMEKIT_HASH_CACHE", str(tmp_path_factory.mktemp("hash-cache") / "sha256.json"))


@pytest.fixture(scope="module")
def tiny():
    """tiny_models(arch, seed), built once per module (the merges never modify their inputs)."""
    built = {}

    def get(arch: str, seed: int):
        if (arch, seed) not in built:
            built[arch, seed] = tiny_models(arch, seed)
        return built[arch, seed]

    return get


def pack(host, module: str):
    return sys.modules[f"{host.pack_module}.{module}"]


def node(host, node_id):
    return host.node_class(node_id)


def custom(arch: str, base: float = 0.3) -> str:
    """A weight per block: BASE `base`, then a ramp with exact 0 and 1 in it."""
    n = ARCH_BLOCKS[arch]
    return ",".join([str(base)] + [str(round(i / (n - 2), 4)) for i in range(n - 1)])


def block_weights(arch: str, text: str) -> dict[str, float]:
    from animekit.checkpoints.architecture import SD15, SDXL

    layout = SD15 if arch == "sd15" else SDXL
    return dict(zip(layout.blocks, (float(v) for v in text.split(","))))


def key_block(arch: str, key: str) -> str:
    from animekit.checkpoints.architecture import SD15, SDXL
    from animekit.checkpoints.keys import unet_relative
    from animekit.merge.blocks import unet_block

    return unet_block(SD15 if arch == "sd15" else SDXL, unet_relative(key))


def patched_state(patcher) -> dict[str, torch.Tensor]:
    """The weights ComfyUI samples with: loaded as for sampling (patches applied), copied, unloaded."""
    import comfy.model_management as mm

    mm.load_models_gpu([patcher], force_patch_weights=True)
    try:
        return {k: v.detach().clone() for k, v in patcher.model.state_dict().items()}
    finally:
        mm.unload_all_models()


def expected(method: str, w: float, a, b, c=None, *, density=0.5, stream=0):
    a, b = a.float(), b.float()
    if method == "weighted-sum":
        return a * (1 - w) + b * w
    if method == "add-difference":
        return a + (b - c.float()) * w
    if method == "dare":
        from animekit.merge.methods import dare_keep_mask

        keep = dare_keep_mask(stream, 0, a.numel(), density).view(a.shape)
        return a + torch.where(keep, (b - c.float()) / density, torch.zeros_like(a)) * w

    def trim(x):
        k = math.ceil(density * x.numel())
        threshold = x.abs().flatten().sort(descending=True).values[k - 1]
        return torch.where(x.abs() >= threshold, x, torch.zeros_like(x))

    ta, tb = trim(a - c.float()), trim(b - c.float())
    agree = (torch.sign(tb) == torch.sign(ta + tb)) & (tb != 0)
    return a + torch.where(agree, tb, torch.zeros_like(tb)) * w


def test_nodes_are_registered_with_their_public_inputs(comfy_host):
    for node_id in NODE_IDS:
        assert node_id in comfy_host.node_ids
        schema = node(comfy_host, node_id).define_schema()
        assert [i.id for i in schema.inputs] == INPUTS[node_id]
        for item in schema.inputs:
            assert WEIGHT_NOTE in item.tooltip, (node_id, item.id)
    preset = next(i for i in node(comfy_host, "AnimeKitBlockMergeModel").define_schema().inputs if i.id == "preset")
    assert preset.options[:3] == ["custom", "HIGHRES_REPLACE", "LOWRES_REPLACE"] and "GRAD_V" in preset.options


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_model_merge_is_lazy_and_exact_per_block(comfy_host, tiny, arch):
    a, b = tiny(arch, 1), tiny(arch, 2)
    weights = custom(arch)
    merged, report = node(comfy_host, "AnimeKitBlockMergeModel").execute(
        a.model, b.model, "custom", weights, "weighted-sum", 0.5, 0
    ).result
    assert f"{'SD1.x, 26' if arch == 'sd15' else 'SDXL, 20'} blocks" in report and "lazy patches" in report
    assert a.model.patches == {}  # model A is untouched
    by_block = block_weights(arch, weights)
    b_state = b.model.model_state_dict("diffusion_model.")
    for key, patches in merged.patches.items():
        assert by_block[key_block(arch, key)] != 0.0  # weight-0 blocks get no patch at all
        strength, value, strength_model = patches[0][:3]
        assert value[0][0].data_ptr() == b_state[key].data_ptr()  # B's own weight storage, not a copy
        assert (strength, strength_model) == (by_block[key_block(arch, key)], 1.0 - by_block[key_block(arch, key)])
    a_state = {k: v.clone() for k, v in a.model.model_state_dict("diffusion_model.").items()}
    sampled = patched_state(merged)
    for key, a_value in a_state.items():
        w = by_block[key_block(arch, key)]
        assert torch.equal(sampled[key], expected("weighted-sum", w, a_value, b_state[key])), key
    assert all(torch.equal(v, a.model.model_state_dict()[k]) for k, v in a_state.items())  # unpatched again


@pytest.mark.parametrize("method", ["add-difference", "ties", "dare"])
def test_model_merge_with_a_base_is_exact(comfy_host, tiny, method):
    from animekit.merge.methods import key_seed

    a, b, c = tiny("sd15", 1), tiny("sd15", 2), tiny("sd15", 3)
    weights = custom("sd15")
    merged, _ = node(comfy_host, "AnimeKitBlockMergeModel").execute(a.model, b.model, "custom", weights, method, 0.4, 7, c.model).result
    states = [m.model.model_state_dict("diffusion_model.") for m in (a, b, c)]
    a_state = {k: v.clone() for k, v in states[0].items()}
    sampled = patched_state(merged)
    by_block = block_weights("sd15", weights)
    for key, a_value in a_state.items():
        w = by_block[key_block("sd15", key)]
        want = a_value if w == 0 else expected(method, w, a_value, states[1][key], states[2][key], density=0.4, stream=key_seed(7, key))
        assert torch.equal(sampled[key], want), key


def test_clip_merge_uses_base_and_keeps_constants(comfy_host, tiny):
    a, b = tiny("sdxl", 1), tiny("sdxl", 2)
    merged, report = node(comfy_host, "AnimeKitBlockMergeClip").execute(a.clip, b.clip, "custom", custom("sdxl", 0.3), "weighted-sum", 0.5, 0).result
    assert "BASE" in report and "IN01" not in report.split("stayed")[0]
    a_sd, b_sd = a.clip.get_sd(), b.clip.get_sd()
    got = patched_state(merged.patcher)
    kept = {"clip_g.transformer.text_projection.weight", "clip_g.transformer.text_model.embeddings.position_embedding.weight",
            "clip_l.transformer.text_projection.weight", "clip_g.logit_scale", "clip_l.logit_scale"}
    for key, value in a_sd.items():
        if key in kept or not value.is_floating_point() or key.endswith("position_ids"):
            assert torch.equal(got[key], value), key
        else:
            assert torch.equal(got[key], expected("weighted-sum", 0.3, value, b_sd[key]).to(value.dtype)), key


def _save(path, models):
    import comfy.sd

    comfy.sd.save_checkpoint(str(path), models.model, models.clip, models.vae)
    return path


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_in_graph_and_file_merges_agree_key_by_key(comfy_host, tiny, tmp_path, arch):
    """Same tiny inputs, saved by ComfyUI: the file merge (fp16) equals the in-graph merge rounded to fp16."""
    from animekit.merge.checkpoint_merge import FileMergeConfig, merge_checkpoints
    from animekit.merge.weights import WeightChoice

    a, b = tiny(arch, 1), tiny(arch, 2)
    weights = custom(arch, 0.3)
    file_a, file_b = _save(tmp_path / "a.safetensors", a), _save(tmp_path / "b.safetensors", b)
    result = merge_checkpoints(FileMergeConfig(file_a, file_b, tmp_path / "m.safetensors", WeightChoice(weights=weights), dtype="fp16"))
    from_file = load_file(result.path)

    model, _ = node(comfy_host, "AnimeKitBlockMergeModel").execute(a.model, b.model, "custom", weights, "weighted-sum", 0.5, 0).result
    clip, _ = node(comfy_host, "AnimeKitBlockMergeClip").execute(a.clip, b.clip, "custom", weights, "weighted-sum", 0.5, 0).result
    in_graph = load_file(_save(tmp_path / "graph.safetensors", type(a)(arch, model, clip, a.vae)))  # ComfyUI's own save
    assert in_graph.keys() == from_file.keys()
    compared = 0
    for key, value in from_file.items():
        if value.is_floating_point():
            assert torch.equal(value, in_graph[key].half()), key
            compared += 1
        else:
            assert torch.equal(value, in_graph[key]), key
    assert compared > 0.95 * len(from_file)
    merged_keys = [item for item in result.plan.merged if item.weight not in (0.0, None)]
    assert len(merged_keys) > 0.8 * len(result.plan.merged)


def test_merged_model_and_clip_sample_in_a_prompt(comfy_host):
    prompt = tiny_txt2img_prompt("sdxl", model_seed=1)
    prompt["models_b"] = {"class_type": "AnimeKitTest_TinyModels", "inputs": {"arch": "sdxl", "seed": 2}}
    prompt["merge"] = {"class_type": "AnimeKitBlockMergeModel", "inputs": {
        "model_a": ["models", 0], "model_b": ["models_b", 0], "preset": "HIGHRES_REPLACE", "weights": "",
        "method": "weighted-sum", "density": 0.5, "seed": 0}}
    prompt["merge_clip"] = {"class_type": "AnimeKitBlockMergeClip", "inputs": {
        "clip_a": ["models", 1], "clip_b": ["models_b", 1], "preset": "custom", "weights": custom("sdxl", 0.5),
        "method": "weighted-sum", "density": 0.5, "seed": 0}}
    prompt["sampler"]["inputs"]["model"] = ["merge", 0]
    prompt["positive"]["inputs"]["clip"] = ["merge_clip", 0]
    result = run_prompt(comfy_host, prompt)
    image = result.output("decode")
    assert image.shape == (1, 64, 64, 3) and torch.isfinite(image).all()
    report = result.output("merge", 1)
    assert "preset HIGHRES_REPLACE (mapped to SDXL by resolution level)" in report


def test_bad_weights_fail_the_node_with_the_reason(comfy_host):
    prompt = tiny_txt2img_prompt("sd15")
    prompt["merge"] = {"class_type": "AnimeKitBlockMergeModel", "inputs": {
        "model_a": ["models", 0], "model_b": ["models", 0], "preset": "custom", "weights": "0,1",
        "method": "weighted-sum", "density": 0.5, "seed": 0}}
    prompt["sampler"]["inputs"]["model"] = ["merge", 0]
    result = execute_prompt(comfy_host, prompt)
    assert not result.success
    assert "SD1.x needs 26 weights (BASE, IN00..IN11, M00, OUT00..OUT11); got 2" in result.error["exception_message"]


def _checkpoint_prompt(**overrides):
    inputs = {"ckpt_a": "a.safetensors", "ckpt_b": "b.safetensors", "preset": "LOWRES_REPLACE", "weights": "",
              "method": "weighted-sum", "density": 0.5, "seed": 0, "ckpt_c": "(none)", "dtype": "fp16",
              "vae": "keep A's", "filename_prefix": "merges/anime"}
    inputs.update(overrides)
    return {"save": {"class_type": "AnimeKitBlockMergeCheckpoint", "inputs": inputs}}


def test_checkpoint_node_writes_into_output_checkpoints(comfy_host, tmp_path, monkeypatch):
    monkeypatch.delenv("ANIMEKIT_HASH_CACHE")  # the node keeps remembered hashes in ComfyUI's user folder
    with configure_folders(tmp_path) as folders:
        for role, seed in (("a", 1), ("b", 2)):
            write_checkpoint(folders.checkpoints / f"{role}.safetensors", "sdxl", seed=seed)
        first = run_prompt(comfy_host, _checkpoint_prompt())
        second = run_prompt(comfy_host, _checkpoint_prompt(dtype="bf16"))
        path = Path(first.output("save", 0))
        assert path == folders.output / "checkpoints" / "merges" / "anime_00001_.safetensors"
        assert Path(second.output("save", 0)).name == "anime_00002_.safetensors"
        merged = load_file(path)
        a, b = load_file(folders.checkpoints / "a.safetensors"), load_file(folders.checkpoints / "b.safetensors")
        key = "model.diffusion_model.middle_block.0.in_layers.2.weight"  # M00: 1 in LOWRES_REPLACE
        assert torch.equal(merged[key], b[key])
        assert "LOWRES_REPLACE (mapped to SDXL" in first.output("save", 1)
        assert first.progress and first.progress[-1]["value"] == first.progress[-1]["max"] == 100
        assert first.ui["save"]["text"] == [str(path)]
        remembered = json.loads((tmp_path / "user" / "animekit" / "sha256.json").read_text())
        assert {Path(k).name for k in remembered} == {"a.safetensors", "b.safetensors"}


def test_checkpoint_node_refuses_paths_outside_output_and_leaves_nothing(comfy_host, tmp_path):
    with configure_folders(tmp_path) as folders:
        for role, seed in (("a", 1), ("b", 2)):
            write_checkpoint(folders.checkpoints / f"{role}.safetensors", "sd15", seed=seed)
        result = execute_prompt(comfy_host, _checkpoint_prompt(filename_prefix="../../escaped"))
        assert not result.success and "escapes the folder" in result.error["exception_message"]
        assert not list(tmp_path.rglob("escaped*"))


def test_checkpoint_node_can_be_cancelled_midway(comfy_host, tmp_path, monkeypatch):
    import comfy.utils
    import nodes

    monkeypatch.setattr(pack(comfy_host, "merge.stream_merge"), "SLICE_ELEMENTS", 3)
    real = comfy.utils.ProgressBar.update_absolute

    def interrupting(self, value, total=None, preview=None):
        if value >= 30:
            nodes.interrupt_processing()
        return real(self, value, total, preview)

    monkeypatch.setattr(comfy.utils.ProgressBar, "update_absolute", interrupting)
    with configure_folders(tmp_path) as folders:
        for role, seed in (("a", 1), ("b", 2)):
            write_checkpoint(folders.checkpoints / f"{role}.safetensors", "sd15", seed=seed)
        try:
            result = execute_prompt(comfy_host, _checkpoint_prompt())
        finally:
            nodes.interrupt_processing(False)
        assert not result.success
        assert ("execution_interrupted", result.error) in result.messages and result.error["node_type"] == "AnimeKitBlockMergeCheckpoint"
        assert 25 <= max(p["value"] for p in result.progress) < 100  # stopped midway
        out = folders.output / "checkpoints"
        assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_a_broken_user_preset_file_fails_only_its_own_preset(comfy_host, tmp_path, caplog):
    with configure_folders(tmp_path) as folders:
        for role, seed in (("a", 1), ("b", 2)):
            write_checkpoint(folders.checkpoints / f"{role}.safetensors", "sd15", seed=seed)
        user_file = tmp_path / "user" / "animekit" / "mbw-presets.tsv"
        user_file.parent.mkdir(parents=True, exist_ok=True)
        user_file.write_text("preset_name\tpreset_weights\nBAD\t1,2\n")
        preset = next(i for i in node(comfy_host, "AnimeKitBlockMergeCheckpoint").define_schema().inputs if i.id == "preset")
        assert preset.options[-1] == "BAD" and "LOWRES_REPLACE" in preset.options
        assert "mbw-presets.tsv line 2 (BAD): a preset needs 26 values" in caplog.text  # the warning names file and line
        shipped = run_prompt(comfy_host, _checkpoint_prompt())  # a shipped preset still merges
        assert "LOWRES_REPLACE" in shipped.output("save", 1)
        broken = execute_prompt(comfy_host, _checkpoint_prompt(preset="BAD"))
        assert not broken.success
        assert "preset 'BAD' cannot be used: mbw-presets.tsv line 2 (BAD): a preset needs 26 values" in broken.error["exception_message"]
        assert list((folders.output / "checkpoints" / "merges").iterdir()) == [Path(shipped.output("save", 0))]
