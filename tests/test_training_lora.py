"""LoRA modules, hooks, kohya file round trip with metadata, and continuing from a file."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from animekit.training.config import TrainConfig, ModelConfig, SaveConfig
from animekit.training.data.dataset import DatasetConfig, FolderSpec
from animekit.training.lora_file import load_into_network, lora_dims, read_lora, save_lora
from animekit.training.lora_network import LoraModule, LoraNetwork, build_network, find_targets, kohya_name
from animekit.training.metadata import RunFacts, addnet_hashes, modelspec_metadata, training_metadata

torch.set_num_threads(1)


class Block(nn.Module):
    """Stands in for a Transformer2DModel: the class name is what kohya's selection matches."""

    def __init__(self):
        super().__init__()
        self.to_q = nn.Linear(4, 6)
        self.proj = nn.Conv2d(4, 4, 1)
        self.conv = nn.Conv2d(4, 8, 3, stride=2, padding=1)


class Transformer2DModel(Block):
    pass


class Root(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([Transformer2DModel(), Block()])


def test_lora_adds_scaled_up_down_beside_a_linear():
    torch.manual_seed(0)
    base = nn.Linear(3, 2)
    lora = LoraModule(base, rank=2, alpha=1.0)
    assert torch.count_nonzero(lora.lora_up.weight) == 0  # zero-initialised up: no change at start
    with torch.no_grad():
        lora.lora_down.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]))
        lora.lora_up.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]]))
    network = LoraNetwork()
    network.add("lora_unet_x", "unet", base, 2, 1.0)
    network.lora_unet_x.load_state_dict(lora.state_dict())
    x = torch.tensor([[1.0, 2.0, 3.0]])
    plain = base(x)
    network.attach()
    # down(x) = [1, 5]; up = [1 + 10, -5]; scale = alpha / rank = 0.5
    assert torch.allclose(base(x), plain + torch.tensor([[5.5, -2.5]]))
    network.detach()
    assert torch.equal(base(x), plain)


def test_conv_lora_copies_kernel_stride_padding_and_keeps_output_shape():
    base = nn.Conv2d(4, 8, 3, stride=2, padding=1)
    lora = LoraModule(base, rank=2, alpha=2.0)
    assert lora.lora_down.weight.shape == (2, 4, 3, 3) and lora.lora_up.weight.shape == (8, 2, 1, 1)
    x = torch.randn(1, 4, 8, 8)
    assert lora(x).shape == base(x).shape == (1, 8, 4, 4)


def test_find_targets_selects_layers_inside_named_containers_only():
    root = Root()
    targets = find_targets(root, "unet", ["Transformer2DModel"])
    assert [t.path for t in targets] == ["blocks.0.to_q", "blocks.0.proj", "blocks.0.conv"]
    assert [t.is_conv3x3 for t in targets] == [False, False, True]
    network = build_network(targets, {"unet": "lora_unet"}, rank=4, alpha=2, conv_rank=0, conv_alpha=1, dropout=0)
    assert sorted(network.modules_by_name()) == ["lora_unet_blocks_0_proj", "lora_unet_blocks_0_to_q"]
    network = build_network(targets, {"unet": "lora_unet"}, rank=4, alpha=2, conv_rank=3, conv_alpha=1.5, dropout=0)
    conv = network.modules_by_name()["lora_unet_blocks_0_conv"]
    assert conv.rank == 3 and float(conv.alpha) == 1.5 and conv.scale == 0.5


def test_network_state_dict_is_the_kohya_layout():
    root = Root()
    network = build_network(find_targets(root, "unet", ["Transformer2DModel"]), {"unet": "lora_unet"}, 4, 2.0, 0, 1, 0)
    keys = set(network.state_dict())
    assert keys == {
        "lora_unet_blocks_0_to_q.lora_down.weight", "lora_unet_blocks_0_to_q.lora_up.weight", "lora_unet_blocks_0_to_q.alpha",
        "lora_unet_blocks_0_proj.lora_down.weight", "lora_unet_blocks_0_proj.lora_up.weight", "lora_unet_blocks_0_proj.alpha",
    }  # fmt: skip
    assert network.state_dict()["lora_unet_blocks_0_to_q.alpha"].shape == ()
    assert kohya_name("lora_te1", "text_model.encoder.layers.0.self_attn.q_proj") == "lora_te1_text_model_encoder_layers_0_self_attn_q_proj"


