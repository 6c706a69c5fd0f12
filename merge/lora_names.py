"""kohya LoRA module names for the weights of a single-file SD1.x / SDXL checkpoint.

kohya names a module after the diffusers / transformers module it patches, dots as underscores:
SD1.x UNet in diffusers naming (``lora_unet_down_blocks_0_attentions_0_proj_in``), SDXL UNet in ldm
naming (``lora_unet_input_blocks_4_1_proj_in``, as sd-scripts' SDXL code writes it), text encoders
``lora_te_`` (SD1.x) / ``lora_te1_`` (SDXL CLIP-L) + the transformers path. The ldm -> diffusers
table is merge/lora_blocks.py's (read the other way round) plus the ResNet renames below.

Which modules a kohya LoRA has (sd-scripts networks/lora.py): every Linear / 1x1 conv inside a
transformer (attention) block and the text encoders' attention / MLP Linears; with conv layers on
(LoCon, ``conv_dim``), also the ResNet blocks and down / up samplers (3x3 convs at the conv rank).
SDXL's OpenCLIP-G text encoder (fused ``in_proj``) is not mapped: its LoRA modules are left out.
"""

from __future__ import annotations

from ..checkpoints.keys import unet_relative

SD1_TEXT = "cond_stage_model.transformer."
SDXL_TEXT_L = "conditioner.embedders.0.transformer."
_RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
           "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
_TEXT_MODULES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2")


def _resnet(prefix: str, rest: str) -> str | None:
    for ldm, diffusers in _RESNET.items():
        if rest == ldm:
            return f"{prefix}.{diffusers}"
    return None


def sd1_unet_module(module: str) -> tuple[str, str] | None:
    """(diffusers module path, kind) for an ldm UNet module path; kind is 'attention' or 'conv'."""
    parts = module.split(".")
    if parts[0] == "input_blocks":
        n, j, rest = int(parts[1]), int(parts[2]), ".".join(parts[3:])
        if n == 0:
            return None  # conv_in: not a kohya target
        level, index = (n - 1) // 3, (n - 1) % 3
        if index == 2:
            return (f"down_blocks.{level}.downsamplers.0.conv", "conv") if rest == "op" else None
        if j == 0:
            path = _resnet(f"down_blocks.{level}.resnets.{index}", rest)
            return (path, "conv") if path else None
        return f"down_blocks.{level}.attentions.{index}.{rest}", "attention"
    if parts[0] == "middle_block":
        j, rest = int(parts[1]), ".".join(parts[2:])
        if j == 1:
            return f"mid_block.attentions.0.{rest}", "attention"
        path = _resnet(f"mid_block.resnets.{0 if j == 0 else 1}", rest)
        return (path, "conv") if path else None
    if parts[0] == "output_blocks":
        n, j, rest = int(parts[1]), int(parts[2]), ".".join(parts[3:])
        level, index = n // 3, n % 3
        if rest == "conv":  # the upsampler: output_blocks.N.1.conv or .2.conv
            return f"up_blocks.{level}.upsamplers.0.conv", "conv"
        if j == 0:
            path = _resnet(f"up_blocks.{level}.resnets.{index}", rest)
            return (path, "conv") if path else None
        return f"up_blocks.{level}.attentions.{index}.{rest}", "attention"
    return None  # time_embed, out: not kohya targets


def sdxl_unet_module(module: str) -> tuple[str, str] | None:
    """(ldm module path, kind): SDXL kohya names keep the ldm path; the kind from the diffusers twin."""
    found = sd1_unet_module(module)
    return (module, found[1]) if found else None


def kohya_module(arch_name: str, key: str) -> tuple[str, str] | None:
    """(kohya module name, kind) for a checkpoint weight key, or None when kohya has no module for it.

    kind: 'attention' (Linear / 1x1 conv at the LoRA rank), 'conv' (ResNet / sampler layers, only with
    conv layers on) or 'text'."""
    if not key.endswith(".weight"):
        return None
    module = key[: -len(".weight")]
    rel = unet_relative(key)
    if rel is not None:
        rel_module = rel[: -len(".weight")]
        found = sd1_unet_module(rel_module) if arch_name == "sd15" else sdxl_unet_module(rel_module)
        if found is None or found[0].rsplit(".", 1)[-1].startswith("norm"):  # norms are not LoRA targets
            return None
        return "lora_unet_" + found[0].replace(".", "_"), found[1]
    for root, head in ((SD1_TEXT, "lora_te_"), (SDXL_TEXT_L, "lora_te1_")):
        if module.startswith(root) and (arch_name == "sd15") == (root == SD1_TEXT):
            inner = module[len(root):]
            if inner.endswith(_TEXT_MODULES) and ".encoder.layers." in inner:
                return head + inner.replace(".", "_"), "text"
    return None
