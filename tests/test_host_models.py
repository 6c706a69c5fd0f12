"""Tiny real ComfyUI models sample on CPU; full-size random checkpoints load as the real model types."""

from __future__ import annotations

import gc
import re

import pytest
import torch

from support import checkpoints
from support.comfy_models import TINY_UNET, tiny_models, tiny_sd1, tiny_sdxl, write_full_checkpoint

pytestmark = pytest.mark.host


def _txt2img(models, text="1girl, solo", seed=0):
    import comfy.sample

    with torch.inference_mode():
        positive = models.clip.encode_from_tokens_scheduled(models.clip.tokenize(text))
        negative = models.clip.encode_from_tokens_scheduled(models.clip.tokenize("lowres"))
        latent = torch.zeros(1, 4, 8, 8)
        noise = comfy.sample.prepare_noise(latent, seed)
        samples = comfy.sample.sample(models.model, noise, 2, 5.0, "euler", "normal", positive, negative, latent, seed=seed)
        return positive, samples, models.vae.decode(samples)


@pytest.mark.parametrize(("build", "context", "pooled"), [(tiny_sd1, 32, 32), (tiny_sdxl, 64, 32)])
def test_tiny_models_encode_sample_and_decode(comfy_host, build, context, pooled):
    positive, samples, image = _txt2img(build(seed=0))
    cond, extra = positive[0]
    assert cond.shape == (1, 77, context) and extra["pooled_output"].shape == (1, pooled)
    assert samples.shape == (1, 4, 8, 8) and not samples.isnan().any()
    assert image.shape == (1, 64, 64, 3) and not image.isnan().any()
    assert 0.0 <= image.min() and image.max() <= 1.0


def test_tiny_models_are_real_comfyui_objects(comfy_host):
    import comfy.model_base
    import comfy.model_patcher
    import comfy.sd
    import comfy.sd1_clip
    import comfy.sdxl_clip
    import comfy.supported_models

    sd1, sdxl = tiny_sd1(), tiny_sdxl()
    assert isinstance(sd1.model, comfy.model_patcher.ModelPatcher)
    assert type(sd1.model.model.model_config) is comfy.supported_models.SD15
    assert type(sdxl.model.model) is comfy.model_base.SDXL
    assert type(sdxl.model.model.model_config) is comfy.supported_models.SDXL
    assert isinstance(sd1.clip, comfy.sd.CLIP) and isinstance(sd1.vae, comfy.sd.VAE)
    assert isinstance(sd1.clip.cond_stage_model, comfy.sd1_clip.SD1ClipModel)
    assert isinstance(sdxl.clip.cond_stage_model, comfy.sdxl_clip.SDXLClipModel)
    assert sdxl.clip.tokenize("1girl").keys() == {"l", "g"}
    # UNet keys follow the real naming, so block / LoRA key logic sees the real structure
    keys = sdxl.model.get_key_patches("diffusion_model.").keys()
    assert "diffusion_model.label_emb.0.0.weight" in keys
    assert "diffusion_model.input_blocks.8.1.transformer_blocks.1.attn2.to_k.weight" in keys
    assert "diffusion_model.output_blocks.5.1.proj_out.weight" in keys
    assert not any(k.startswith("diffusion_model.input_blocks.9.") for k in keys)
    sd1_keys = sd1.model.get_key_patches("diffusion_model.").keys()
    assert "diffusion_model.input_blocks.11.0.in_layers.0.weight" in sd1_keys
    assert "diffusion_model.output_blocks.11.1.transformer_blocks.0.attn1.to_q.weight" in sd1_keys
    real = {k.removeprefix("model.") for k, _, _ in checkpoints.layout("sd15") if k.startswith("model.diffusion_model.")}
    assert set(sd1_keys) == real  # every real SD1.5 UNet key, no other
    real_xl = {k.removeprefix("model.") for k, _, _ in checkpoints.layout("sdxl") if k.startswith("model.diffusion_model.")}
    assert set(keys) == {k for k in real_xl if not re.search(r"transformer_blocks\.[2-9]\.", k)}