def test_dropout_acts_in_training_only():
    base = nn.Linear(8, 8)
    lora = LoraModule(base, rank=8, alpha=8.0, dropout=0.5)
    nn.init.ones_(lora.lora_up.weight)
    x = torch.ones(1, 8)
    lora.eval()
    first = lora(x)
    assert torch.equal(first, lora(x))
    lora.train()
    torch.manual_seed(0)
    assert not torch.equal(lora(x), first)


def small_config(tmp_path) -> TrainConfig:
    return TrainConfig(
        model=ModelConfig(path=str(tmp_path)),
        dataset=DatasetConfig(folders=(FolderSpec(str(tmp_path)),)),
        save=SaveConfig(output_dir=str(tmp_path), name="mylora"),
    )


def test_lora_file_round_trip_with_metadata(tmp_path):
    torch.manual_seed(1)
    root = Root()
    network = build_network(find_targets(root, "unet", ["Transformer2DModel"]), {"unet": "lora_unet"}, 4, 2.0, 0, 1, 0)
    for p in network.parameters():
        nn.init.normal_(p)
    cfg = small_config(tmp_path)
    facts = RunFacts(arch="sdxl", prediction_type="epsilon", base_model_name="base", tag_frequency={"10_x": {"1girl": 3}})
    metadata = {
        **training_metadata(cfg, facts, step=12, epoch=2, lora=True),
        **modelspec_metadata(cfg, facts, lora=True, title="mylora"),
    }
    path = save_lora(network, tmp_path / "mylora.safetensors", metadata, torch.float16)
    tensors, meta = read_lora(path)
    assert set(tensors) == set(network.state_dict())
    for key, value in network.state_dict().items():
        assert tensors[key].dtype == torch.float16
        assert torch.equal(tensors[key], value.to(torch.float16))
    assert meta["ss_network_dim"] == "16" and meta["ss_network_alpha"] == "8.0"
    assert meta["ss_network_module"] == "networks.lora"
    assert meta["ss_steps"] == "12" and meta["ss_epoch"] == "2"
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0"
    assert json.loads(meta["ss_tag_frequency"]) == {"10_x": {"1girl": 3}}
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert meta["modelspec.implementation"] == "https://github.com/Stability-AI/generative-models"
    assert meta["modelspec.prediction_type"] == "epsilon"
    assert meta["modelspec.title"] == "mylora" and meta["modelspec.resolution"] == "1024x1024"
    assert meta["sshs_model_hash"] == addnet_hashes(tensors, metadata)["sshs_model_hash"]
    assert lora_dims(tensors) == {"lora_unet_blocks_0_to_q": (4, 2.0), "lora_unet_blocks_0_proj": (4, 2.0)}


def test_sd15_and_v_prediction_modelspec(tmp_path):
    cfg = small_config(tmp_path)
    meta = modelspec_metadata(cfg, RunFacts(arch="sd15", prediction_type="v_prediction"), lora=False, title="ckpt")
    assert meta["modelspec.architecture"] == "stable-diffusion-v1"
    assert meta["modelspec.prediction_type"] == "v"
    lora_meta = modelspec_metadata(cfg, RunFacts(arch="sd15", prediction_type="epsilon"), lora=True, title="l")
    assert lora_meta["modelspec.implementation"] == "diffusers"


def test_continuing_loads_weights_and_refuses_foreign_modules(tmp_path):
    root = Root()
    targets = find_targets(root, "unet", ["Transformer2DModel"])
    source = build_network(targets, {"unet": "lora_unet"}, 2, 1.0, 3, 1.0, 0)
    for p in source.parameters():
        nn.init.normal_(p)
    tensors = {k: v.clone() for k, v in source.state_dict().items()}
    dims = lora_dims(tensors)
    assert dims["lora_unet_blocks_0_conv"] == (3, 1.0)
    target = build_network(targets, {"unet": "lora_unet"}, 8, 8.0, 3, 1.0, 0, dims=dims)
    assert load_into_network(target, tensors, "file") == []
    for key, value in tensors.items():
        assert torch.equal(target.state_dict()[key], value)

    without_conv = build_network(targets, {"unet": "lora_unet"}, 2, 1.0, 0, 1.0, 0)
    with pytest.raises(ValueError, match="lora_unet_blocks_0_conv"):
        load_into_network(without_conv, tensors, "file")
    with pytest.raises(ValueError, match="not a kohya LoRA key"):
        lora_dims({"lora_unet_x.hada_w1_a": torch.zeros(1)})
