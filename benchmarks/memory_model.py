"""Measure the trainer's allocated GPU memory on the meta device and write training/memory_model.json.

Device-independent: the real diffusers UNets (training/configs) are built on the meta device and
one forward pass runs under torch.autograd.graph.saved_tensors_hooks, counting every tensor autograd
keeps for the backward pass (each storage once, weights excluded). Where diffusers would
gradient-checkpoint a block (each resnet and transformer block), the block's inputs are counted as
kept and its own saved tensors as the recompute the backward pass holds for one block at a time.
What a CUDA run does and the meta device does not is emulated:
- bf16 autocast: matmuls / convolutions / attention in bf16, norms and softmax in float32, trained
  float32 weights cast once per forward pass and cached (torch's CUDA autocast policy);
- flash attention (SDPA): saves q, k, v, the output and the float32 log-sum-exp, nothing L x L;
- optimizer state from the real tensor shapes: AdamW two moments, bitsandbytes' 8-bit AdamW (two
  uint8 states and a float32 absmax per 256 values, float32 below 4096 values), transformers'
  Adafactor (factored second moment, no first), Prodigy (four tensors per weight).
The step's allocated peak is then the larger of the end of the forward pass (weights, state, saved
tensors, cached casts) and the late backward pass (weights, state, every gradient, one recomputed
block). Batch 1, latents and text-encoder outputs cached (the VAE and text encoders are off the
GPU), kohya's LoRA targets at rank 16.

    python benchmarks/memory_model.py                # measure, write training/memory_model.json, print the table
    python benchmarks/memory_model.py --table        # the README table from the saved measurements
    python benchmarks/memory_model.py --cross-check  # one row re-measured under MemTracker (minutes)

It predicts *allocated* bytes (torch.cuda.max_memory_allocated); reserved memory and the CUDA
context come on top (benchmarks/bench_train.py measures both on a GPU; calibration is pending).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT.parent) not in sys.path:
    sys.path.insert(0, str(ROOT.parent))

GIB = 1024**3
MODEL_FILE = ROOT / "training" / "memory_model.json"
NATIVE = {"sd15": 512, "sdxl": 1024}
TEXT = {"sd15": (77, 768, 0), "sdxl": (77, 2048, 1280)}  # tokens, hidden size, pooled size
OPTIMIZERS = ("adamw", "adamw8bit", "adafactor", "prodigy")
LORA_RANK, LORA_ALPHA = 16, 8.0

LOWER = {"linear", "conv2d", "matmul", "bmm", "baddbmm", "addmm", "mm", "einsum", "conv_transpose2d", "addbmm"}
FP32 = {"group_norm", "layer_norm", "softmax", "log_softmax", "mse_loss", "exp", "pow", "__pow__", "norm", "softplus"}


class FlashAttention(torch.autograd.Function):
    """Shape- and memory-faithful stand-in for SDPA's flash kernel (saves q, k, v, out, lse)."""

    @staticmethod
    def forward(ctx, q, k, v):
        out = torch.empty_like(q)
        lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, _, _ = ctx.saved_tensors
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


class Bf16Autocast(TorchFunctionMode):
    """CUDA bf16 autocast's policy on meta tensors, with its per-forward cache of weight casts."""

    def __init__(self):
        super().__init__()
        self.cache: dict[int, torch.Tensor] = {}

    def _cast(self, value, dtype):
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != dtype:
            if isinstance(value, torch.nn.Parameter) and value.requires_grad:
                key = id(value)
                if key not in self.cache:
                    self.cache[key] = value.to(dtype)
                return self.cache[key]
            return value.to(dtype)
        if isinstance(value, (list, tuple)):
            return type(value)(self._cast(v, dtype) for v in value)
        return value

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name == "scaled_dot_product_attention":
            q, k, v = (self._cast(t, torch.bfloat16) for t in args[:3])
            return FlashAttention.apply(q, k, v)
        if name in LOWER:
            dtype = torch.bfloat16
        elif name in FP32:
            dtype = torch.float32
        else:
            return func(*args, **kwargs)
        return func(*self._cast(args, dtype), **{k: self._cast(v, dtype) for k, v in kwargs.items()})


