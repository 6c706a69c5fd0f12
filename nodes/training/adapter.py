"""ComfyUI's MODEL / CLIP / VAE behind the trainer's protocols (training/protocols.py).

The denoiser is the MODEL's own ldm UNet (`BaseModel.diffusion_model`) called on DDPM integer
timesteps, so the loop trains in the noise / velocity space the model predicts (ComfyUI's
TrainLoraNode trains in x0 space instead). Text goes through ComfyUI's own tokenizer and
`encode_token_weights`, so training sees exactly the conditioning CLIPTextEncode will give at
sampling time (same clip skip, same 75-token chunking); caption text is taken literally
(`disable_weights`), because Danbooru tags such as `ishtar (fate)` are not prompt weights.

LoRA target paths are kohya's: diffusers module paths for the SD1.5 UNet (through ComfyUI's own
`comfy.utils.unet_to_diffusers`, the table its LoRA loader maps with), ldm paths for SDXL, and
`text_model.encoder.layers.N...` for CLIP-L / CLIP-G — so comfy.lora maps every saved key.

Nothing here changes the input objects for good: forward replacements (gradient checkpointing,
differentiable CLIP layers) are recorded in an `Undo` that train_session.TrainingSession runs.
"""

from __future__ import annotations

import hashlib
import math
from typing import Callable

import torch
from torch import nn

import comfy.model_base
import comfy.model_sampling
import comfy.supported_models
import comfy.utils

from ...checkpoints.architecture import SD15, SDXL
from ...checkpoints.keys import COMFY_CLIP_PREFIXES, TEXT_ENCODER_PREFIXES
from ...training.lora_network import LoraTarget, find_targets
from ...training.objective import NoiseSchedule
from ...training.protocols import ModelBundle, SizeConditioning, TextConditioning
from .session import Undo

UNET_ATTENTION_CLASSES = ("SpatialTransformer",)  # kohya: Transformer2DModel
UNET_CONV_CLASSES = ("ResBlock", "Downsample", "Upsample")  # kohya: ResnetBlock2D, Downsample2D, Upsample2D
TEXT_CLASSES = ("CLIPAttention", "CLIPMLP")
UNET_CHECKPOINT_CLASSES = ("ResBlock", "SpatialTransformer")  # diffusers' granularity: each resnet and attention block
TEXT_CHECKPOINT_CLASSES = ("CLIPLayer",)
CHUNK_TOKENS = 75
# architecture -> trainer part -> the ComfyUI CLIP attribute holding it ("clip_l", "clip_g")
TEXT_PARTS = {
    arch: {part: COMFY_CLIP_PREFIXES[part].rstrip(".") for part in parts} for arch, parts in TEXT_ENCODER_PREFIXES.items()
}


# ------------------------------------------------------------------------------ what the MODEL is


def model_arch(model) -> str:
    """"sd15" or "sdxl" for a ComfyUI MODEL; ValueError naming the input for anything else."""
    base = getattr(model, "model", None)
    config = getattr(base, "model_config", None)
    unet = getattr(config, "unet_config", {}) or {}
    name = type(config).__name__ if config is not None else type(base).__name__
    if unet.get("in_channels", 4) == 4 and config is not None:
        if type(base) is comfy.model_base.SDXL and isinstance(config, comfy.supported_models.SDXL):
            return SDXL.name
        if type(base) is comfy.model_base.BaseModel and type(config) is comfy.supported_models.SD15:
            return SD15.name
    raise ValueError(
        f"model: the AnimeKit trainer supports SD1.5 and SDXL models (Animagine, Pony, NoobAI, Illustrious ...); "
        f"this MODEL is {name}"
    )


def prediction_type(model) -> str:
    sampling = model.get_model_object("model_sampling")
    if not isinstance(sampling, comfy.model_sampling.ModelSamplingDiscrete) or isinstance(
        sampling, comfy.model_sampling.ModelSamplingDiscreteEDM
    ):
        raise ValueError(f"model: its sampling ({type(sampling).__name__}) is not the discrete DDPM schedule SD1.5/SDXL train on")
    if isinstance(sampling, comfy.model_sampling.EDM) or not isinstance(sampling, comfy.model_sampling.EPS):
        raise ValueError("model: only epsilon and v-prediction models can be trained")
    return "v_prediction" if isinstance(sampling, comfy.model_sampling.V_PREDICTION) else "epsilon"


