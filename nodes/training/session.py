"""Training ComfyUI's shared MODEL / CLIP / VAE in place, and giving them back exactly as they were.

A MODEL input is shared with the rest of the graph (and with the loader node's cache), so anything
training does to it is undone afterwards: forward replacements (`Undo`), inference tensors made
ordinary, and the trainer's moves, casts, hooks and train() calls (`ModuleGuard`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.utils.checkpoint
from torch import nn

import comfy.model_management

from ...training.protocols import ModelBundle


class Undo:
    """Instance-level forward replacements on shared modules, all removed again by `undo()`."""

    def __init__(self):
        self.patched: list[tuple[nn.Module, object]] = []  # (module, its previous instance forward or _UNSET)
        self.checkpointed: set[int] = set()

    def patch_forward(self, module: nn.Module, forward) -> None:
        self.patched.append((module, module.__dict__.get("forward", _UNSET)))
        module.forward = forward

    def checkpoint(self, root: nn.Module, classes: tuple[str, ...]) -> None:
        """Recompute each block of `classes` in backward instead of storing its activations."""
        for module in root.modules():
            if type(module).__name__ in classes and id(module) not in self.checkpointed:
                self.checkpointed.add(id(module))
                self.patch_forward(module, _checkpointed(module.forward))

    def undo(self) -> None:
        for module, previous in reversed(self.patched):
            if previous is _UNSET:
                module.__dict__.pop("forward", None)
            else:
                module.forward = previous
        self.patched.clear()
        self.checkpointed.clear()


_UNSET = object()


def _checkpointed(forward):
    def run(*args, **kwargs):
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return run


def ordinary_tensors(module: nn.Module) -> int:
    """Replace inference-mode parameters and buffers by ordinary copies (same values); returns how many.

    Loaders run under torch.inference_mode(), and autograd refuses to save inference tensors for
    backward — even frozen weights a LoRA's gradient flows through.
    """
    replaced = 0
    with torch.inference_mode(False):
        for sub in module.modules():
            for name, param in list(sub._parameters.items()):
                if param is not None and param.is_inference():
                    sub._parameters[name] = nn.Parameter(param.detach().clone(), requires_grad=param.requires_grad)
                    replaced += 1
            for name, buf in list(sub._buffers.items()):
                if buf is not None and buf.is_inference():
                    sub._buffers[name] = buf.clone()
                    replaced += 1
    return replaced


def lossy_cast(source: torch.dtype, target: torch.dtype) -> bool:
    """Whether casting source -> target -> source can change values (float16 <-> bfloat16, any narrowing)."""
    if source == target or not source.is_floating_point:
        return False
    return not (target == torch.float32 and source in (torch.float16, torch.bfloat16)) and not (
        target == torch.float64 and source != torch.float64
    )


@dataclass
class _Slot:
    """Where one tensor lived before training, and its values when training may round them."""

    module: nn.Module
    name: str
    is_param: bool
    device: torch.device
    dtype: torch.dtype
    requires_grad: bool
    backup: torch.Tensor | None


class ModuleGuard:
    """Put shared modules back exactly: device, dtype, values, requires_grad, train mode and hooks.

    The trainer moves and casts whole modules (model_setup.place) and hooks its LoRA onto base
    layers; a MODEL / CLIP / VAE input is shared with the rest of the graph, so all of that is
    undone. Values are backed up on the CPU only for tensors a cast to `weight_dtype` would round.
    """

    def __init__(self, modules: list[nn.Module], weight_dtype: torch.dtype | None, restore_values: bool = True):
        self.slots: list[_Slot] = []
        self.modes: list[tuple[nn.Module, bool]] = []
        self.hooks: list[tuple[nn.Module, set, set]] = []
        for root in modules:
            for sub in root.modules():
                self.modes.append((sub, sub.training))
                self.hooks.append((sub, set(sub._forward_hooks), set(sub._forward_pre_hooks)))
                for table, is_param in ((sub._parameters, True), (sub._buffers, False)):
                    for name, tensor in table.items():
                        if tensor is None:
                            continue
                        backup = None
                        if restore_values and weight_dtype is not None and lossy_cast(tensor.dtype, weight_dtype):
                            backup = tensor.detach().to("cpu", copy=True)
                        self.slots.append(
                            _Slot(sub, name, is_param, tensor.device, tensor.dtype, bool(getattr(tensor, "requires_grad", False)), backup)
                        )

    def restore(self) -> None:
        with torch.no_grad():
            for slot in self.slots:
                table = slot.module._parameters if slot.is_param else slot.module._buffers
                current = table.get(slot.name)
                if current is None:
                    continue
                source = slot.backup if slot.backup is not None else current.detach()
                if slot.backup is None and current.device == slot.device and current.dtype == slot.dtype:
                    if slot.is_param:
                        current.requires_grad_(slot.requires_grad)
                    continue
                value = source.to(slot.device, slot.dtype)
                if slot.is_param:
                    current.data = value
                    current.requires_grad_(slot.requires_grad)
                else:
                    table[slot.name] = value
        for module, forward, pre in self.hooks:
            for key in set(module._forward_hooks) - forward:
                del module._forward_hooks[key]
            for key in set(module._forward_pre_hooks) - pre:
                del module._forward_pre_hooks[key]
        for module, mode in self.modes:
            module.training = mode


class TrainingSession:
    """Load MODEL / CLIP / VAE for training, and put every shared object back afterwards.

    Other models are unloaded first; the trained ones are loaded fully (never ComfyUI's low-VRAM
    partial mode, which would stream weights every step). `shared` are the modules other nodes
    still use: they get their exact state back (see ModuleGuard); `private` ones (a full
    fine-tune's own copies) keep their trained values but return to their original dtype.
    """

    def __init__(self, bundle: ModelBundle, patchers: list, weight_dtype: torch.dtype | None, private: list[nn.Module] = ()):
        self.bundle = bundle
        self.patchers = patchers
        self.weight_dtype = weight_dtype
        self.private = list(private)

    def modules(self) -> list[nn.Module]:
        b = self.bundle
        found = [b.denoiser.module] + [b.text_encoders.module(p) for p in b.text_encoders.parts]
        if b.vae is not None:
            found.append(b.vae.module)
        return found

    @contextlib.contextmanager
    def active(self) -> Iterator[ModelBundle]:
        mm = comfy.model_management
        with torch.inference_mode(False):
            mm.unload_all_models()
            mm.soft_empty_cache()
            mm.load_models_gpu(self.patchers, force_full_load=True)
            self.bundle.text_encoders.make_differentiable()
            modules = self.modules()
            for module in modules:
                ordinary_tensors(module)
            shared = [m for m in modules if not any(m is p for p in self.private)]
            guards = [ModuleGuard(shared, self.weight_dtype), ModuleGuard(self.private, None, restore_values=False)]
            tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32  # the trainer may switch TF32 on
            try:
                yield self.bundle
            finally:
                self.bundle.extras["undo"].undo()
                for guard in guards:
                    guard.restore()
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
                mm.soft_empty_cache()


def training_session(bundle: ModelBundle, weight_dtype: torch.dtype | None, private: list[nn.Module] = ()) -> TrainingSession:
    """A session for a bundle from `build_bundle` (loads its MODEL, CLIP and VAE patchers)."""
    extras = bundle.extras
    patchers = [extras["model"], extras["clip"].patcher]
    if extras.get("vae") is not None:
        patchers.append(extras["vae"].patcher)
    return TrainingSession(bundle, patchers, weight_dtype, private)