class _autocast_reported_on:
    """torch.is_autocast_enabled() says True (the emulated autocast is on; meta has no autocast of its own)."""

    def __enter__(self):
        self.saved = torch.is_autocast_enabled
        torch.is_autocast_enabled = lambda *args: True

    def __exit__(self, *exc):
        torch.is_autocast_enabled = self.saved


class AdamW8bitStandIn(torch.optim.Optimizer):
    """bitsandbytes AdamW8bit's memory: uint8 exp_avg / exp_avg_sq + float32 absmax per 256 values."""

    def __init__(self, params, lr=1e-4):
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    if p.numel() < 4096:
                        state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
                        state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
                    else:
                        state["exp_avg"] = torch.zeros_like(p, dtype=torch.uint8)
                        state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.uint8)
                        blocks = (p.numel() + 255) // 256
                        state["absmax1"] = torch.zeros(blocks, device=p.device)
                        state["absmax2"] = torch.zeros(blocks, device=p.device)


@dataclasses.dataclass(frozen=True)
class Case:
    arch: str
    network: str  # "lora" | "full"
    checkpointing: bool
    optimizer: str
    resolution: int = 0  # 0: native
    batch: int = 1
    full_bf16: bool = False

    @property
    def side(self) -> int:
        return self.resolution or NATIVE[self.arch]

    def label(self) -> str:
        bits = [self.arch, str(self.side), self.network, "ckpt" if self.checkpointing else "no-ckpt", self.optimizer]
        if self.batch != 1:
            bits.append(f"batch {self.batch}")
        if self.full_bf16:
            bits.append("full_bf16")
        return " ".join(bits)


def build_unet(arch: str):
    from diffusers import UNet2DConditionModel

    from animekit.training.adapters.reference_models import reference_config

    with torch.device("meta"):
        return UNet2DConditionModel.from_config(reference_config(arch)["unet"])


def frozen_as_buffers(module: torch.nn.Module) -> None:
    """Frozen weights as buffers: MemTracker hooks every Parameter for gradients, which frozen ones refuse."""
    for sub in module.modules():
        for name, param in list(sub.named_parameters(recurse=False)):
            if not param.requires_grad:
                del sub._parameters[name]
                sub.register_buffer(name, param.data)


def build_optimizer(name: str, params):
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-4, foreach=False)
    if name == "adamw8bit":
        return AdamW8bitStandIn(params)
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=1e-4, scale_parameter=False, relative_step=False, warmup_init=False)
    from prodigyopt import Prodigy

    return Prodigy(params, lr=1.0)