def zero_terminal_snr(model) -> bool:
    return bool(getattr(model.get_model_object("model_sampling"), "zsnr", False))


def noise_schedule(model) -> NoiseSchedule:
    """The DDPM betas behind the MODEL's sigmas; ValueError when they are not SD's scaled-linear family."""
    sampling = model.get_model_object("model_sampling")
    settings = model.model.model_config.sampling_settings
    if settings.get("beta_schedule", "linear") != "linear":  # ldm's "linear" is diffusers' "scaled_linear"
        raise ValueError(f"model: beta schedule {settings['beta_schedule']!r} is not supported (SD's scaled-linear only)")
    schedule = NoiseSchedule(
        num_train_timesteps=int(sampling.num_timesteps),
        beta_start=float(sampling.linear_start),
        beta_end=float(sampling.linear_end),
        beta_schedule="scaled_linear",
    )
    expected = schedule_sigmas(schedule, zero_terminal=zero_terminal_snr(model))
    found = sampling.sigmas.detach().float().cpu()
    if expected.shape != found.shape or not torch.allclose(expected, found, rtol=1e-3, atol=1e-4):
        raise ValueError("model: its noise schedule (sigmas) is not one the trainer can reproduce")
    return schedule


def schedule_sigmas(schedule: NoiseSchedule, zero_terminal: bool) -> torch.Tensor:
    """ComfyUI's sigmas for a scaled-linear schedule (what ModelSamplingDiscrete computes)."""
    betas = torch.linspace(schedule.beta_start**0.5, schedule.beta_end**0.5, schedule.num_train_timesteps, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
    if zero_terminal:
        sigmas = comfy.model_sampling.rescale_zero_terminal_snr_sigmas(sigmas)
    return sigmas.float()


# --------------------------------------------------------------------------------------- denoiser


def ldm_to_kohya_sd15(unet_config: dict) -> Callable[[str], str]:
    """ldm module path -> diffusers module path, from the table ComfyUI's LoRA loader itself uses."""
    table = {}
    for diffusers_key, ldm_key in comfy.utils.unet_to_diffusers(unet_config).items():
        if diffusers_key.endswith(".weight") and ldm_key.endswith(".weight"):
            table[ldm_key[: -len(".weight")]] = diffusers_key[: -len(".weight")]

    def rename(path: str) -> str:
        if path not in table:
            raise KeyError(f"no diffusers name for UNet module {path!r}")
        return table[path]

    return rename


def _training_attention(func, *args, **kwargs):
    """PyTorch SDPA for every UNet attention while training, whatever ComfyUI picked for sampling:
    its CPU sub-quadratic attention sizes its chunks by the free memory at call time, so gradient
    checkpointing's recomputation would take a different path than the forward, and SageAttention
    (int8) has no backward. SDPA is also what the headless trainer uses."""
    from comfy.ldm.modules.attention import attention_pytorch

    return attention_pytorch(*args, **kwargs)


def _out_of_place_clip_layer(layer: nn.Module):
    """ComfyUI's CLIPLayer adds its residuals in place (`x += ...`), which autograd cannot
    differentiate through its LayerNorms; the same two sums, out of place."""

    def forward(x, mask=None, optimized_attention=None):
        x = x + layer.self_attn(layer.layer_norm1(x), mask, optimized_attention)
        return x + layer.mlp(layer.layer_norm2(x))

    return forward


class ComfyDenoiser:
    """The MODEL's ldm UNet on DDPM timesteps; SDXL's ADM vector built like `SDXL.encode_adm`."""

    def __init__(self, base_model, arch: str, undo: Undo):
        self.base = base_model
        self.module = base_model.diffusion_model
        self.arch = arch
        self.undo = undo

    def __call__(self, noisy_latents, timesteps, text: TextConditioning, sizes: SizeConditioning | None):
        device = noisy_latents.device
        dtype = self.compute_dtype()
        y = None
        if self.arch == "sdxl":
            if sizes is None or text.pooled is None:
                raise ValueError("SDXL needs pooled text embeddings and size conditioning")
            y = self.adm(text.pooled.to(device), sizes)
        # inputs in the weights' dtype, as ComfyUI's apply_model does, so ops that autocast leaves
        # alone (GroupNorm on the CPU) see one dtype
        out = self.module(
            noisy_latents.to(dtype),
            timesteps.to(device).float(),
            context=text.hidden_states.to(device, dtype),
            y=None if y is None else y.to(dtype),
            transformer_options={"optimized_attention_override": _training_attention},
        )
        return out.float()

    def compute_dtype(self) -> torch.dtype:
        """What the UNet computes in: ComfyUI's manual-cast dtype, else its weights' (the trainer may cast them)."""
        if self.base.manual_cast_dtype is not None:
            return self.base.manual_cast_dtype
        return next(self.module.parameters()).dtype

    def adm(self, pooled: torch.Tensor, sizes: SizeConditioning) -> torch.Tensor:
        """[pooled, emb(h), emb(w), emb(crop top), emb(crop left), emb(target h), emb(target w)] per sample."""
        ids = sizes.time_ids().to(pooled.device)  # [B, 6] in SDXL's order
        embedded = self.base.embedder(ids.flatten()).to(pooled.device)  # [B*6, 256], float32 like ComfyUI's
        return torch.cat([pooled, embedded.reshape(ids.shape[0], -1).to(pooled.dtype)], dim=1)

    def lora_targets(self, include_conv: bool) -> list[LoraTarget]:
        classes = UNET_ATTENTION_CLASSES + (UNET_CONV_CLASSES if include_conv else ())
        rename = ldm_to_kohya_sd15(self.base.model_config.unet_config) if self.arch == "sd15" else (lambda p: p)
        return find_targets(self.module, "unet", classes, rename)

    def enable_gradient_checkpointing(self) -> None:
        self.undo.checkpoint(self.module, UNET_CHECKPOINT_CLASSES)


class ComfyTextEncoders:
    """ComfyUI's CLIP (one or two encoders) with its tokenizer, chunking and clip skip; differentiable.

    A batch is encoded in one forward pass per encoder; the result per caption is what
    `clip.encode_from_tokens(clip.tokenize(caption), return_pooled=True)` gives (tested).
    """

    def __init__(self, clip, arch: str, undo: Undo, max_token_length: int = 225):
        self.clip = clip
        self.arch = arch
        self.undo = undo
        self.parts = tuple(TEXT_PARTS[arch])
        self.max_chunks = max(1, max_token_length // CHUNK_TOKENS)
        for attr in TEXT_PARTS[arch].values():
            if not hasattr(clip.cond_stage_model, attr):
                raise ValueError(f"clip: this CLIP has no {attr} text encoder, which an {arch} model needs")

    def encoder(self, part: str) -> nn.Module:
        return getattr(self.clip.cond_stage_model, TEXT_PARTS[self.arch][part])

    def module(self, part: str) -> nn.Module:
        return self.encoder(part).transformer

    def tokens(self, caption: str) -> dict:
        """ComfyUI's tokens for a caption taken literally (no (tag:1.2) weights), at most max_chunks chunks."""
        tokens = self.clip.tokenize(caption, disable_weights=True)
        return {key: chunks[: self.max_chunks] for key, chunks in tokens.items()}

    def _encode_part(self, part: str, tokens: list[dict]) -> tuple[list[torch.Tensor], torch.Tensor]:
        key = TEXT_PARTS[self.arch][part][-1]  # "clip_l" -> "l"
        rows, counts = [], []
        for caption_tokens in tokens:
            chunks = caption_tokens[key]
            rows += [[token for token, *_ in chunk] for chunk in chunks]
            counts.append(len(chunks))
        hidden, pooled = self.encoder(part).encode(rows)[:2]
        per_caption = [chunks.reshape(1, -1, chunks.shape[-1]) for chunks in hidden.split(counts)]
        firsts = torch.tensor([0] + counts[:-1]).cumsum(0)
        return per_caption, None if pooled is None else pooled[firsts.to(pooled.device)]

    def encode(self, captions: list[str], device) -> TextConditioning:
        model = self.clip.cond_stage_model
        model.reset_clip_options()
        if self.clip.layer_idx is not None:
            model.set_clip_options({"layer": self.clip.layer_idx})
        tokens = [self.tokens(caption) for caption in captions]
        states, pooled = self._encode_part("te1", tokens)
        if self.arch == "sdxl":
            g_states, pooled = self._encode_part("te2", tokens)
            states = [torch.cat([l[:, : min(l.shape[1], g.shape[1])], g[:, : min(l.shape[1], g.shape[1])]], dim=-1)
                      for l, g in zip(states, g_states)]  # fmt: skip
        else:
            pooled = None
        length = math.lcm(*(s.shape[1] for s in states))  # ComfyUI's CONDCrossAttn.concat rule
        hidden = torch.cat([s.repeat(1, length // s.shape[1], 1) for s in states]).to(device)
        return TextConditioning(hidden, None if pooled is None else pooled.to(device))

    def lora_targets(self, part: str) -> list[LoraTarget]:
        return find_targets(self.module(part), part, TEXT_CLASSES)

    def enable_gradient_checkpointing(self) -> None:
        for part in self.parts:
            self.undo.checkpoint(self.module(part), TEXT_CHECKPOINT_CLASSES)

    def make_differentiable(self) -> None:
        """Out-of-place residuals in every CLIP layer (call before gradient checkpointing wraps them)."""
        for part in self.parts:
            for module in self.module(part).modules():
                if type(module).__name__ == "CLIPLayer":
                    self.undo.patch_forward(module, _out_of_place_clip_layer(module))


class ComfyVae:
    """ComfyUI's VAE encoder (distribution mean) followed by the MODEL's latent scaling."""

    def __init__(self, vae, latent_format):
        self.vae = vae
        self.module = vae.first_stage_model
        self.latent_format = latent_format
        self.identity = vae_identity(vae)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        images = ((pixels.float() + 1.0) / 2.0).clamp(0.0, 1.0)  # [-1, 1] NCHW -> ComfyUI's [0, 1]
        param = next(self.module.parameters())  # the trainer may have moved / cast the module
        raw = self.module.encode(self.vae.process_input(images).to(param.device, param.dtype)).float()
        return self.latent_format.process_in(raw)


def vae_identity(vae) -> str:
    """A name for the VAE's weights in latent-cache keys: a digest of its first and last layers."""
    digest = hashlib.sha256()
    state = vae.first_stage_model.state_dict()
    for key in sorted(state)[:2] + sorted(state)[-2:]:
        tensor = state[key].detach().float().cpu().contiguous()
        digest.update(key.encode())
        digest.update(tensor.numpy().tobytes())
    return f"comfyui-vae-{digest.hexdigest()[:16]}"


def build_bundle(model, clip, vae, *, max_token_length: int = 225, name: str = "") -> ModelBundle:
    """The trainer's view of ComfyUI objects (call inside `TrainingSession` to train them)."""
    if model is None:
        raise ValueError("model: no MODEL connected")
    if clip is None:
        raise ValueError("clip: no CLIP connected (the checkpoint has no text encoder; load one with a CLIP loader)")
    arch = model_arch(model)
    undo = Undo()
    encoders = ComfyTextEncoders(clip, arch, undo, max_token_length)
    latent = None if vae is None else ComfyVae(vae, model.get_model_object("latent_format"))
    return ModelBundle(
        arch=arch,
        prediction_type=prediction_type(model),
        denoiser=ComfyDenoiser(model.model, arch, undo),
        text_encoders=encoders,
        vae=latent,
        noise_schedule=noise_schedule(model),
        name=name,
        extras={"model": model, "clip": clip, "vae": vae, "undo": undo, "zero_terminal_snr": zero_terminal_snr(model)},
    )
