"""ComfyUI MODEL / CLIP / VAE behind the trainer's protocols (nodes/train_adapter.py), on real ComfyUI objects.

Every check compares against ComfyUI itself: its model call, its text encoding, its VAE, its LoRA key map.
"""

from __future__ import annotations

import pytest
import torch

from support.comfy_models import TINY_UNET, TinyModels, tiny_clip, tiny_model_patcher, tiny_models, tiny_sd1, tiny_vae
from support.train_nodes import comfy_prediction, literal, pack, sdxl_adm

pytestmark = pytest.mark.host


def sizes_for(host, batch: int):
    protocols = pack(host, "training.protocols")
    original = torch.tensor([[64, 64], [80, 48]])[:batch]
    crop = torch.tensor([[0, 0], [4, 8]])[:batch]
    target = torch.tensor([[64, 64], [64, 64]])[:batch]
    return protocols.SizeConditioning(original, crop, target)


def reference(models, x, t, text, sizes):
    y = sdxl_adm(models.model, text.pooled, sizes) if models.arch == "sdxl" else None
    return comfy_prediction(models.model, x, t, text.hidden_states, y)


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_bundle_describes_the_model(comfy_host, arch):
    adapter = pack(comfy_host, "nodes.training.adapter")
    objective = pack(comfy_host, "training.objective")
    config = pack(comfy_host, "training.config")
    models = tiny_models(arch)
    bundle = adapter.build_bundle(models.model, models.clip, models.vae)
    assert (bundle.arch, bundle.prediction_type) == (arch, "epsilon")
    assert bundle.text_encoders.parts == (("te1",) if arch == "sd15" else ("te1", "te2"))
    # the trainer's DDPM schedule is exactly the one behind ComfyUI's sigmas
    alphas = objective.Objective(config.ObjectiveConfig(), bundle.noise_schedule, "epsilon").alphas_cumprod
    sigmas = models.model.get_model_object("model_sampling").sigmas
    torch.testing.assert_close(alphas.float(), 1.0 / (1.0 + sigmas.float() ** 2), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_denoiser_and_text_match_comfyui(comfy_host, arch):
    adapter = pack(comfy_host, "nodes.training.adapter")
    models = tiny_models(arch, seed=3)
    bundle = adapter.build_bundle(models.model, models.clip, models.vae)
    captions = ["1girl, solo, long hair", "ishtar (fate), smile, " + ", ".join(f"tag{i}" for i in range(40)), ""]
    text = bundle.text_encoders.encode(captions, torch.device("cpu"))
    lengths = []
    for i, caption in enumerate(captions):
        cond, pooled = models.clip.encode_from_tokens(models.clip.tokenize(literal(caption)), return_pooled=True)
        length = cond.shape[1]
        lengths.append(length)
        torch.testing.assert_close(text.hidden_states[i : i + 1, :length], cond, rtol=1e-5, atol=1e-5)
        if arch == "sdxl":
            torch.testing.assert_close(text.pooled[i : i + 1], pooled, rtol=1e-5, atol=1e-5)
    # the long caption needs several 77-token chunks; the short one is repeated to match (ComfyUI's batching rule)
    assert lengths[0] == lengths[2] == 77 and lengths[1] in (154, 231) and text.hidden_states.shape[1] == lengths[1]
    torch.testing.assert_close(text.hidden_states[0, :77], text.hidden_states[0, -77:])

    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([15, 730])
    sizes = sizes_for(comfy_host, 2)
    text = bundle.text_encoders.encode(captions[:2], torch.device("cpu"))
    with torch.no_grad():
        ours = bundle.denoiser(x, t, text, sizes)
    torch.testing.assert_close(ours, reference(models, x, t, text, sizes), rtol=1e-4, atol=1e-4)


def test_v_prediction_zero_terminal_snr_model(comfy_host):
    import comfy_extras.nodes_model_advanced as advanced

    adapter = pack(comfy_host, "nodes.training.adapter")
    models = tiny_sd1(seed=1)
    (patched,) = advanced.ModelSamplingDiscrete().patch(models.model, "v_prediction", True)
    models.model = patched
    bundle = adapter.build_bundle(patched, models.clip, models.vae)
    assert bundle.prediction_type == "v_prediction" and bundle.extras["zero_terminal_snr"] is True
    text = bundle.text_encoders.encode(["1girl", "1boy"], torch.device("cpu"))
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([100, 900])
    with torch.no_grad():
        ours = bundle.denoiser(x, t, text, None)
    torch.testing.assert_close(ours, reference(models, x, t, text, None), rtol=1e-4, atol=1e-4)


def test_unsupported_models_are_refused_by_name(comfy_host):
    import comfy.model_patcher
    import comfy.supported_models as sm

    adapter = pack(comfy_host, "nodes.training.adapter")
    config = sm.SD20(dict(TINY_UNET["sd15"]))
    config.unet_config.update({"num_heads": 2, "num_head_channels": -1})
    with torch.inference_mode():
        base = config.get_model({})
    model = comfy.model_patcher.ModelPatcher(base, torch.device("cpu"), torch.device("cpu"))
    with pytest.raises(ValueError, match=r"^model: the AnimeKit trainer supports SD1.5 and SDXL .* this MODEL is SD20"):
        adapter.model_arch(model)
    sd1 = tiny_sd1()
    with pytest.raises(ValueError, match="^clip: no CLIP connected"):
        adapter.build_bundle(sd1.model, None, sd1.vae)


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_every_lora_target_is_a_key_comfyui_maps_to_that_layer(comfy_host, arch):
    import comfy.lora

    adapter = pack(comfy_host, "nodes.training.adapter")
    lora_network = pack(comfy_host, "training.lora_network")
    models = tiny_models(arch)
    bundle = adapter.build_bundle(models.model, models.clip, models.vae)
    key_map = comfy.lora.model_lora_keys_unet(models.model.model, {})
    key_map = comfy.lora.model_lora_keys_clip(models.clip.cond_stage_model, key_map)
    weights = {
        **{f"diffusion_model.{n}": p for n, p in models.model.model.diffusion_model.named_parameters()},
        **{n: p for n, p in models.clip.cond_stage_model.named_parameters()},
    }
    targets = bundle.denoiser.lora_targets(include_conv=True)
    targets += [t for part in bundle.text_encoders.parts for t in bundle.text_encoders.lora_targets(part)]
    names = [lora_network.kohya_name(lora_network.PREFIXES[arch][t.part], t.path) for t in targets]
    assert len(set(names)) == len(names)
    for name, target in zip(names, targets):
        assert name in key_map, name
        assert weights[key_map[name]] is target.module.weight, name  # the key lands on the very layer we train
    parts = {t.part for t in targets}
    assert parts == ({"unet", "te1"} if arch == "sd15" else {"unet", "te1", "te2"})
    if arch == "sd15":  # kohya's SD1.5 files use diffusers module names, SDXL files the ldm ones
        assert "lora_unet_down_blocks_0_attentions_0_proj_in" in names
        assert "lora_unet_up_blocks_3_resnets_2_conv1" in names
        assert "lora_te_text_model_encoder_layers_0_self_attn_q_proj" in names
    else:
        assert "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q" in names
        assert "lora_te2_text_model_encoder_layers_2_mlp_fc2" in names
    attention_only = bundle.denoiser.lora_targets(include_conv=False)
    assert attention_only and all(".transformer_blocks." in t.path or "proj_" in t.path for t in attention_only)


def test_vae_encode_matches_comfyui_and_scales_latents(comfy_host):
    adapter = pack(comfy_host, "nodes.training.adapter")
    models = tiny_sd1()
    bundle = adapter.build_bundle(models.model, models.clip, models.vae)
    pixels = torch.rand(2, 3, 64, 48, generator=torch.Generator().manual_seed(2)) * 2 - 1
    ours = bundle.vae.encode(pixels)
    theirs = models.vae.encode(((pixels + 1) / 2).movedim(1, -1)) * 0.18215  # SD1.5's latent scale
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert bundle.vae.identity == adapter.vae_identity(tiny_sd1().vae) != adapter.vae_identity(tiny_sd1(seed=9).vae)


def test_session_trains_inference_tensors_and_restores_everything(comfy_host):
    adapter = pack(comfy_host, "nodes.training.adapter")
    sessions = pack(comfy_host, "nodes.training.session")
    lora_network = pack(comfy_host, "training.lora_network")
    with torch.inference_mode():  # as a loader node builds them
        models = TinyModels("sd15", tiny_model_patcher("sd15", 4), tiny_clip("sd15", 4), tiny_vae(4))
    unet = models.model.model.diffusion_model
    assert next(unet.parameters()).is_inference()
    bundle = adapter.build_bundle(models.model, models.clip, models.vae)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([500])
    text = bundle.text_encoders.encode(["1girl"], torch.device("cpu"))
    with torch.no_grad():
        before = bundle.denoiser(x, t, text, None)
    snapshot = {n: (p.detach().clone(), p.requires_grad) for n, p in unet.named_parameters()}
    modes = [m.training for m in unet.modules()]
    session = sessions.training_session(bundle, torch.bfloat16)
    with session.active():
        targets = bundle.denoiser.lora_targets(False) + bundle.text_encoders.lora_targets("te1")
        network = lora_network.build_network(targets, lora_network.PREFIXES["sd15"], 4, 4.0, 0, 1.0, 0.0)
        network.attach()
        for module in session.modules():  # what the trainer does: cast frozen weights, checkpoint, train mode
            module.to(torch.bfloat16).train()
        bundle.denoiser.enable_gradient_checkpointing()
        bundle.text_encoders.enable_gradient_checkpointing()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cond = bundle.text_encoders.encode(["1girl, solo"], torch.device("cpu"))
            loss = bundle.denoiser(x, t, cond, None).float().square().mean()
        loss.backward()
        modules = network.modules_by_name()
        assert all(p.grad is not None for m in modules.values() for p in m.parameters())
        # up weights start at zero, so the first gradient reaches them (text encoder layers included)
        assert all(m.lora_up.weight.grad.abs().sum() > 0 for name, m in modules.items() if "lora_te" in name)
    # every shared tensor is back: values (bf16 rounding undone from the backup), dtype, grad flag, no hooks, mode
    for name, param in unet.named_parameters():
        value, requires_grad = snapshot[name]
        assert param.dtype == torch.float32 and param.requires_grad == requires_grad
        assert torch.equal(param, value), name
    assert not any(m._forward_hooks for m in unet.modules())
    assert not any("forward" in m.__dict__ for m in models.clip.cond_stage_model.modules())
    assert [m.training for m in unet.modules()] == modes
    with torch.no_grad():
        after = bundle.denoiser(x, t, bundle.text_encoders.encode(["1girl"], torch.device("cpu")), None)
    assert torch.equal(before, after)


def test_private_copies_bake_patches_and_leave_the_input_alone(comfy_host):
    import comfy.model_management

    copies = pack(comfy_host, "nodes.training.copies")
    models = tiny_sd1(seed=5)
    key = "diffusion_model.input_blocks.1.1.proj_in.weight"
    weight = models.model.model.diffusion_model.input_blocks[1][1].proj_in.weight
    original = weight.detach().clone()
    patched_model = models.model.clone()
    patched_model.add_patches({key: (torch.ones_like(original),)}, 0.5)
    copy = copies.private_model(patched_model)
    copied = copy.model.diffusion_model.input_blocks[1][1].proj_in.weight
    assert copied is not weight
    torch.testing.assert_close(copied, original + 0.5)
    with torch.no_grad():
        copied.add_(1.0)  # training the copy...
    comfy.model_management.unload_all_models()
    assert torch.equal(models.model.model.diffusion_model.input_blocks[1][1].proj_in.weight, original)  # ...not the input
    assert copy.get_model_object("model_sampling") is not None and copy.patches == {}
    clip = copies.private_clip(models.clip)
    assert clip.cond_stage_model is not models.clip.cond_stage_model and clip.tokenizer is models.clip.tokenizer
    a = [p for p in clip.cond_stage_model.parameters()][5]
    b = [p for p in models.clip.cond_stage_model.parameters()][5]
    assert a is not b and torch.equal(a, b)
    cond_a = clip.encode_from_tokens(clip.tokenize("1girl"))
    cond_b = models.clip.encode_from_tokens(models.clip.tokenize("1girl"))
    assert torch.equal(cond_a, cond_b)
