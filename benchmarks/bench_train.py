"""Training speed and memory: AnimeKit's trainer vs kohya sd-scripts on the real SDXL architecture.

    python benchmarks/bench_train.py                      # GPU: SDXL at 1024x1024, LoRA and full fine-tune
    python benchmarks/bench_train.py --kohya ~/sd-scripts # ... side by side with kohya on the same machine
    python benchmarks/bench_train.py --smoke              # CPU: tiny models, proves the script works
    python benchmarks/bench_train.py --checkpoint animagine-xl-3.1.safetensors   # a real single file, offline

Both trainers get the same work: random weights of the real SDXL UNet / text encoders / VAE
(training/configs/sdxl.json), a folder of 1024x1024 images, latents and text-encoder outputs cached
before training, gradient checkpointing, SDPA attention, bf16 autocast, batch `--batch`.
LoRA: rank 16 / alpha 8 on the UNet, AdamW. Full fine-tune: UNet only, Adafactor
(scale_parameter / relative_step / warmup_init off), weights in bf16 (kohya --full_bf16).

Speed is images per second between the end of step `--warmup` and the last step, timed from the
outside the same way for both. Peak VRAM is the GPU's memory in use (nvidia-smi) above what it
used before the run, for both; AnimeKit also reports torch's own allocated and reserved peaks during
training beside its memory plan (training/memory_estimate.py), and model FLOP utilisation from the
analytic SDXL FLOPs (6.8 TFLOP per 1024x1024 forward) against --peak-tflops.
Random weights of the real shapes cost exactly what trained ones do.

Needs the package installed (`pip install -e .[train]` in the repository) and, for the kohya
column, a sd-scripts checkout whose requirements are importable by `--kohya-python`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKENIZER_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789!,.()_-:'"
# analytic FLOPs per 1024x1024 image, gradient checkpointing on: forward 6.8 TFLOP, recomputed once,
# backward 1x forward for a LoRA (input gradients only) or 2x for a full fine-tune (weights too)
SDXL_TRAIN_TFLOP_PER_IMAGE = {"lora": 3 * 6.8, "full": 4 * 6.8}
KOHYA_TOKENIZERS = ("openai/clip-vit-large-patch14", "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k")

# A tiny SDXL-shaped model for --smoke (same classes and conditioning as the real one).
TINY = {
    "unet": dict(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=[32, 64], layers_per_block=1,
        attention_head_dim=8, norm_num_groups=32, down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
        up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"], cross_attention_dim=64, transformer_layers_per_block=[1, 2],
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=16 + 48,
    ),
    "text": dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=77),
    "vae": dict(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[8, 8, 8, 8], layers_per_block=1,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4, norm_num_groups=4,
        sample_size=64, scaling_factor=0.13025,
    ),
}  # fmt: skip


# ----------------------------------------------------------------------------------- assets


def write_tokenizer(folder: Path):
    """A character-level CLIPTokenizer: token ids differ from real CLIP's, cost does not (random weights)."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {c: i for i, c in enumerate(TOKENIZER_CHARS)}
    vocab.update({f"{c}</w>": len(TOKENIZER_CHARS) + i for i, c in enumerate(TOKENIZER_CHARS)})
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    tokenizer.save_pretrained(folder)
    return tokenizer


def write_dataset(folder: Path, count: int, size: int) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        image = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), "RGB").resize((size, size), Image.BILINEAR)
        image.save(folder / f"{i:04d}.png")
        (folder / f"{i:04d}.txt").write_text(f"1girl, solo, tag{i % 7}, long hair, smile", encoding="utf-8")
    return folder


def build_models(smoke: bool, device, dtype):
    import torch

    if not smoke:
        from animekit.training.adapters.reference_models import build_reference_models

        return build_reference_models("sdxl", device, dtype)
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    config = dict(TINY["text"], vocab_size=len(TOKENIZER_CHARS) * 2 + 2, eos_token_id=2)
    texts = [CLIPTextModel(CLIPTextConfig(**config, projection_dim=32)), CLIPTextModelWithProjection(CLIPTextConfig(**config, projection_dim=16))]
    return UNet2DConditionModel(**TINY["unet"]).to(device), [t.to(device) for t in texts], AutoencoderKL(**TINY["vae"]).to(device)


# ------------------------------------------------------------------------------ measuring