def test_tiny_weights_are_deterministic_per_seed(comfy_host):
    a, b, c = tiny_sd1(seed=5), tiny_sd1(seed=5), tiny_sd1(seed=6)
    for x, y, z in ((a.model.model, b.model.model, c.model.model), (a.clip.cond_stage_model, b.clip.cond_stage_model, c.clip.cond_stage_model)):
        for (name, p), q, r in zip(x.named_parameters(), y.parameters(), z.parameters()):
            assert torch.equal(p, q), name
            assert not torch.equal(p, r), name
    assert torch.equal(_txt2img(a)[2], _txt2img(b)[2])


def test_tiny_weights_are_not_inference_tensors(comfy_host):
    with torch.inference_mode():
        models = tiny_models("sdxl", 1)
    params = [*models.model.model.parameters(), *models.clip.cond_stage_model.parameters(), *models.vae.first_stage_model.parameters()]
    assert params and not any(p.is_inference() for p in params)


def test_unknown_tiny_arch_is_refused(comfy_host):
    with pytest.raises(ValueError, match="sd15, sdxl"):
        tiny_models("flux")


def test_tiny_unet_configs_are_not_detected_as_real_models(comfy_host):
    # documents why prompts use the AnimeKitTest_TinyModels node, not tiny checkpoint files
    import comfy.model_detection

    for arch in TINY_UNET:
        sd = {f"model.diffusion_model.{k}": v for k, v in tiny_models(arch).model.model.diffusion_model.state_dict().items()}
        assert comfy.model_detection.model_config_from_unet(sd, "model.diffusion_model.") is None


@pytest.mark.slow
def test_full_size_sd15_checkpoint_loads_as_sd15_and_samples(comfy_host, tmp_path):
    import comfy.sample
    import comfy.sd
    import comfy.supported_models

    path = write_full_checkpoint(tmp_path / "sd15.safetensors", "sd15", seed=1)
    try:
        model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(
            str(path), model_options={"dtype": torch.float16}, te_model_options={"dtype": torch.float16}
        )
        assert type(model.model.model_config) is comfy.supported_models.SD15
        expected = dict(checkpoints.iter_tensors("sd15", full_size=True, seed=1))
        loaded = model.model.diffusion_model.state_dict()["input_blocks.0.0.weight"]
        assert torch.equal(loaded, expected["model.diffusion_model.input_blocks.0.0.weight"])
        with torch.inference_mode():
            positive = clip.encode_from_tokens_scheduled(clip.tokenize("1girl"))
            assert positive[0][0].shape == (1, 77, 768)
            latent = torch.zeros(1, 4, 8, 8)
            noise = comfy.sample.prepare_noise(latent, 0)
            samples = comfy.sample.sample(model, noise, 1, 1.0, "euler", "normal", positive, positive, latent, seed=0)
            image = vae.decode(samples)
        assert not samples.isnan().any() and image.shape == (1, 64, 64, 3) and not image.isnan().any()
    finally:
        del model, clip, vae
        gc.collect()
        path.unlink(missing_ok=True)


@pytest.mark.slow
def test_full_size_sdxl_checkpoint_is_detected_as_sdxl(comfy_host, tmp_path):
    # ~7 GB file; the UNet (5 GB in fp16) is not instantiated, to keep RAM low on shared CI machines
    import comfy.model_detection
    import comfy.sd
    import comfy.sdxl_clip
    import comfy.supported_models
    import comfy.utils

    path = write_full_checkpoint(tmp_path / "sdxl.safetensors", "sdxl", seed=2)
    try:
        sd = comfy.utils.load_torch_file(str(path))  # memory-mapped
        config = comfy.model_detection.model_config_from_unet(sd, "model.diffusion_model.")
        assert type(config) is comfy.supported_models.SDXL
        del sd
        _, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(
            str(path), output_model=False, te_model_options={"dtype": torch.float16}
        )
        assert isinstance(clip.cond_stage_model, comfy.sdxl_clip.SDXLClipModel)
        with torch.inference_mode():
            cond = clip.encode_from_tokens_scheduled(clip.tokenize("1girl"))[0]
        assert cond[0].shape == (1, 77, 2048) and cond[1]["pooled_output"].shape == (1, 1280)
        assert vae.first_stage_model is not None
    finally:
        clip = vae = None
        gc.collect()
        path.unlink(missing_ok=True)
