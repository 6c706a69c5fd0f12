"""The block-vector table (LBW 17 / 12, MBW 26 / 20, presets) and the kohya LoRA key -> block map."""

from __future__ import annotations

import pytest

from animekit.checkpoints.architecture import SD15, SDXL
from animekit.merge.block_vectors import LBW_PRESETS, expand, resolve_vector
from animekit.merge.lora_blocks import lora_key_block


def nonzero(vector) -> list[str]:
    return [b for b, v in vector.as_dict().items() if v != 0]


def test_lbw17_places_values_by_block_name_and_zeroes_the_rest():
    v = resolve_vector("0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1,1.1,1.2,1.3,1.4,1.5,1.6,1.7", SD15)
    assert v.as_dict() == {"BASE": 0.1, "IN00": 0, "IN01": 0.2, "IN02": 0.3, "IN03": 0, "IN04": 0.4, "IN05": 0.5,
                           "IN06": 0, "IN07": 0.6, "IN08": 0.7, "IN09": 0, "IN10": 0, "IN11": 0, "M00": 0.8,
                           "OUT00": 0, "OUT01": 0, "OUT02": 0, "OUT03": 0.9, "OUT04": 1.0, "OUT05": 1.1, "OUT06": 1.2,
                           "OUT07": 1.3, "OUT08": 1.4, "OUT09": 1.5, "OUT10": 1.6, "OUT11": 1.7}


def test_lbw12_on_sdxl_and_the_presets():
    v = resolve_vector("1,2,3,4,5,6,7,8,9,10,11,12", SDXL)
    assert nonzero(v) == ["BASE", "IN04", "IN05", "IN07", "IN08", "M00", "OUT00", "OUT01", "OUT02", "OUT03", "OUT04", "OUT05"]
    assert v.of("OUT05") == 12 and v.of("M00") == 6
    assert nonzero(resolve_vector("INS", SD15)) == ["BASE", "IN01", "IN02", "IN04"]
    assert nonzero(resolve_vector("MIDD", SD15)) == ["BASE", "IN05", "IN07", "IN08", "M00", "OUT03", "OUT04", "OUT05", "OUT06"]
    assert nonzero(resolve_vector("OUTS", SD15)) == ["BASE", "OUT07", "OUT08", "OUT09", "OUT10", "OUT11"]
    # on SDXL a 17-value preset lands by resolution level: SD1 OUT03..OUT11 are SDXL OUT00..OUT08
    assert nonzero(resolve_vector("OUTALL", SDXL)) == ["BASE"] + [f"OUT{i:02d}" for i in range(9)]
    assert resolve_vector("ALL0.5", SDXL).values == (0.5, 0, 0.5, 0.5, 0, 0.5, 0.5, 0, 0.5, 0.5, 0.5) + (0.5,) * 9  # SDXL OUT00..08 = SD1 OUT03..11
    assert set(LBW_PRESETS) >= {"ALL", "INS", "IND", "INALL", "MIDD", "OUTD", "OUTS", "OUTALL"}


def test_mbw_lengths_and_presets():
    assert resolve_vector(",".join(["0.5"] * 26), SD15).values == (0.5,) * 26
    assert resolve_vector(",".join(str(i) for i in range(20)), SDXL).values == tuple(float(i) for i in range(20))
    sd1 = [float(i) for i in range(26)]  # SD1 26 on SDXL: OUT00 <- SD1 OUT03 (index 17)
    assert expand(sd1, SDXL).of("OUT00") == 17.0 and expand(sd1, SDXL).of("IN08") == 9.0
    assert resolve_vector("HIGHRES_REPLACE", SD15).source == "MBW preset HIGHRES_REPLACE"


@pytest.mark.parametrize(("text", "arch", "message"), [
    ("1,2,3", SD15, "a block-weight vector for SD1.x has one of these lengths: 26 (MBW"),
    ("1,1,1,1,1,1,1,1,1,1,1,1", SD15, "got 12 values"),
    ("ALLL", SD15, "'ALLL': not a preset name (NONE, ALL, INS"),
    ("", SDXL, "block weights are empty"),
])
def test_bad_vectors_are_refused_clearly(text, arch, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        resolve_vector(text, arch)


@pytest.mark.parametrize(("key", "block"), [
    ("lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", "BASE"),
    ("lora_te2_text_model_encoder_layers_3_self_attn_q_proj.alpha", "BASE"),
    ("lora_unet_conv_in.lora_down.weight", "IN00"),
    ("lora_unet_down_blocks_0_attentions_1_proj_in.lora_up.weight", "IN02"),
    ("lora_unet_down_blocks_0_downsamplers_0_conv.alpha", "IN03"),
    ("lora_unet_down_blocks_3_resnets_1_conv1.alpha", "IN11"),
    ("lora_unet_mid_block_attentions_0_proj_out.alpha", "M00"),
    ("lora_unet_up_blocks_0_resnets_2_conv2.alpha", "OUT02"),
    ("lora_unet_up_blocks_1_upsamplers_0_conv.alpha", "OUT05"),
    ("lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_ff_net_2.alpha", "OUT11"),
    ("lora_unet_conv_out.alpha", "OUT11"),
    ("lora_unet_time_embedding_linear_1.alpha", "IN00"),
    ("something_else.weight", None),
])
def test_kohya_sd1_keys_land_in_their_blocks(key, block):
    assert lora_key_block(SD15, key) == block


def test_kohya_sdxl_keys_in_ldm_naming():
    assert lora_key_block(SDXL, "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_up.weight") == "IN04"
    assert lora_key_block(SDXL, "lora_unet_output_blocks_8_0_skip_connection.alpha") == "OUT08"
    assert lora_key_block(SDXL, "lora_unet_middle_block_1_proj_in.alpha") == "M00"
    assert lora_key_block(SDXL, "lora_unet_label_emb_0_0.alpha") == "IN00"
    assert lora_key_block(SDXL, "lora_unet_up_blocks_2_attentions_0_proj_in.alpha") == "OUT06"  # diffusers naming too