class GpuMemoryPoll:
    """Peak of the GPU's used memory (nvidia-smi) above its level when polling started."""

    def __init__(self, interval: float = 0.1):
        self.interval, self.peak, self.base = interval, 0, None
        self._stop = threading.Event()
        self._thread = None

    @staticmethod
    def used_mib() -> int | None:
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "--id=0"],
                capture_output=True, text=True, timeout=10,
            )  # fmt: skip
            return int(out.stdout.strip().splitlines()[0])
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            return None

    def __enter__(self):
        self.base = self.used_mib()
        if self.base is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            used = self.used_mib()
            if used is not None:
                self.peak = max(self.peak, used - self.base)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def peak_gib(self) -> float | None:
        return None if self.base is None else round(self.peak / 1024, 2)


def images_per_second(marks: dict[int, float], batch: int, warmup: int, last: int) -> float | None:
    if warmup not in marks or last not in marks or last <= warmup:
        return None
    return batch * (last - warmup) / (marks[last] - marks[warmup])


# --------------------------------------------------------------------------- our trainer


def run_ours(args) -> dict:
    """Worker: one AnimeKit run in this process; prints a JSON line with the measurements."""
    import torch

    from animekit.training.adapters.diffusers_models import make_bundle
    from animekit.training.config_toml import config_from_dict
    from animekit.training.hooks import Hooks
    from animekit.training.loop import Trainer
    from animekit.training.data.dataset import scan_dataset

    device = torch.device("cpu" if args.smoke else "cuda")
    if args.smoke:
        torch.set_num_threads(1)
    work = Path(args.workdir)
    size = 64 if args.smoke else 1024
    full = args.mode == "full"
    mixed = "no" if args.smoke else args.precision
    frozen_dtype = torch.float32 if args.smoke else {"bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    if args.checkpoint:  # a real single-file checkpoint, loaded as `animekit train` loads it (offline)
        from animekit.training.adapters.diffusers_models import load_bundle
        from animekit.training.config import ModelConfig

        bundle = load_bundle(ModelConfig(path=args.checkpoint))
    else:
        unet, texts, vae = build_models(args.smoke, device, frozen_dtype if not full else torch.float32)
        vae.to(torch.float32)
        tokenizer = write_tokenizer(work / "tokenizer")
        bundle = make_bundle("sdxl", unet, texts, [tokenizer, tokenizer], vae, vae_identity="bench-vae")
    steps = args.warmup + args.steps
    table = {
        "seed": 0,
        "model": {"path": str(work)},
        "dataset": {
            "folders": [{"path": str(work / "data" / "1_bench")}],
            "buckets": {"resolution": size, "min_size": size, "max_size": size},
            "batch_size": args.batch,
        },
        "network": {"type": "full"} if full else {"rank": args.rank, "alpha": args.rank / 2},
        "optimizer": (
            {"type": "adafactor", "lr": 1e-5, "weight_decay": 0.0, "max_grad_norm": 0.0} if full
            else {"type": args.optimizer, "lr": 1e-4}
        ),
        "schedule": {"max_steps": steps, "name": "constant"},
        "precision": {"mixed": mixed, "gradient_checkpointing": True, "full_bf16": full and mixed == "bf16"},
        "cache": {"latents": "memory", "text_encoder_outputs": True},
        "save": {"output_dir": str(work / f"out-{args.mode}"), "save_state": False, "precision": "bf16"},
        "logging": {"tensorboard": False},
    }  # fmt: skip
    cfg = config_from_dict(table)
    marks: dict[int, float] = {}

    def on_progress(progress):
        if progress.phase == "train" and progress.done == 0 and device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def on_step(step, loss, rates):  # the loop has just read the loss: the step is finished on the GPU
        marks[step] = time.perf_counter()

    from animekit.training.memory_planning import plan_run_memory

    plan = plan_run_memory(cfg, bundle).estimate()
    trainer = Trainer(cfg, bundle, scan_dataset(cfg.dataset), Hooks(on_step=on_step, progress=on_progress))
    result = trainer.run()
    report = {
        "trainer": "animekit",
        "mode": args.mode,
        "steps": result.steps,
        "images_per_s": images_per_second(marks, args.batch, args.warmup, steps),
        "last_loss": result.last_loss,
        "plan_allocated_gib": round(plan.allocated / 2**30, 2),
        "plan_total_gib": round(plan.total / 2**30, 2),
    }
    if report["images_per_s"] and not args.smoke:
        flops = SDXL_TRAIN_TFLOP_PER_IMAGE[args.mode] * 1e12
        report["mfu"] = round(report["images_per_s"] * flops / (args.peak_tflops * 1e12), 3)
    if device.type == "cuda":
        report["torch_peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        report["torch_peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
    return report


# ----------------------------------------------------------------------------------- kohya


def prepare_kohya_assets(args, work: Path) -> dict:
    """A single-file SDXL checkpoint (our exporter; kohya reads ldm files), tokenizers where kohya's
    --tokenizer_cache_dir looks, and the dataset in kohya's `N_name` layout (shared with ours)."""
    import torch

    from animekit.files.atomic import save_safetensors_atomic
    from animekit.training.adapters.diffusers_models import make_bundle

    checkpoint = work / "sdxl-random.safetensors"
    if not checkpoint.is_file():
        unet, texts, vae = build_models(False, "cpu", torch.float16)
        tokenizer = write_tokenizer(work / "tokenizer")
        state = make_bundle("sdxl", unet, texts, [tokenizer, tokenizer], vae).export_checkpoint()
        save_safetensors_atomic({k: v.to(torch.float16) if v.is_floating_point() else v for k, v in state.items()}, checkpoint)
        del unet, texts, vae, state
    cache = work / "kohya-tokenizers"
    for name in KOHYA_TOKENIZERS:
        target = cache / name.replace("/", "_")
        if not target.is_dir():
            write_tokenizer(target)
    return {"checkpoint": checkpoint, "tokenizers": cache}


def kohya_command(args, assets: dict, work: Path) -> list[str]:
    steps = args.warmup + args.steps
    script = "sdxl_train.py" if args.mode == "full" else "sdxl_train_network.py"
    command = [
        args.kohya_python, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
        "--mixed_precision", args.precision, "--dynamo_backend", "no", str(Path(args.kohya) / script),
        "--pretrained_model_name_or_path", str(assets["checkpoint"]), "--tokenizer_cache_dir", str(assets["tokenizers"]),
        "--train_data_dir", str(work / "data"), "--caption_extension", ".txt", "--resolution", "1024,1024",
        "--output_dir", str(work / f"kohya-{args.mode}"), "--output_name", "bench", "--save_model_as", "safetensors",
        "--save_every_n_steps", "1000000", "--train_batch_size", str(args.batch), "--max_train_steps", str(steps),
        "--mixed_precision", args.precision, "--save_precision", args.precision, "--gradient_checkpointing", "--sdpa",
        "--cache_latents", "--cache_text_encoder_outputs", "--max_data_loader_n_workers", "0", "--seed", "0",
        "--lr_scheduler", "constant", "--no_half_vae",
    ]  # fmt: skip
    if args.mode == "full":
        command += ["--learning_rate", "1e-5", "--optimizer_type", "Adafactor", "--max_grad_norm", "0",
                    "--optimizer_args", "scale_parameter=False", "relative_step=False", "warmup_init=False"]  # fmt: skip
        if args.precision == "bf16":
            command.append("--full_bf16")
    else:
        optimizer = {"adamw": "AdamW", "adamw8bit": "AdamW8bit"}[args.optimizer]
        command += ["--learning_rate", "1e-4", "--optimizer_type", optimizer, "--network_module", "networks.lora",
                    "--network_dim", str(args.rank), "--network_alpha", str(args.rank / 2), "--network_train_unet_only"]  # fmt: skip
    return command


STEP_PATTERN = re.compile(r"steps:\s+\d+%.*?\|\s*(\d+)/(\d+)")


def run_kohya(args, work: Path) -> dict:
    assets = prepare_kohya_assets(args, work)
    command = kohya_command(args, assets, work)
    marks: dict[int, float] = {}
    tail: list[str] = []
    with GpuMemoryPoll() as poll:
        process = subprocess.Popen(command, cwd=args.kohya, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        buffer = ""
        while True:
            chunk = process.stdout.read(256)
            if not chunk:
                break
            buffer += chunk
            *parts, buffer = re.split(r"[\r\n]", buffer)
            for part in parts:
                match = STEP_PATTERN.search(part)
                if match:
                    marks.setdefault(int(match.group(1)), time.perf_counter())
                if part.strip():
                    tail = (tail + [part])[-40:]
        code = process.wait()
    if code != 0:
        raise RuntimeError(f"kohya exited with {code}:\n" + "\n".join(tail))
    steps = args.warmup + args.steps
    return {
        "trainer": "kohya sd-scripts",
        "mode": args.mode,
        "images_per_s": images_per_second(marks, args.batch, args.warmup, steps),
        "gpu_peak_gib": poll.peak_gib,
    }


# ------------------------------------------------------------------------------------ main


def worker_command(args, mode: str) -> list[str]:
    command = [sys.executable, __file__, "--worker", "--mode", mode, "--workdir", args.workdir, "--batch", str(args.batch),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--precision", args.precision,
               "--optimizer", args.optimizer, "--rank", str(args.rank)]  # fmt: skip
    command += ["--peak-tflops", str(args.peak_tflops)] + (["--checkpoint", args.checkpoint] if args.checkpoint else [])
    return command + (["--smoke"] if args.smoke else [])


def run_ours_measured(args, mode: str) -> dict:
    with GpuMemoryPoll() as poll:
        done = subprocess.run(worker_command(args, mode), capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"animekit worker failed ({done.returncode}):\n{done.stderr[-4000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["gpu_peak_gib"] = poll.peak_gib
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny SDXL-shaped models on the CPU: checks the script, measures nothing real")
    parser.add_argument("--mode", choices=("lora", "full", "both"), default="both")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20, help="timed steps (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--precision", choices=("bf16", "fp16"), default="bf16")
    parser.add_argument("--optimizer", choices=("adamw", "adamw8bit"), default="adamw", help="LoRA optimizer")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--kohya", help="path to a kohya sd-scripts checkout (its requirements installed)")
    parser.add_argument("--kohya-python", default=sys.executable, help="Python with kohya's requirements")
    parser.add_argument("--workdir", help="where assets and outputs go (default: a temporary folder, removed after)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--checkpoint", help="train from this SDXL single-file .safetensors instead of random weights")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's dense bf16 TFLOP/s, for MFU (H100/H200: 989)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch, args.steps, args.warmup = min(args.batch, 2), min(args.steps, 3), min(args.warmup, 1)

    if args.worker:
        print(json.dumps(run_ours(args)))
        return 0

    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("bench_train: no CUDA GPU here; run on a GPU machine, or use --smoke to check the script on the CPU", file=sys.stderr)
        return 2
    temporary = args.workdir is None
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="animekit-bench-")
    work = Path(args.workdir)
    size = 64 if args.smoke else 1024
    if not (work / "data" / "1_bench").is_dir():
        write_dataset(work / "data" / "1_bench", max(8, args.batch * 4), size)
    results = {"device": "cpu (smoke)" if args.smoke else torch.cuda.get_device_name(0), "batch": args.batch,
               "resolution": size, "precision": args.precision, "runs": []}  # fmt: skip
    try:
        for mode in ("lora", "full") if args.mode == "both" else (args.mode,):
            results["runs"].append(run_ours_measured(args, mode))
            if args.kohya and not args.smoke:
                args.mode = mode
                results["runs"].append(run_kohya(args, work))
        if not args.kohya:
            results["kohya"] = "not run: pass --kohya PATH_TO_SD_SCRIPTS to measure it on this machine"
        elif args.smoke:
            results["kohya"] = "not run in --smoke mode (kohya needs the real SDXL architecture and a GPU)"
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


def format_table(results: dict) -> str:
    lines = [f"{results['device']}, {results['resolution']}x{results['resolution']}, batch {results['batch']}, {results['precision']}",
             f"{'trainer':<18}{'mode':<6}{'images/s':>10}{'MFU':>7}{'GPU peak GiB':>14}{'allocated':>11}{'reserved':>10}{'plan':>7}"]  # fmt: skip
    for run in results["runs"]:
        speed = f"{run['images_per_s']:.2f}" if run.get("images_per_s") else "-"
        gpu = f"{run['gpu_peak_gib']:.2f}" if run.get("gpu_peak_gib") is not None else "-"
        torch_peak = f"{run['torch_peak_allocated_gib']:.2f}" if "torch_peak_allocated_gib" in run else "-"
        reserved = f"{run['torch_peak_reserved_gib']:.2f}" if "torch_peak_reserved_gib" in run else "-"
        plan = f"{run['plan_allocated_gib']:.2f}" if "plan_allocated_gib" in run else "-"
        mfu = f"{run['mfu'] * 100:.0f}%" if run.get("mfu") else "-"
        lines.append(f"{run['trainer']:<18}{run['mode']:<6}{speed:>10}{mfu:>7}{gpu:>14}{torch_peak:>11}{reserved:>10}{plan:>7}")
    lines.append("plan: the memory plan's allocated peak (training/memory_estimate.py) for the AnimeKit run")
    if "kohya" in results:
        lines.append(f"kohya: {results['kohya']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
