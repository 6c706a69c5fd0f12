"""Module names on the REAL SD1.5 / SDXL trees: kohya LoRA names, the ldm <-> diffusers UNet map
(checked against diffusers' own converter over the real key lists) and the single-file layout."""

from __future__ import annotations

import pytest
import torch

from animekit.checkpoints.detect import detect_architecture
from animekit.checkpoints.keys import TEXT_ENCODER_PREFIXES, UNET_PREFIX
from animekit.training import ldm_checkpoint as ldm
from animekit.training.adapters.diffusers_models import ClipTextEncoders, DiffusersDenoiser
from animekit.training.adapters.reference_models import build_reference_models, reference_config
from animekit.training.lora_network import PREFIXES, kohya_name
from animekit.training.unet_names import unet_names
from support.checkpoints import layout
from support.tiny_sd import build_models

torch.set_num_threads(1)


@pytest.fixture(scope="module", params=["sd15", "sdxl"])
def real(request):
    arch = request.param
    unet, texts, vae = build_reference_models(arch, "meta")
    keys = {key: shape for key, shape, _ in layout(arch)}
    return arch, unet, texts, vae, keys


def lora_names(arch, unet, texts, include_conv=False):
    denoiser = DiffusersDenoiser(unet, arch)
    encoders = ClipTextEncoders(arch, [None] * len(texts), texts)
    names = {"unet": [kohya_name("lora_unet", t.path) for t in denoiser.lora_targets(include_conv)]}
    for part in encoders.parts:
        names[part] = [kohya_name(PREFIXES[arch][part], t.path) for t in encoders.lora_targets(part)]
    return names, denoiser, encoders


def test_unet_name_map_agrees_with_diffusers_converter_on_the_real_key_list(real):
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    arch, unet, _, _, keys = real
    config = reference_config(arch)["unet"]
    unet_keys = [k for k in keys if k.startswith("model.diffusion_model.")]
    converted = convert_ldm_unet_checkpoint({k: k for k in unet_keys}, config)  # values tag their source key
    names = unet_names(config)
    assert len(converted) == len(unet_keys) == (686 if arch == "sd15" else 1680)
    assert set(converted) == set(unet.state_dict())  # the shipped config builds the real tree
    for diffusers_key, source in converted.items():
        assert UNET_PREFIX + names.to_ldm(diffusers_key) == source
        assert names.to_diffusers(source.removeprefix(UNET_PREFIX)) == diffusers_key


def test_kohya_lora_names_for_the_real_module_trees(real):
    arch, unet, texts, _, keys = real
    names, _, _ = lora_names(arch, unet, texts)
    if arch == "sd15":
        assert len(names["unet"]) == 192 and len(names["te1"]) == 72
        assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q" in names["unet"]
        assert "lora_unet_down_blocks_0_attentions_0_proj_in" in names["unet"]
        assert "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_ff_net_0_proj" in names["unet"]
        assert "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_out_0" in names["unet"]
        assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj" in names["te1"]
        assert "lora_te_text_model_encoder_layers_11_mlp_fc2" in names["te1"]
    else:
        assert len(names["unet"]) == 722 and len(names["te1"]) == 72 and len(names["te2"]) == 192
        assert "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q" in names["unet"]
        assert "lora_unet_middle_block_1_transformer_blocks_9_ff_net_2" in names["unet"]
        assert "lora_unet_output_blocks_5_1_proj_out" in names["unet"]
        assert "lora_te1_text_model_encoder_layers_0_self_attn_q_proj" in names["te1"]
        assert "lora_te2_text_model_encoder_layers_31_mlp_fc1" in names["te2"]
        assert not any(n.startswith("lora_unet_down_blocks") for n in names["unet"])


def test_every_unet_lora_target_is_a_real_layer_of_the_single_file(real):
    """The module each LoRA name stands for exists, with a matching weight, in the real checkpoint layout."""
    arch, unet, texts, _, keys = real
    _, denoiser, encoders = lora_names(arch, unet, texts, include_conv=True)
    names = unet_names(reference_config(arch)["unet"])
    for target in denoiser.lora_targets(include_conv=True):
        ldm_path = target.path if arch == "sdxl" else names.to_ldm(target.path)
        key = f"{UNET_PREFIX}{ldm_path}.weight"
        assert key in keys, key
        assert keys[key] == tuple(target.module.weight.shape)
    prefix = TEXT_ENCODER_PREFIXES[arch]["te1"]
    for target in encoders.lora_targets("te1"):
        assert f"{prefix}{target.path}.weight" in keys


