"""Extract a LoRA from two checkpoints: tuned minus base, per layer truncated SVD, kohya format.

What sd-scripts' networks/extract_lora_from_models.py does, layer by layer from the files instead of
two whole models in memory: for each kohya LoRA module (merge/lora_names.py) read the tuned and base
weights, take ``D = tuned - base`` in fp32 (on the GPU when there is one), ``U S Vh = svd(D)`` (by
default randomized, torch.svd_lowrank with `rank` + 8 vectors and 4 power iterations: a 1280 x 5120
layer takes milliseconds instead of seconds; ``svd="full"`` is kohya's exact SVD), keep
the top `rank` singular values (or fewer: the smallest rank reaching `energy` of the squared singular
values), ``up = U S``, ``down = Vh``, clamp both to the `clamp_quantile` of their joined magnitudes as
kohya does, alpha = rank (scale 1). Memory is one layer at a time. Like kohya, the text encoder is
left out when none of its weights differs by more than `min_diff`.

The report gives, per layer and per MBW block, the relative reconstruction error
``||D - up @ down|| / ||D||`` (Frobenius), so the applied LoRA's distance from the tuned model is known.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..checkpoints.detect import require_same_architecture
from ..files.atomic import save_safetensors_atomic
from ..files.output_checks import check_output_path
from .lora_blocks import lora_key_block
from .lora_names import kohya_module
from .sources import open_checkpoint

DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}
SVD_KINDS = ("lowrank", "full")
LOWRANK_OVERSAMPLE = 8
LOWRANK_ITERATIONS = 4
BASE_MODEL_VERSION = {"sd15": "sd_v1", "sdxl": "sdxl_base_v1-0"}


@dataclass(frozen=True)
class ExtractConfig:
    tuned: Path
    base: Path
    output: Path
    rank: int = 4
    conv_rank: int | None = None  # None: no ResNet / sampler layers (plain LoRA); a number: LoCon
    energy: float | None = None  # keep the smallest rank reaching this fraction of sum(S^2) (at most `rank`)
    clamp_quantile: float = 0.99
    min_diff: float = 0.01
    dtype: str = "fp16"
    device: str = "auto"
    svd: str = "lowrank"  # "lowrank": randomized (torch.svd_lowrank, rank + 8 vectors, 4 power iterations); "full": exact
    overwrite: bool = False
    overwrite_hint: str = "--overwrite"

    def __post_init__(self):
        if self.svd not in SVD_KINDS:
            raise ValueError(f"svd must be one of {', '.join(SVD_KINDS)}, got {self.svd!r}")
        if not (isinstance(self.rank, int) and self.rank >= 1):
            raise ValueError(f"rank must be a positive integer, got {self.rank!r}")
        if self.conv_rank is not None and not (isinstance(self.conv_rank, int) and self.conv_rank >= 1):
            raise ValueError(f"conv rank must be a positive integer, got {self.conv_rank!r}")
        if self.energy is not None and not (0.0 < self.energy <= 1.0):
            raise ValueError(f"energy must be in (0, 1], got {self.energy!r}")
        if not (0.0 < self.clamp_quantile <= 1.0):
            raise ValueError(f"clamp quantile must be in (0, 1], got {self.clamp_quantile!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")


@dataclass(frozen=True)
class LayerResult:
    name: str  # kohya module name
    block: str | None
    rank: int
    error: float  # ||D - up@down|| / ||D||
    diff_norm: float


@dataclass
class ExtractResult:
    path: Path
    arch: str
    blocks: tuple[str, ...] = ()  # the architecture's blocks, for the report's order
    layers: list[LayerResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def block_errors(self) -> dict[str, tuple[float, int]]:
        """Block -> (relative error of the block's layers together, layer count)."""
        sums: dict[str, list[float]] = {}
        for layer in self.layers:
            acc = sums.setdefault(layer.block or "-", [0.0, 0.0, 0])
            acc[0] += (layer.error * layer.diff_norm) ** 2
            acc[1] += layer.diff_norm ** 2
            acc[2] += 1
        order = {b: i for i, b in enumerate(self.blocks)}
        ranked = sorted(sums.items(), key=lambda item: order.get(item[0], len(order)))
        return {b: (math.sqrt(e / d) if d > 0 else 0.0, int(n)) for b, (e, d, n) in ranked}

    def report(self) -> str:
        lines = [f"AnimeKit extract-lora: {self.arch}, {len(self.layers)} layers -> {self.path}", "",
                 f"{'block':<6} {'layers':>6} {'rel. error':>10}"]
        for block, (error, count) in self.block_errors().items():
            lines.append(f"{block:<6} {count:>6} {error:>10.4f}")
        total_d = sum(l.diff_norm ** 2 for l in self.layers)
        total_e = sum((l.error * l.diff_norm) ** 2 for l in self.layers)
        lines.append(f"{'all':<6} {len(self.layers):>6} {math.sqrt(total_e / total_d) if total_d else 0.0:>10.4f}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def _device(choice: str):
    import torch

    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def _top_singular(diff, rank: int, kind: str):
    """U, S, Vh with at least `rank` leading singular triplets (all of them for the exact SVD)."""
    import torch

    q = min(rank + LOWRANK_OVERSAMPLE, *diff.shape)
    if kind == "full" or q >= min(diff.shape):
        return torch.linalg.svd(diff, full_matrices=False)
    U, S, V = torch.svd_lowrank(diff, q=q, niter=LOWRANK_ITERATIONS)
    return U, S, V.mT


def low_rank(diff, rank: int, energy: float | None, clamp_quantile: float, kind: str = "full"):
    """(up, down, kept rank, relative error) of one fp32 matrix (out x in)."""
    import torch

    U, S, Vh = _top_singular(diff, rank, kind)
    rank = min(rank, S.numel())
    if energy is not None:  # the total is ||D||_F^2 = sum of all S^2, exact even when only the top ones are known
        total = float(torch.linalg.matrix_norm(diff).double() ** 2)
        share = torch.cumsum(S.double() ** 2, 0) / max(total, 1e-300)
        rank = min(rank, int(torch.searchsorted(share, torch.tensor([energy], dtype=share.dtype, device=share.device))[0]) + 1)
    up = U[:, :rank] * S[:rank]
    down = Vh[:rank]
    hi = torch.quantile(torch.cat([up.flatten(), down.flatten()]), clamp_quantile)
    up, down = up.clamp(-hi, hi), down.clamp(-hi, hi)
    norm = float(torch.linalg.matrix_norm(diff))
    error = float(torch.linalg.matrix_norm(diff - up @ down)) / norm if norm > 0 else 0.0
    return up, down, rank, error


def _modules(arch_name: str, base, tuned, conv: bool):
    """(checkpoint key, kohya name, kind) of every LoRA target both files have with one shape."""
    found = []
    for key, info in base.tensors.items():
        named = kohya_module(arch_name, key)
        if named is None or len(info.shape) not in (2, 4) or key not in tuned.tensors:
            continue
        if named[1] == "conv" and not conv:
            continue
        if tuple(tuned.tensors[key].shape) != tuple(info.shape):
            raise ValueError(f"shape mismatch for {key}: tuned {tuple(tuned.tensors[key].shape)} vs base {tuple(info.shape)}")
        found.append((key, named[0], named[1]))
    return found


def _metadata(config: ExtractConfig, arch, result: ExtractResult) -> dict[str, str]:
    net_args = {} if config.conv_rank is None else {"conv_dim": str(config.conv_rank), "conv_alpha": str(float(config.conv_rank))}
    return {
        "ss_v2": "False",
        "ss_base_model_version": BASE_MODEL_VERSION[arch.name],
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(config.rank),
        "ss_network_alpha": str(float(config.rank)),
        "ss_network_args": json.dumps(net_args),
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": f"{arch.modelspec}/lora",
        "modelspec.implementation": "https://github.com/Stability-AI/generative-models" if arch.name == "sdxl"
        else "https://github.com/CompVis/stable-diffusion",
        "modelspec.title": Path(config.output).stem,
        "modelspec.date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "modelspec.resolution": f"{arch.resolution}x{arch.resolution}",
        "animekit_extract": json.dumps({
            "tuned": Path(config.tuned).name, "base": Path(config.base).name, "rank": config.rank,
            "conv_rank": config.conv_rank, "energy": config.energy, "clamp_quantile": config.clamp_quantile, "svd": config.svd,
            "block_errors": {b: round(e, 6) for b, (e, _) in result.block_errors().items()},
        }),
    }


def extract_lora(
    config: ExtractConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
    check_cancel: Callable[[], None] | None = None,
) -> ExtractResult:
    """Write the LoRA (atomically) and return the per-layer / per-block report."""
    import torch

    check_output_path(config.output, {"the tuned model": config.tuned, "the base model": config.base},
                      overwrite=config.overwrite, suffix=".safetensors", overwrite_hint=config.overwrite_hint)
    device = _device(config.device)
    out_dtype = getattr(torch, DTYPES[config.dtype])
    with contextlib.ExitStack() as stack:
        tuned = stack.enter_context(contextlib.closing(open_checkpoint(config.tuned, label="tuned model")))
        base = stack.enter_context(contextlib.closing(open_checkpoint(config.base, label="base model")))
        arch = require_same_architecture({f"tuned model ({tuned.path.name})": tuned.shapes(),
                                          f"base model ({base.path.name})": base.shapes()}, action="extract a LoRA from")
        modules = _modules(arch.name, base, tuned, config.conv_rank is not None)
        result = ExtractResult(Path(config.output), arch.label, arch.blocks)

        def diff_of(key):
            shape = base.tensors[key].shape
            t = tuned.read(key).to(device=device, dtype=torch.float32).view(shape)
            return t.sub_(base.read(key).to(device=device, dtype=torch.float32).view(shape))

        text = [m for m in modules if m[2] == "text"]
        if text and not any(float(diff_of(key).abs().max()) > config.min_diff for key, _, _ in text):
            modules = [m for m in modules if m[2] != "text"]
            result.notes.append(f"text encoder left out: no weight differs by more than {config.min_diff:g}")
        if not modules:
            raise ValueError("no LoRA target layers in common between the tuned and the base model")
        tensors = {}
        with torch.no_grad():
            for index, (key, name, kind) in enumerate(modules):
                if check_cancel is not None:
                    check_cancel()
                diff = diff_of(key)
                shape = tuple(diff.shape)
                conv3 = len(shape) == 4 and shape[2:] != (1, 1)
                rank = config.conv_rank if conv3 else config.rank
                up, down, kept, error = low_rank(diff.reshape(shape[0], -1), rank, config.energy, config.clamp_quantile, config.svd)
                if len(shape) == 4:
                    up, down = up.reshape(shape[0], kept, 1, 1), down.reshape(kept, *shape[1:])
                tensors[f"{name}.lora_up.weight"] = up.to("cpu", out_dtype).contiguous()
                tensors[f"{name}.lora_down.weight"] = down.to("cpu", out_dtype).contiguous()
                tensors[f"{name}.alpha"] = torch.tensor(float(kept), dtype=out_dtype)
                result.layers.append(LayerResult(name, lora_key_block(arch, name), kept, error, float(torch.linalg.vector_norm(diff))))
                if progress is not None:
                    progress(index + 1, len(modules))
        save_safetensors_atomic(tensors, config.output, _metadata(config, arch, result))
    return result
