"""Block layouts, key -> block on the real SD1.5 / SDXL key layouts, and architecture detection."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from animekit.merge.blocks import (
    SD1,
    SDXL,
    canonical_key,
    identify,
    require_same_architecture,
    stays_a_reason,
    unet_block,
    unet_relative,
)
from support.checkpoints import layout


def shapes(arch: str) -> dict[str, tuple[int, ...]]:
    return {key: shape for key, shape, _ in layout(arch)}


def test_layouts_have_the_supermerger_block_names_in_order():
    assert SD1.weight_count == 26 and SDXL.weight_count == 20
    assert SD1.blocks[:3] == ("BASE", "IN00", "IN01") and SD1.blocks[12:15] == ("IN11", "M00", "OUT00")
    assert SD1.blocks[-1] == "OUT11" and len(set(SD1.blocks)) == 26
    assert SDXL.blocks == ("BASE", *(f"IN{i:02d}" for i in range(9)), "M00", *(f"OUT{i:02d}" for i in range(9)))


# An independent statement of the convention, checked against every real UNet key.
def expected_block(rel: str, last: str) -> str:
    if re.match(r"(time_embed|label_emb)\.", rel):
        return "IN00"
    if rel.startswith("middle_block."):
        return "M00"
    if rel.startswith("out."):
        return last
    kind, index = re.match(r"(input|output)_blocks\.(\d+)\.", rel).groups()
    return f"{'IN' if kind == 'input' else 'OUT'}{int(index):02d}"


@pytest.mark.parametrize(("name", "arch"), [("sd15", SD1), ("sdxl", SDXL)])
def test_every_real_unet_key_lands_in_its_block(name, arch):
    rels = [rel for key in shapes(name) if (rel := unet_relative(key)) is not None]
    assert len(rels) == {"sd15": 686, "sdxl": 1680}[name]
    landed = Counter()
    for rel in rels:
        block = unet_block(arch, rel)
        assert block == expected_block(rel, arch.final_block), rel
        landed[block] += 1
    assert set(landed) == set(arch.blocks) - {"BASE"}  # every UNet block has keys
    assert unet_block(arch, "out.2.weight") == ("OUT11" if arch is SD1 else "OUT08")
    assert unet_block(arch, "time_embed.0.weight") == "IN00"


def test_sdxl_label_emb_is_in00_and_sd1_has_none():
    assert unet_block(SDXL, "label_emb.0.0.weight") == "IN00"
    assert not any("label_emb" in k for k in shapes("sd15"))


def test_keys_without_weight_or_bias_stay_a():
    kept = [k for k in shapes("sdxl") if stays_a_reason(k)]
    assert kept == [
        "conditioner.embedders.0.transformer.text_model.embeddings.position_ids",
        "conditioner.embedders.1.model.logit_scale",
        "conditioner.embedders.1.model.positional_embedding",
        "conditioner.embedders.1.model.text_projection",
    ]
    assert [k for k in shapes("sd15") if stays_a_reason(k)] == ["cond_stage_model.transformer.text_model.embeddings.position_ids"]
    # ComfyUI's names for the OpenCLIP constants stay A's in the graph too
    assert stays_a_reason("clip_g.transformer.text_projection.weight")
    assert stays_a_reason("clip_g.transformer.text_model.embeddings.position_embedding.weight")
    assert stays_a_reason("clip_l.transformer.text_model.embeddings.position_embedding.weight") is None


def test_real_layouts_are_identified():
    assert identify(shapes("sd15")).arch is SD1
    assert identify(shapes("sdxl")).arch is SDXL
    # ComfyUI MODEL keys (diffusion_model. prefix) work the same
    comfy = {"diffusion_model." + k[len("model.diffusion_model."):]: s for k, s in shapes("sdxl").items() if k.startswith("model.diffusion_model.")}
    assert identify(comfy).arch is SDXL


def test_sd2_refiner_and_non_checkpoints_are_named():
    sd2 = dict(shapes("sd15"))
    sd2["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"] = (320, 1024)
    assert identify(sd2).arch is None and "SD2" in identify(sd2).description
    refiner = {f"model.diffusion_model.input_blocks.{i}.0.weight": (4,) for i in range(12)}
    refiner.update({"model.diffusion_model.label_emb.0.0.weight": (4, 4), "model.diffusion_model.output_blocks.0.0.weight": (4,)})
    assert "refiner" in identify(refiner).description
    assert "LoRA" in identify({"lora_unet_down_blocks_0.lora_up.weight": (4, 4)}).description
    assert "VAE" in identify({"encoder.down.0.block.0.conv1.weight": (4,)}).description
    assert "empty" in identify({}).description


def test_mixed_architectures_are_refused_naming_each_input():
    with pytest.raises(ValueError) as err:
        require_same_architecture({"model A (a.safetensors)": shapes("sd15"), "model B (b.safetensors)": shapes("sdxl")})
    message = str(err.value)
    assert "mixed architectures" in message
    assert "model A (a.safetensors) is SD1.x" in message and "model B (b.safetensors) is SDXL" in message
    with pytest.raises(ValueError, match=r"unsupported architecture.*model B is a LoRA"):
        require_same_architecture({"model A": shapes("sd15"), "model B": {"lora_te_x.lora_up.weight": (4,)}})


def test_canonical_keys_use_comfyui_names():
    assert canonical_key("model.diffusion_model.out.2.weight") == "diffusion_model.out.2.weight"
    assert canonical_key("cond_stage_model.transformer.text_model.final_layer_norm.weight") == "clip_l.transformer.text_model.final_layer_norm.weight"
    assert canonical_key("conditioner.embedders.0.transformer.x.weight") == "clip_l.transformer.x.weight"
    assert canonical_key("conditioner.embedders.1.model.ln_final.weight") == "clip_g.model.ln_final.weight"
    assert canonical_key("first_stage_model.decoder.conv_in.weight") == "first_stage_model.decoder.conv_in.weight"
