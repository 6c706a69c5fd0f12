"""The random-weight checkpoint builder keeps every real SD1.5 / SDXL key, shape and dtype."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from support import checkpoints
from support.checkpoints import build_state_dict, iter_tensors, layout, write_checkpoint

SD15_UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
SD15_POS_IDS = "cond_stage_model.transformer.text_model.embeddings.position_ids"
SDXL_POS_IDS = "conditioner.embedders.0.transformer.text_model.embeddings.position_ids"


def _tsv_rows(arch):
    return (checkpoints.KEYS_DIR / f"{arch}.tsv").read_text().splitlines()[1:]


def _count(keys, prefix):
    return sum(k.startswith(prefix) for k in keys)


@pytest.mark.parametrize("arch", checkpoints.ARCHS)
def test_state_dict_has_every_tsv_key_once(arch):
    sd = build_state_dict(arch)
    rows = _tsv_rows(arch)
    assert len(sd) == len(rows)
    assert list(sd) == [row.split("\t")[0] for row in rows]


def test_sd15_layout_matches_the_real_file():
    rows = {k: (shape, dtype) for k, shape, dtype in layout("sd15")}
    keys = list(rows)
    assert len(keys) == 1131
    assert _count(keys, "model.diffusion_model.") == 686
    assert _count(keys, "cond_stage_model.transformer.text_model.") == 197
    assert _count(keys, "first_stage_model.") == 248
    assert rows[SD15_UNET_IN] == ((320, 4, 3, 3), torch.float16)
    assert rows[SD15_POS_IDS] == ((1, 77), torch.int64)
    assert rows["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"][0] == (49408, 768)
    assert rows["model.diffusion_model.input_blocks.11.0.in_layers.0.weight"][0] == (1280,)
    assert rows["first_stage_model.post_quant_conv.weight"][0] == (4, 4, 1, 1)
    assert not any("label_emb" in k or "logit_scale" in k or "text_projection" in k for k in keys)


def test_sdxl_layout_matches_the_real_file():
    rows = {k: (shape, dtype) for k, shape, dtype in layout("sdxl")}
    keys = list(rows)
    assert len(keys) == 2515
    assert _count(keys, "model.diffusion_model.") == 1680
    assert _count(keys, "conditioner.embedders.0.transformer.text_model.") == 197
    assert _count(keys, "conditioner.embedders.1.model.") == 390
    assert _count(keys, "first_stage_model.") == 248
    assert rows[SD15_UNET_IN] == ((320, 4, 3, 3), torch.float16)
    assert rows["model.diffusion_model.label_emb.0.0.weight"] == ((1280, 2816), torch.float16)
    assert not any(k.startswith("model.diffusion_model.input_blocks.9.") for k in keys)
    assert rows["model.diffusion_model.input_blocks.8.1.transformer_blocks.9.attn2.to_k.weight"][0] == (1280, 2048)
    assert rows[SDXL_POS_IDS] == ((1, 77), torch.int64)
    assert rows["conditioner.embedders.1.model.logit_scale"] == ((), torch.float16)
    assert rows["conditioner.embedders.1.model.text_projection"][0] == (1280, 1280)
    assert rows["conditioner.embedders.1.model.positional_embedding"][0] == (77, 1280)
    assert rows["conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight"][0] == (3840, 1280)
    assert "conditioner.embedders.1.model.transformer.resblocks.32.ln_1.weight" not in rows


@pytest.mark.parametrize("arch", checkpoints.ARCHS)
def test_shrunk_shapes_cap_every_dimension_at_four(arch):
    sd = build_state_dict(arch)
    for key, shape, dtype in layout(arch):
        assert tuple(sd[key].shape) == tuple(min(d, 4) for d in shape), key
        assert sd[key].dtype == (torch.float16 if dtype.is_floating_point else dtype), key
    assert sd[SD15_UNET_IN].shape == (4, 4, 3, 3)


def test_full_size_tensors_have_the_real_shapes():
    # iter_tensors is lazy: only the first tensors are materialised
    for (key, tensor), (lkey, shape, _) in zip(iter_tensors("sdxl", full_size=True), layout("sdxl")[:40]):
        assert key == lkey and tuple(tensor.shape) == shape


@pytest.mark.parametrize("arch", checkpoints.ARCHS)
def test_same_seed_same_values_other_seed_other_values(arch):
    a, b, c = (build_state_dict(arch, seed=s) for s in (7, 7, 8))
    for key in a:
        assert torch.equal(a[key], b[key]), key
        if a[key].is_floating_point():
            assert not torch.equal(a[key], c[key]), key
        else:
            assert torch.equal(a[key], c[key]), key


def test_values_are_scaled_like_a_trained_model():
    sd = build_state_dict("sdxl", dtype=torch.float32)
    norms = torch.cat([t.flatten() for k, t in sd.items() if t.ndim == 1 and k.endswith(".weight")])
    weights = torch.cat([t.flatten() for t in sd.values() if t.ndim >= 2 and t.is_floating_point()])
    assert abs(norms.mean().item() - 1.0) < 0.002 and abs(norms.std().item() - 0.02) < 0.002
    assert abs(weights.mean().item()) < 0.001 and abs(weights.std().item() - 0.02) < 0.001
    assert abs(sd["conditioner.embedders.1.model.logit_scale"].item() - math.log(100)) < 0.1
    assert torch.equal(sd[SDXL_POS_IDS], torch.tensor([[0, 1, 2, 3]]))


def test_dtype_applies_to_float_tensors_only():
    sd = build_state_dict("sd15", dtype=torch.bfloat16)
    assert sd[SD15_UNET_IN].dtype == torch.bfloat16
    assert sd[SD15_POS_IDS].dtype == torch.int64
    with pytest.raises(ValueError, match="floating-point"):
        build_state_dict("sd15", dtype=torch.int32)


def test_unknown_arch_is_refused():
    with pytest.raises(ValueError, match="sd15, sdxl"):
        build_state_dict("sd3")
    with pytest.raises(ValueError, match="sd15, sdxl"):
        write_checkpoint("unused.safetensors", "flux")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_written_checkpoint_reads_back_equal(tmp_path, dtype):
    path = write_checkpoint(tmp_path / "m.safetensors", "sdxl", seed=3, dtype=dtype, metadata={"modelspec.title": "t"})
    expected = build_state_dict("sdxl", seed=3, dtype=dtype)
    loaded = load_file(str(path))
    assert list(loaded) == sorted(expected)  # safetensors lists keys sorted
    for key, tensor in expected.items():
        assert loaded[key].dtype == tensor.dtype and torch.equal(loaded[key], tensor), key
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"modelspec.title": "t"}
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_metadata_must_be_strings(tmp_path):
    with pytest.raises(ValueError, match="must be str"):
        write_checkpoint(tmp_path / "m.safetensors", "sd15", metadata={"steps": 3})
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_full_size_sd15_file_has_the_real_shapes(tmp_path):
    path = write_checkpoint(tmp_path / "sd15.safetensors", "sd15", full_size=True)
    try:
        with safe_open(str(path), "pt") as f:
            for key, shape, _ in layout("sd15"):
                assert tuple(f.get_slice(key).get_shape()) == shape, key
            unet_in = f.get_tensor(SD15_UNET_IN).float()
        assert abs(unet_in.std().item() - 0.02) < 0.002
        assert path.stat().st_size > 2_000_000_000
    finally:
        path.unlink()


@pytest.mark.host
@pytest.mark.parametrize("arch", checkpoints.ARCHS)
def test_committed_layouts_equal_comfyui_classes(comfy_host, arch):
    from support import make_key_layouts

    regenerated = make_key_layouts.format_rows(make_key_layouts.layout_rows(arch))
    assert regenerated == (checkpoints.KEYS_DIR / f"{arch}.tsv").read_text()


@pytest.mark.host
@pytest.mark.parametrize(("arch", "detected"), [("sd15", "SD15"), ("sdxl", "SDXL")])
def test_comfyui_detects_the_layout(comfy_host, arch, detected):
    import comfy.model_detection

    sd = {k: torch.empty(shape, dtype=dtype, device="meta") for k, shape, dtype in layout(arch)}
    config = comfy.model_detection.model_config_from_unet(sd, "model.diffusion_model.")
    assert type(config).__name__ == detected
