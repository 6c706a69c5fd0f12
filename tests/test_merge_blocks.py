"""Key -> merge block on the real SD1.5 / SDXL key layouts, and which keys always stay A's.

Architecture names, layouts and detection are tested in test_checkpoints.py."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from animekit.checkpoints.architecture import SD15, SDXL
from animekit.checkpoints.keys import unet_relative
from animekit.merge.blocks import stays_a_reason, unet_block
from support.checkpoints import layout


def shapes(arch: str) -> dict[str, tuple[int, ...]]:
    return {key: shape for key, shape, _ in layout(arch)}


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


@pytest.mark.parametrize(("name", "arch"), [("sd15", SD15), ("sdxl", SDXL)])
def test_every_real_unet_key_lands_in_its_block(name, arch):
    rels = [rel for key in shapes(name) if (rel := unet_relative(key)) is not None]
    assert len(rels) == {"sd15": 686, "sdxl": 1680}[name]
    landed = Counter()
    for rel in rels:
        block = unet_block(arch, rel)
        assert block == expected_block(rel, arch.final_block), rel
        landed[block] += 1
    assert set(landed) == set(arch.blocks) - {"BASE"}  # every UNet block has keys
    assert unet_block(arch, "out.2.weight") == ("OUT11" if arch is SD15 else "OUT08")
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