def measure_with_tracker(case: Case) -> int:
    """Cross-check (slow: minutes): the allocated peak of a real second step under MemTracker, which
    follows every allocation and free. Without gradient checkpointing only (checkpoint asks the meta
    device for autocast state it does not have)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    from animekit.training.adapters.diffusers_models import DiffusersDenoiser
    from animekit.training.lora_network import PREFIXES, build_network

    unet = build_unet(case.arch)
    unet.requires_grad_(False)
    if case.network == "lora":
        unet.to(torch.bfloat16)
        targets = DiffusersDenoiser(unet, case.arch).lora_targets(include_conv=False)
        network = build_network(targets, PREFIXES[case.arch], LORA_RANK, LORA_ALPHA, 0, 1.0, 0.0, None)
        network.to(device="meta", dtype=torch.float32)
        network.attach()
        frozen_as_buffers(unet)
        params, modules = list(network.parameters()), [unet, network]
    else:
        unet.requires_grad_(True)
        params, modules = list(unet.parameters()), [unet]
    unet.train()
    optimizer = build_optimizer(case.optimizer, params)
    tokens, hidden, pooled = TEXT[case.arch]
    b, side = case.batch, case.side

    def step():
        latents = torch.empty(b, 4, side // 8, side // 8, device="meta")
        text = torch.empty(b, tokens, hidden, device="meta")
        added = None
        if pooled:
            added = {"text_embeds": torch.empty(b, pooled, device="meta"), "time_ids": torch.empty(b, 6, device="meta")}
        with Bf16Autocast(), _autocast_reported_on():
            pred = unet(latents, torch.zeros(b, dtype=torch.long, device="meta"), encoder_hidden_states=text,
                        added_cond_kwargs=added, return_dict=False)[0]  # fmt: skip
            loss = F.mse_loss(pred.float(), latents)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    tracker = MemTracker()
    tracker.track_external(*modules, optimizer)
    with tracker:
        step()
        tracker.reset_mod_stats()
        step()
    return int(tracker.get_tracker_snapshot("peak")[torch.device("meta")]["Total"])


def optimizer_state_bytes(name: str, params) -> int:
    """Optimizer state from the real tensor shapes (each state follows its weight's dtype, except 8-bit)."""
    total = 0
    for p in params:
        n, size = p.numel(), p.element_size()
        if name == "adamw":
            total += 2 * n * size  # exp_avg, exp_avg_sq
        elif name == "adamw8bit":
            total += 2 * n * 4 if n < 4096 else 2 * n + 2 * 4 * ((n + 255) // 256)  # bitsandbytes' min_8bit_size
        elif name == "adafactor":  # transformers' Adafactor, beta1 None: factored second moment for >= 2-d weights
            total += (n // p.shape[-1] + n // p.shape[-2]) * size if p.dim() >= 2 else n * size
        else:  # prodigy: exp_avg, exp_avg_sq, s, p0
            total += 4 * n * size
    return total


def measure(case: Case) -> dict:
    """One training step's parts, measured on the meta device (see the module docstring)."""
    from animekit.training.adapters.diffusers_models import DiffusersDenoiser
    from animekit.training.lora_network import PREFIXES, build_network

    unet = build_unet(case.arch)
    unet.requires_grad_(False)
    trained_dtype = torch.bfloat16 if case.full_bf16 else torch.float32
    if case.network == "lora":
        unet.to(torch.bfloat16)
        targets = DiffusersDenoiser(unet, case.arch).lora_targets(include_conv=False)
        network = build_network(targets, PREFIXES[case.arch], LORA_RANK, LORA_ALPHA, 0, 1.0, 0.0, None)
        network.to(device="meta", dtype=trained_dtype)
        network.attach()
        params = list(network.parameters())
        frozen = sum(p.numel() * p.element_size() for p in unet.parameters())
    else:
        unet.to(trained_dtype).requires_grad_(True)
        params = list(unet.parameters())
        frozen = 0
    weights = {p.untyped_storage()._cdata for p in unet.parameters()} | {p.untyped_storage()._cdata for p in params}
    clock = [0]  # advances with every saved tensor: forward order, which the backward pass walks in reverse
    outside: dict[int, tuple[int, int]] = {}  # storage -> (time, bytes)
    stack = [outside]
    units: list[tuple[int, dict, int]] = []  # (start time, inputs kept, bytes the block saves = its recompute)
    first_use: dict[int, int] = {}  # trained parameter -> time of its first use (its gradient appears there)
    autocast = Bf16Autocast()

    def pack(t):
        key = t.untyped_storage()._cdata
        if key not in weights and all(key != c.untyped_storage()._cdata for c in autocast.cache.values()):
            clock[0] += 1
            stack[-1].setdefault(key, (clock[0], t.untyped_storage().nbytes()))
        return t

    def mark_params(module, args):
        for p in module.parameters(recurse=False):
            if p.requires_grad:
                first_use.setdefault(id(p), clock[0])

    hooks = [m.register_forward_pre_hook(mark_params) for m in list(unet.modules()) + (list(network.modules()) if case.network == "lora" else [])]

    def checkpointed(module, *args):
        """Where diffusers would call torch.utils.checkpoint: the block's inputs stay, its saved tensors are
        recomputed in the backward pass (counted apart as the block's recompute)."""
        start = clock[0]
        inputs = {a.untyped_storage()._cdata: (start, a.untyped_storage().nbytes()) for a in args if isinstance(a, torch.Tensor)}
        bucket: dict[int, tuple[int, int]] = {}
        stack.append(bucket)
        try:
            out = module(*args)
        finally:
            stack.pop()
        units.append((start, inputs, sum(size for _, size in bucket.values())))
        return out

    if case.checkpointing:
        unet.enable_gradient_checkpointing(gradient_checkpointing_func=checkpointed)
    unet.train()
    tokens, hidden, pooled = TEXT[case.arch]
    b, side = case.batch, case.side
    latents = torch.empty(b, 4, side // 8, side // 8, device="meta")
    text = torch.empty(b, tokens, hidden, device="meta")
    added = None
    if pooled:
        added = {"text_embeds": torch.empty(b, pooled, device="meta"), "time_ids": torch.empty(b, 6, device="meta")}
    timesteps = torch.zeros(b, dtype=torch.long, device="meta")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast, _autocast_reported_on():
        pred = unet(latents, timesteps, encoder_hidden_states=text, added_cond_kwargs=added, return_dict=False)[0]
        F.mse_loss(pred.float(), latents)
    for hook in hooks:
        hook.remove()

    saved = dict(outside)
    for _, inputs, _ in units:
        for key, entry in inputs.items():
            saved.setdefault(key, entry)
    by_id = {id(p): p for p in params}
    casts = {pid: c.numel() * c.element_size() for pid, c in autocast.cache.items()}
    if not case.checkpointing:  # the casts are saved for the backward pass and freed as it passes them
        saved.update({("cast", pid): (first_use.get(pid, 0), size) for pid, size in casts.items()})
    grads = [(first_use.get(id(p), 0), p.numel() * p.element_size()) for p in by_id.values()]
    saved_total = sum(size for _, size in saved.values())
    cast_total = sum(casts.values())
    trained = sum(p.numel() * p.element_size() for p in params)
    state = optimizer_state_bytes(case.optimizer, params)
    static = frozen + trained + state
    forward_end = static + saved_total + (cast_total if case.checkpointing else 0)
    recompute_at = {start: size for start, _, size in units}
    backward = 0
    for k in sorted({t for t, _ in saved.values()} | {t for t, _ in grads} | set(recompute_at) | {clock[0] + 1}):
        held = sum(size for t, size in saved.values() if t < k)  # not yet reached by the backward pass
        done = sum(size for t, size in grads if t >= k)  # gradients already produced
        backward = max(backward, static + held + done + recompute_at.get(k, 0))
    return {
        "case": dataclasses.asdict(case),
        "peak": max(forward_end, backward),
        "forward_end": forward_end,
        "backward_peak": backward,
        "frozen": frozen,
        "trained": trained,
        "optstate": state,
        "saved": saved_total - (0 if case.checkpointing else cast_total),
        "casts": cast_total,
        "recompute": max(recompute_at.values(), default=0),
        "trained_params": sum(p.numel() for p in params),
        "unet_params": sum(p.numel() for p in unet.parameters()),
    }


def main_cases() -> list[Case]:
    return [
        Case(arch, network, ckpt, opt)
        for arch in ("sd15", "sdxl")
        for network in ("lora", "full")
        for ckpt in (True, False)
        for opt in OPTIMIZERS
    ]


def extra_cases() -> list[Case]:
    """Rows off the fitting grid: other resolutions, batch 2, bf16 trained weights."""
    return [
        Case("sd15", "lora", True, "adamw", resolution=768),
        Case("sd15", "lora", False, "adamw", resolution=384, batch=2),
        Case("sdxl", "lora", True, "adamw8bit", resolution=768),
        Case("sdxl", "lora", False, "adamw", resolution=768),
        Case("sdxl", "full", True, "adafactor", full_bf16=True),
        Case("sdxl", "lora", True, "adamw", batch=2),
    ]


def fit(rows: list[dict]) -> dict:
    """The estimate's coefficients from the native-size batch-1 rows; the other rows test them."""
    model: dict = {
        "_comment": "written by benchmarks/memory_model.py (meta-device measurement); read by training/memory_estimate.py",
        "activations_per_megapixel": {},
        "backward_held_fraction": {},  # of the activations, still held late in the backward pass (beyond every gradient)
        "optimizer_state_bytes_per_param": {},
        # text encoders training: not measured here (the table caches their outputs); kohya-scale guesses
        "text_encoder_activations": {"sd15": int(0.15 * GIB), "sdxl": int(0.5 * GIB)},
    }
    grid = [r for r in rows if r["case"]["resolution"] == 0 and r["case"]["batch"] == 1 and not r["case"]["full_bf16"]]
    for r in grid:
        case = Case(**r["case"])
        mp = case.side**2 / 1e6
        key = f"{case.arch}/{case.network}/{'ckpt' if case.checkpointing else 'no-ckpt'}"
        model["activations_per_megapixel"][key] = round(r["saved"] / mp)
        static_and_grads = r["frozen"] + 2 * r["trained"] + r["optstate"]
        model["backward_held_fraction"][key] = round(max(0.0, (r["backward_peak"] - static_and_grads) / r["saved"]), 4)
        model["optimizer_state_bytes_per_param"][f"{case.arch}/{case.network}/{case.optimizer}"] = round(
            r["optstate"] / r["trained_params"], 4
        )
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", action="store_true", help="only print the table from the saved measurements")
    parser.add_argument("--cross-check", action="store_true", help="SD1.5 LoRA / full without checkpointing under MemTracker")
    args = parser.parse_args(argv)
    if args.cross_check:
        for case in (Case("sd15", "lora", False, "adamw"), Case("sd15", "full", False, "adafactor")):
            tracked, ours = measure_with_tracker(case), measure(case)["peak"]
            print(f"{case.label()}: MemTracker {tracked / GIB:.3f} GiB, saved-tensor model {ours / GIB:.3f} GiB", flush=True)
        return 0
    data_file = ROOT / "benchmarks" / "memory_measurements.json"
    if not args.table:
        rows = []
        for case in main_cases() + extra_cases():
            started = time.perf_counter()
            rows.append(measure(case))
            print(f"{case.label():45s} {rows[-1]['peak'] / GIB:6.2f} GiB ({time.perf_counter() - started:.1f} s)", flush=True)
        data_file.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
        model = fit(rows)
        MODEL_FILE.write_text(json.dumps(model, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print_table(json.loads(data_file.read_text(encoding="utf-8")))
    return 0


def plan_for(row: dict):
    from animekit.training.memory_estimate import MemoryPlan

    case = Case(**row["case"])
    return MemoryPlan(
        arch=case.arch,
        params={"unet": row["unet_params"]},
        trained_params=row["trained_params"],
        full=case.network == "full",
        train_text_encoder=False,
        optimizer=case.optimizer,
        mixed="bf16",
        full_bf16=case.full_bf16,
        batch_size=case.batch,
        width=case.side,
        height=case.side,
        gradient_checkpointing=case.checkpointing,
        text_cached=True,
        latents_cached=True,
    )


def print_table(rows: list[dict]) -> None:
    from animekit.training.memory_estimate import estimate

    print("| case | measured (meta device) GiB | estimate GiB | estimate / measured |")
    print("| --- | ---: | ---: | ---: |")
    worst = 0.0
    for row in rows:
        found = estimate(plan_for(row)).allocated
        ratio = found / row["peak"]
        worst = max(worst, abs(ratio - 1))
        print(f"| {Case(**row['case']).label()} | {row['peak'] / GIB:.2f} | {found / GIB:.2f} | {ratio:.2f} |")
    print(f"\nlargest deviation: {worst * 100:.1f}%")


if __name__ == "__main__":
    raise SystemExit(main())
