"""ComfyUI's own LoRA loader maps every module of our kohya-format files for the REAL SD1.5 / SDXL
layouts (host tier: needs ComfyUI). The UNet key map comes from ComfyUI's model detection run on
the real key list with real shapes (meta tensors), so no multi-GB model is built."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from animekit.training.adapters.diffusers_models import ClipTextEncoders, DiffusersDenoiser
from animekit.training.adapters.reference_models import build_reference_models
from animekit.training.adapters.reference_models import reference_config
from animekit.training.lora_network import PREFIXES, kohya_name
from animekit.training.unet_names import block_prefix_pairs, layout_from_ldm_config
from support.checkpoints import layout

UNET = "model.diffusion_model."
CLIP_NAMES = {"sd15": {"te1": "clip_l"}, "sdxl": {"te1": "clip_l", "te2": "clip_g"}}


class StandIn:
    """What comfy.lora's key-map functions read from a model: state_dict() keys and model_config."""

    def __init__(self, keys, unet_config=None):
        self._keys = keys
        self.model_config = SimpleNamespace(unet_config=unet_config)

    def state_dict(self):
        return dict.fromkeys(self._keys)


@pytest.mark.host
@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_comfyui_lora_loader_maps_every_module_we_write(comfy_host, arch):
    import comfy.lora
    import comfy.model_detection

    real = {key: shape for key, shape, _ in layout(arch)}
    meta = {key: torch.empty(shape, device="meta") for key, shape in real.items()}
    unet_config = comfy.model_detection.detect_unet_config(meta, UNET)
    unet_keys = ["diffusion_model." + k[len(UNET):] for k in real if k.startswith(UNET)]
    key_map = comfy.lora.model_lora_keys_unet(StandIn(unet_keys, unet_config), {})

    unet, texts, _ = build_reference_models(arch, "meta")
    encoders = ClipTextEncoders(arch, [None] * len(texts), texts)
    clip_keys = [
        f"{CLIP_NAMES[arch][part]}.transformer.{target.path}.weight"
        for part in encoders.parts
        for target in encoders.lora_targets(part)
    ]
    key_map = comfy.lora.model_lora_keys_clip(StandIn(clip_keys), key_map)

    targets = [("unet", t) for t in DiffusersDenoiser(unet, arch).lora_targets(include_conv=True)]
    targets += [(part, t) for part in encoders.parts for t in encoders.lora_targets(part)]
    lora = {}
    for part, target in targets:
        name = kohya_name(PREFIXES[arch][part], target.path)
        lora[f"{name}.lora_down.weight"] = torch.zeros(1, 1)
        lora[f"{name}.lora_up.weight"] = torch.zeros(1, 1)
        lora[f"{name}.alpha"] = torch.tensor(1.0)
    patches = comfy.lora.load_lora(lora, key_map)

    assert len(patches) == len(targets) == {"sd15": 278 + 72, "sdxl": 788 + 72 + 192}[arch]
    for part, target in targets:
        if part != "unet":
            continue
        name = kohya_name("lora_unet", target.path)
        weight_key = key_map[name]  # "diffusion_model.<ldm path>.weight": the layer ComfyUI patches
        assert weight_key in patches
        assert real[UNET + weight_key[len("diffusion_model."):]] == tuple(target.module.weight.shape)


@pytest.mark.host
@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_comfyui_unet_config_gives_the_same_name_map(comfy_host, arch):
    """A ComfyUI MODEL's unet_config (ldm style) yields exactly the diffusers config's ldm <-> diffusers map."""
    import comfy.model_detection

    meta = {key: torch.empty(shape, device="meta") for key, shape, _ in layout(arch)}
    comfy_config = comfy.model_detection.detect_unet_config(meta, UNET)
    assert block_prefix_pairs(layout_from_ldm_config(comfy_config)) == block_prefix_pairs(reference_config(arch)["unet"])