def test_conv_targets_follow_kohya(real):
    arch, unet, texts, _, _ = real
    names, _, _ = lora_names(arch, unet, texts, include_conv=True)
    if arch == "sd15":
        assert len(names["unet"]) == 278
        assert {"lora_unet_down_blocks_0_resnets_0_conv1", "lora_unet_down_blocks_0_downsamplers_0_conv",
                "lora_unet_up_blocks_0_upsamplers_0_conv", "lora_unet_down_blocks_1_resnets_0_conv_shortcut",
                "lora_unet_down_blocks_0_resnets_0_time_emb_proj"} <= set(names["unet"])  # fmt: skip
    else:
        assert len(names["unet"]) == 788
        assert {"lora_unet_input_blocks_1_0_in_layers_2", "lora_unet_input_blocks_1_0_out_layers_3",
                "lora_unet_input_blocks_3_0_op", "lora_unet_output_blocks_2_2_conv", "lora_unet_output_blocks_8_0_skip_connection",
                "lora_unet_input_blocks_1_0_emb_layers_1"} <= set(names["unet"])  # fmt: skip


def test_exported_single_file_has_exactly_the_real_keys_and_shapes(real):
    arch, unet, texts, vae, keys = real
    config = reference_config(arch)
    state = ldm.unet_to_ldm(unet.state_dict(), config["unet"])
    state.update(ldm.clip_to_ldm(texts[0].state_dict(), TEXT_ENCODER_PREFIXES[arch]["te1"]))
    if arch == "sdxl":
        state.update(ldm.open_clip_to_ldm(texts[1].state_dict(), TEXT_ENCODER_PREFIXES[arch]["te2"]))
    state.update(ldm.vae_to_ldm(vae.state_dict(), config["vae"]))
    assert set(state) == set(keys)
    assert {k: tuple(v.shape) for k, v in state.items()} == keys
    assert detect_architecture(state).name == arch


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_export_then_diffusers_import_round_trips_every_tensor(arch):
    unet, texts, vae = build_models(arch, seed=3)
    state = ldm.unet_to_ldm(unet.state_dict(), unet.config)
    state.update(ldm.clip_to_ldm(texts[0].state_dict(), TEXT_ENCODER_PREFIXES[arch]["te1"]))
    if arch == "sdxl":
        state.update(ldm.open_clip_to_ldm(texts[1].state_dict(), TEXT_ENCODER_PREFIXES[arch]["te2"]))
    state.update(ldm.vae_to_ldm(vae.state_dict(), vae.config))

    def same(original, converted):
        assert set(converted) == set(original)
        for key, value in original.items():
            assert torch.equal(converted[key], value), key

    same(unet.state_dict(), ldm.unet_from_ldm(state, unet.config))
    same(vae.state_dict(), ldm.vae_from_ldm(state, vae.config))
    flattened = not hasattr(texts[0], "text_model")
    same(texts[0].state_dict(), ldm.clip_from_ldm(state, TEXT_ENCODER_PREFIXES[arch]["te1"], flattened))
    if arch == "sdxl":
        prefix = TEXT_ENCODER_PREFIXES[arch]["te2"]
        same(texts[1].state_dict(), ldm.open_clip_from_ldm(state, prefix, texts[1], not hasattr(texts[1], "text_model")))
        assert torch.equal(state[prefix + "text_projection"], texts[1].text_projection.weight.T)
        q = texts[1].state_dict()["text_model.encoder.layers.1.self_attn.q_proj.weight"]
        assert torch.equal(state[prefix + "transformer.resblocks.1.attn.in_proj_weight"][: q.shape[0]], q)


@pytest.mark.parametrize(
    ("arch", "ldm_config"),
    [
        ("sd15", {"channel_mult": [1, 2, 4, 4], "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
                  "transformer_depth_middle": 1, "adm_in_channels": None}),
        ("sdxl", {"channel_mult": [1, 2, 4], "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 2, 2, 10, 10],
                  "transformer_depth_middle": 10, "adm_in_channels": 2816}),
    ],
)  # fmt: skip
def test_ldm_style_unet_config_gives_the_reference_name_map(arch, ldm_config):
    """ComfyUI describes its UNets this way; the name map must match the diffusers config's."""
    from animekit.training.unet_names import block_prefix_pairs, layout_from_ldm_config

    layout = layout_from_ldm_config(ldm_config)
    assert layout["layers_per_block"] == 2
    assert block_prefix_pairs(layout) == block_prefix_pairs(reference_config(arch)["unet"])
