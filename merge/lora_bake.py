"""Bake LoRAs into a checkpoint file: ``W + sum_i strength_i * w_i[block] * (alpha/rank) * up @ down``,
streamed key by key from the checkpoint to the output (one tensor in memory), atomic, recipe in metadata.

kohya LoRA and LoCon files (``lora_up`` / ``lora_down`` / ``alpha``, conv layers included) are baked;
module names map to checkpoint keys through merge/lora_names.py, blocks through merge/lora_blocks.py,
block weights through merge/block_vectors.py (UNet keys ``strength * w[block]``, text-encoder keys
``strength * w[BASE]``, as the LoRA Block Weight node does). Other LyCORIS kinds (LoHa, LoKr, OFT,
DoRA, Tucker ``lora_mid``) and diffusers / PEFT ``lora_A`` / ``lora_B`` files are refused by name:
baking them as a LoRA would be silently wrong. Arithmetic in fp32, the sum of all LoRAs added once.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..checkpoints.detect import detect_architecture
from ..files.atomic import atomic_output
from ..files.output_checks import check_free_space, check_output_path
from .block_vectors import BlockVector, resolve_vector
from .checkpoint_merge import OUTPUT_DTYPES
from .lora_blocks import lora_key_block
from .lora_names import kohya_module
from .safetensors_stream import OutputTensor, SafetensorsFile, SafetensorsWriter, itemsize, torch_dtype
from .sinks import open_sink
from .sources import open_checkpoint

REFUSED_KINDS = {  # a key fragment -> the kind of file it marks
    "hada_w1": "LyCORIS LoHa",
    "lokr_w1": "LyCORIS LoKr",
    "oft_": "OFT / BOFT",
    "lora_mid": "LyCORIS LoCon with Tucker decomposition (lora_mid)",
    "dora_scale": "DoRA",
    ".lora_A.": "diffusers / PEFT format (lora_A / lora_B)",
    "b_norm": "LyCORIS norm adapter",
    ".diff": "LyCORIS full difference",
}


@dataclass(frozen=True)
class LoraInput:
    path: Path
    strength: float = 1.0


@dataclass(frozen=True)
class BakeConfig:
    checkpoint: Path
    loras: tuple[LoraInput, ...]
    output: Path
    lbw: str | None = None  # a block vector or preset (merge/block_vectors.py); None = every block 1
    dtype: str = "fp16"
    overwrite: bool = False
    overwrite_hint: str = "--overwrite"


@dataclass
class BakeResult:
    path: Path
    arch: str
    vector: BlockVector | None
    patched: int
    per_lora: list[tuple[str, int]] = field(default_factory=list)  # (name, modules baked)

    def report(self) -> str:
        lines = [f"AnimeKit bake-lora: {self.arch}; {self.patched} checkpoint keys changed -> {self.path}"]
        if self.vector is not None:
            lines.append(f"block weights: {self.vector.source}: " + ",".join(f"{v:g}" for v in self.vector.values))
        lines += [f"  {name}: {count} modules" for name, count in self.per_lora]
        return "\n".join(lines) + "\n"


def parse_lora_argument(text: str) -> LoraInput:
    """``PATH`` or ``PATH:STRENGTH`` (the last ``:number`` is the strength)."""
    path, sep, tail = text.rpartition(":")
    if sep and path:
        try:
            return LoraInput(Path(path), float(tail))
        except ValueError:
            pass
    return LoraInput(Path(text), 1.0)


@dataclass
class _Module:
    up: object
    down: object
    scale: float  # alpha / rank


def _modules_of(path: Path, label: str) -> dict[str, _Module]:
    """kohya module name -> up / down / alpha-scale; refuses the LyCORIS kinds it cannot bake."""
    with SafetensorsFile(path, label=label) as lora:
        keys = list(lora.tensors)
        for fragment, kind in REFUSED_KINDS.items():
            hit = next((k for k in keys if fragment in k), None)
            if hit is not None:
                raise ValueError(f"{label} ({path.name}) is a {kind} file ({hit!r}); bake-lora bakes kohya LoRA and LoCon only")
        names = sorted({k.split(".", 1)[0] for k in keys if k.endswith((".lora_up.weight", ".lora_down.weight"))})
        if not names:
            raise ValueError(f"{label} ({path.name}) has no lora_up / lora_down weights: not a kohya LoRA")
        found = {}
        for name in names:
            try:
                up = lora.read(f"{name}.lora_up.weight").view(lora.tensors[f"{name}.lora_up.weight"].shape).float()
                down = lora.read(f"{name}.lora_down.weight").view(lora.tensors[f"{name}.lora_down.weight"].shape).float()
            except KeyError as exc:
                raise ValueError(f"{label} ({path.name}): {name} lacks {exc.args[0]}") from None
            rank = down.shape[0]
            alpha_key = f"{name}.alpha"
            alpha = float(lora.read(alpha_key).float()[0]) if alpha_key in lora.tensors else float(rank)
            found[name] = _Module(up, down, alpha / rank)
        return found


def _delta(module: _Module, shape) -> "object":
    """up @ down (flattened: Linear, 1x1 conv, or LoCon's [out, r, 1, 1] @ [r, in, k, k]) in the weight's shape."""
    return (module.up.flatten(1) @ module.down.flatten(1)).reshape(shape) * module.scale


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bake_loras(
    config: BakeConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
    check_cancel: Callable[[], None] | None = None,
) -> BakeResult:
    import torch

    if not config.loras:
        raise ValueError("give at least one LoRA to bake")
    if config.dtype not in OUTPUT_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(OUTPUT_DTYPES)}, got {config.dtype!r}")
    inputs = {"the checkpoint": config.checkpoint, **{f"LoRA {i + 1}": l.path for i, l in enumerate(config.loras)}}
    check_output_path(config.output, inputs, overwrite=config.overwrite, suffix=".safetensors", overwrite_hint=config.overwrite_hint)
    with contextlib.ExitStack() as stack:
        ckpt = stack.enter_context(contextlib.closing(open_checkpoint(config.checkpoint, label="checkpoint")))
        arch = detect_architecture(ckpt.shapes(), name=f"checkpoint ({ckpt.path.name})")
        vector = resolve_vector(config.lbw, arch) if config.lbw else None
        names_to_keys = {}
        for key in ckpt.tensors:
            named = kohya_module(arch.name, key)
            if named is not None:
                names_to_keys[named[0]] = key
        per_key: dict[str, list[tuple[_Module, float]]] = {}
        result = BakeResult(Path(config.output), arch.label, vector, 0)
        for index, lora in enumerate(config.loras):
            label = f"LoRA {index + 1}"
            modules = _modules_of(Path(lora.path), label)
            unknown = [n for n in modules if n not in names_to_keys]
            if unknown:
                raise ValueError(f"{label} ({Path(lora.path).name}): {len(unknown)} module(s) match no {arch.label} checkpoint "
                                 f"weight (is it for another architecture?): {', '.join(unknown[:3])}")
            for name, module in modules.items():
                block = lora_key_block(arch, name)
                w = 1.0 if vector is None or block is None else vector.of(block)
                key = names_to_keys[name]
                if tuple(_delta(module, ckpt.tensors[key].shape).shape) != tuple(ckpt.tensors[key].shape):
                    raise ValueError(f"{label}: {name} does not fit {key} {tuple(ckpt.tensors[key].shape)}")
                per_key.setdefault(key, []).append((module, lora.strength * w))
            result.per_lora.append((Path(lora.path).name, len(modules)))
        target = OUTPUT_DTYPES[config.dtype]
        outputs = [OutputTensor(k, target if (t.is_float and target) else t.dtype, tuple(t.shape)) for k, t in ckpt.tensors.items()]
        outputs.sort(key=lambda o: -itemsize(o.dtype))
        metadata = _metadata(config, ckpt, arch, vector)
        check_free_space(config.output, sum(o.nbytes for o in outputs) + (1 << 20))
        with atomic_output(config.output) as tmp:
            sink, fds = open_sink(tmp)
            try:
                writer = SafetensorsWriter(sink, outputs, metadata)
                with torch.no_grad():
                    for done, out in enumerate(outputs):
                        if check_cancel is not None:
                            check_cancel()
                        info = ckpt.tensors[out.key]
                        value = ckpt.read(out.key).view(info.shape)
                        active = [(m, s) for m, s in per_key.get(out.key, ()) if s != 0.0]
                        if active:
                            value = value.float()
                            for module, strength in active:
                                value += _delta(module, info.shape) * strength
                            result.patched += 1
                        writer.write(out.key, value.to(torch_dtype(out.dtype)))
                        if progress is not None:
                            progress(done + 1, len(outputs))
                writer.finish(metadata)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise OSError(errno.ENOSPC, f"disk full while writing {str(config.output)!r}; nothing was saved") from None
                raise
            finally:
                for fd in fds:
                    os.close(fd)
    return result


def _metadata(config: BakeConfig, ckpt, arch, vector) -> dict[str, str]:
    recipe = {
        "type": "animekit-bake-lora",
        "checkpoint": ckpt.path.name,
        "loras": [{"name": Path(l.path).name, "strength": l.strength, "sha256": _sha256(Path(l.path))} for l in config.loras],
        "lbw": None if vector is None else {"source": vector.source, "blocks": list(arch.blocks), "values": list(vector.values)},
        "formula": "W + sum(strength * w[block] * alpha/rank * up@down); text encoders use w[BASE]",
        "architecture": arch.name,
        "dtype": config.dtype,
    }
    meta = {k: v for k, v in ckpt.metadata.items() if k.startswith("modelspec.") or k == "sd_merge_models"}
    meta.update({
        "sd_merge_recipe": json.dumps(recipe),
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": arch.modelspec,
        "modelspec.title": Path(config.output).stem,
        "modelspec.date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "modelspec.description": f"{ckpt.path.name} with " + ", ".join(f"{Path(l.path).name}:{l.strength:g}" for l in config.loras) + " baked in",
    })
    return meta
