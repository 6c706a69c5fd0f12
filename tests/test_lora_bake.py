"""`animekit bake-lora`: kohya LoRA + LoCon baked into real SD1.5 / SDXL layouts with block weights,
checked exactly per key against the formula; refusals; recipe metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from animekit.__main__ import main
from animekit.merge.lora_bake import BakeConfig, LoraInput, bake_loras, parse_lora_argument
from support.checkpoints import write_checkpoint

# (kohya module, checkpoint key, block) on the shrunk real layouts
SD15_MODULES = {
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q":
        ("model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", "IN01"),
    "lora_unet_mid_block_attentions_0_proj_in": ("model.diffusion_model.middle_block.1.proj_in.weight", "M00"),
    "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_ff_net_2":
        ("model.diffusion_model.output_blocks.11.1.transformer_blocks.0.ff.net.2.weight", "OUT11"),
    "lora_unet_up_blocks_1_resnets_0_conv1": ("model.diffusion_model.output_blocks.3.0.in_layers.2.weight", "OUT03"),  # LoCon 3x3
    "lora_te_text_model_encoder_layers_3_mlp_fc1": ("cond_stage_model.transformer.text_model.encoder.layers.3.mlp.fc1.weight", "BASE"),
}
INS = {"BASE": 1, "IN01": 1, "IN02": 1, "IN04": 1}  # LBW preset INS: every other block 0


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("bake")
    return write_checkpoint(root / "sd15.safetensors", "sd15", seed=1)


def make_lora(path, shapes: dict[str, tuple], seed: int, rank: int = 2, alpha: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in shapes.items():
        if len(shape) == 4:
            down, up = torch.randn(rank, shape[1], *shape[2:], generator=g), torch.randn(shape[0], rank, 1, 1, generator=g)
        else:
            down, up = torch.randn(rank, shape[1], generator=g), torch.randn(shape[0], rank, generator=g)
        tensors[f"{name}.lora_down.weight"], tensors[f"{name}.lora_up.weight"] = down.half(), up.half()
        tensors[f"{name}.alpha"] = torch.tensor(alpha).half()
    save_file(tensors, str(path))
    return {k: v.float() for k, v in tensors.items()}


def test_bake_two_loras_with_block_weights_exactly(tmp_path, ckpt):
    base = load_file(ckpt)
    shapes = {name: tuple(base[key].shape) for name, (key, _) in SD15_MODULES.items()}
    one = make_lora(tmp_path / "one.safetensors", shapes, seed=1)
    two = make_lora(tmp_path / "two.safetensors", dict(list(shapes.items())[:2]), seed=2, alpha=2.0)
    out = tmp_path / "baked.safetensors"
    result = bake_loras(BakeConfig(ckpt, (LoraInput(tmp_path / "one.safetensors", 0.7), LoraInput(tmp_path / "two.safetensors", -0.5)),
                                   out, lbw="INS", dtype="fp32"))
    baked = load_file(out)
    changed = []
    for key, value in baked.items():
        want = base[key].float() if base[key].is_floating_point() else base[key]
        for name, (ckpt_key, block) in SD15_MODULES.items():
            if ckpt_key != key or INS.get(block, 0) == 0:
                continue
            for lora, strength, alpha in ((one, 0.7, 1.0), (two, -0.5, 2.0)):
                if f"{name}.lora_up.weight" in lora:
                    product = lora[f"{name}.lora_up.weight"].flatten(1) @ lora[f"{name}.lora_down.weight"].flatten(1)
                    want = want + product.reshape(want.shape) * (alpha / 2) * strength
            changed.append(key)
        assert torch.equal(value, want), key
    assert sorted(changed) == sorted([SD15_MODULES[n][0] for n in list(SD15_MODULES)[:1]] + [SD15_MODULES[list(SD15_MODULES)[4]][0]])
    assert result.patched == 2 and "LBW preset INS" in result.report()
    recipe = json.loads(safe_open(out, "pt").metadata()["sd_merge_recipe"])
    assert recipe["type"] == "animekit-bake-lora" and [l["strength"] for l in recipe["loras"]] == [0.7, -0.5]
    assert len(recipe["loras"][0]["sha256"]) == 64 and recipe["lbw"]["values"][1:3] == [0.0, 1.0]


def test_cli_bakes_locon_without_block_weights(tmp_path, ckpt, capsys):
    base = load_file(ckpt)
    name = "lora_unet_up_blocks_1_resnets_0_conv1"
    key = SD15_MODULES[name][0]
    lora = make_lora(tmp_path / "locon.safetensors", {name: tuple(base[key].shape)}, seed=3)
    out = tmp_path / "b.safetensors"
    assert main(["bake-lora", str(ckpt), f"{tmp_path / 'locon.safetensors'}:0.25", "--quiet", "-o", str(out)]) == 0
    assert "1 checkpoint keys changed" in capsys.readouterr().out
    product = lora[f"{name}.lora_up.weight"].flatten(1) @ lora[f"{name}.lora_down.weight"].flatten(1)
    assert torch.equal(load_file(out)[key], (base[key].float() + product.reshape(base[key].shape) * 0.5 * 0.25).half())
    assert parse_lora_argument("C:/x/y.safetensors") == LoraInput(Path("C:/x/y.safetensors"), 1.0)  # a drive, not a strength
    assert parse_lora_argument("a/b.safetensors:0.8").strength == 0.8


@pytest.mark.parametrize(("keys", "message"), [
    ({"lora_unet_x.hada_w1_a": (2, 2)}, "is a LyCORIS LoHa file"),
    ({"lora_unet_x.lokr_w1": (2, 2)}, "is a LyCORIS LoKr file"),
    ({"unet.down.lora_A.weight": (2, 2)}, "diffusers / PEFT format"),
    ({"lora_unet_input_blocks_4_1_proj_in.lora_up.weight": (4, 2), "lora_unet_input_blocks_4_1_proj_in.lora_down.weight": (2, 4)},
     "match no SD1.x checkpoint weight"),
])
def test_refusals_name_the_kind(tmp_path, ckpt, keys, message, capsys):
    save_file({k: torch.zeros(s) for k, s in keys.items()}, str(tmp_path / "x.safetensors"))
    assert main(["bake-lora", str(ckpt), str(tmp_path / "x.safetensors"), "-o", str(tmp_path / "o.safetensors")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.safetensors").exists()
