"""`animekit extract-lora` on the real SD1.5 / SDXL key layouts: kohya names, ranks, the SVD and clamp
checked against an independent computation, the per-block error, metadata, and clean refusals."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from animekit.__main__ import main
from animekit.merge.lora_extract import ExtractConfig, extract_lora
from support.checkpoints import write_checkpoint


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    return {arch: (write_checkpoint(root / f"{arch}-tuned.safetensors", arch, seed=2),
                   write_checkpoint(root / f"{arch}-base.safetensors", arch, seed=1)) for arch in ("sd15", "sdxl")}


def independent(tuned, base, rank: int, quantile: float = 0.99):
    d = tuned.float() - base.float()
    mat = d.reshape(d.shape[0], -1)
    u, s, vh = torch.linalg.svd(mat)  # full matrices, as kohya
    up, down = u[:, :rank] @ torch.diag(s[:rank]), vh[:rank, :]
    hi = torch.quantile(torch.cat([up.flatten(), down.flatten()]), quantile)
    return up.clamp(-hi, hi), down.clamp(-hi, hi), mat


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_layers_names_and_values(tmp_path, pair, arch):
    tuned, base = pair[arch]
    out = tmp_path / "lora.safetensors"
    result = extract_lora(ExtractConfig(tuned, base, out, rank=3, conv_rank=2, dtype="fp32", svd="full"))
    lora, t, b = load_file(out), load_file(tuned), load_file(base)
    names = {k.split(".", 1)[0] for k in lora}
    if arch == "sd15":
        checks = {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q":
                  "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight",
                  "lora_unet_up_blocks_3_resnets_2_conv2": "model.diffusion_model.output_blocks.11.0.out_layers.3.weight",
                  "lora_unet_up_blocks_1_upsamplers_0_conv": "model.diffusion_model.output_blocks.5.2.conv.weight",
                  "lora_te_text_model_encoder_layers_11_mlp_fc2": "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight"}
        assert len(names) == 72 + 192 + 86
    else:
        checks = {"lora_unet_input_blocks_4_1_transformer_blocks_1_attn2_to_k":
                  "model.diffusion_model.input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight",
                  "lora_unet_output_blocks_2_2_conv": "model.diffusion_model.output_blocks.2.2.conv.weight",
                  "lora_te1_text_model_encoder_layers_0_self_attn_q_proj":
                  "conditioner.embedders.0.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight"}
        assert len(names) == 72 + 722 + 66  # kohya: 722 U-Net modules; 17 ResNets x 3 + 11 shortcuts + 4 samplers
    for name, key in checks.items():
        conv3 = t[key].dim() == 4 and t[key].shape[2:] != (1, 1)
        rank = min(2 if conv3 else 3, *t[key].reshape(t[key].shape[0], -1).shape)
        up, down, mat = independent(t[key], b[key], rank)
        assert torch.allclose(lora[f"{name}.lora_up.weight"].reshape(up.shape), up, atol=1e-5), name
        assert torch.allclose(lora[f"{name}.lora_down.weight"].reshape(down.shape), down, atol=1e-5), name
        assert lora[f"{name}.alpha"].item() == rank
        layer = next(l for l in result.layers if l.name == name)
        assert layer.error == pytest.approx(float((mat - up @ down).norm() / mat.norm()), rel=1e-4)
    meta = safe_open(out, "pt").metadata()
    assert meta["ss_network_module"] == "networks.lora" and meta["ss_network_dim"] == "3"
    assert json.loads(meta["ss_network_args"]) == {"conv_dim": "2", "conv_alpha": "2.0"}
    assert meta["modelspec.architecture"] == ("stable-diffusion-v1/lora" if arch == "sd15" else "stable-diffusion-xl-v1-base/lora")
    errors = json.loads(meta["animekit_extract"])["block_errors"]
    assert list(errors)[0] == "BASE" and 0 < errors["M00"] < 1


def test_energy_rank_and_text_encoder_skip(tmp_path, pair):
    tuned, base = pair["sd15"]
    result = extract_lora(ExtractConfig(tuned, base, tmp_path / "e.safetensors", rank=4, energy=0.3, min_diff=10.0))
    assert "text encoder left out" in result.notes[0] and all(l.block != "BASE" for l in result.layers)
    assert {l.rank for l in result.layers} <= {1, 2} and all(l.rank <= 4 for l in result.layers)
    assert not any(k.startswith("lora_te_") for k in load_file(tmp_path / "e.safetensors"))


def test_cli_prints_block_errors_and_refuses_bad_input(tmp_path, pair, capsys):
    tuned, base = pair["sd15"]
    out = tmp_path / "c.safetensors"
    assert main(["extract-lora", str(tuned), str(base), "--rank", "2", "--quiet", "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert "AnimeKit extract-lora: SD1.x, 264 layers" in printed.out and "\nall " in printed.out and out.is_file()
    assert main(["extract-lora", str(tuned), str(base), "-o", str(out)]) == 2
    assert "exists; choose another name or pass --overwrite" in capsys.readouterr().err
    assert main(["extract-lora", str(tuned), str(pair["sdxl"][1]), "-o", str(tmp_path / "x.safetensors")]) == 2
    assert "mixed architectures" in capsys.readouterr().err
    assert main(["extract-lora", str(tuned), str(base), "--rank", "0", "-o", str(tmp_path / "y.safetensors")]) == 2
    assert "rank must be a positive integer" in capsys.readouterr().err
    assert main(["extract-lora", str(tuned), str(base), "-o", str(tuned)]) == 2
    assert "inputs are never overwritten" in capsys.readouterr().err


def test_randomized_svd_is_near_the_exact_one():
    from animekit.merge.lora_extract import low_rank

    g = torch.Generator().manual_seed(0)
    d = torch.randn(320, 6, generator=g) @ torch.randn(6, 1280, generator=g) + 0.01 * torch.randn(320, 1280, generator=g)
    up_f, down_f, rank_f, err_f = low_rank(d, 4, None, 1.0, "full")
    up_l, down_l, rank_l, err_l = low_rank(d, 4, None, 1.0, "lowrank")
    assert rank_f == rank_l == 4 and err_l == pytest.approx(err_f, rel=1e-3)
    assert float((up_f @ down_f - up_l @ down_l).norm() / (up_f @ down_f).norm()) < 1e-2
    # energy: the exact total (Frobenius norm) picks the same rank either way
    assert low_rank(d, 8, 0.5, 1.0, "full")[2] == low_rank(d, 8, 0.5, 1.0, "lowrank")[2] < 6
