"""Does the trainer keep its speed inside ComfyUI? The LoRA node vs the headless trainer, same settings.

    python benchmarks/bench_train_nodes.py --comfyui ~/ComfyUI            # GPU: real SDXL at 1024x1024
    python benchmarks/bench_train_nodes.py --comfyui ~/ComfyUI --smoke    # CPU: tiny SDXL, checks the script

Both sides train a rank-16 / alpha-8 UNet LoRA with AdamW (lr 1e-4, constant), bf16 autocast with
bf16 frozen weights, gradient checkpointing, latents and text-encoder outputs cached, batch
`--batch`, on the same 1024x1024 images:
- headless: benchmarks/bench_train.py's worker (diffusers UNet of the real SDXL architecture);
- ComfyUI: the AnimeKitTrainLora node's run (nodes/train_run.py) on a random-weight checkpoint of
  the real SDXL layout loaded by ComfyUI itself (`--bf16-unet --bf16-text-enc --fp32-vae`, as a
  user would start it for bf16 training), in a ComfyUI process of its own.
Speed is images per second between the end of step `--warmup` and the last step, read at each
step's end (the loop's on_step hook, right after it has read the loss), the same way for both.
The ComfyUI side passes when it reaches at least 95% of the headless speed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO / "tests"))

import bench_train  # noqa: E402  (the headless side and the shared dataset)

TOLERANCE = 0.95


def comfy_worker(args) -> dict:
    """One node run in this process (ComfyUI imported from --comfyui); prints a JSON line."""
    import torch

    from support.host import import_comfy

    import_comfy(Path(args.comfyui).resolve())
    from comfy.cli_args import args as comfy_args

    comfy_args.bf16_unet, comfy_args.bf16_text_enc, comfy_args.fp32_vae = True, True, True
    import comfy.model_management
    import comfy.sd
    import folder_paths

    work = Path(args.workdir)
    folder_paths.set_output_directory(str(work / "comfy-out"))
    folder_paths.folder_names_and_paths["loras"] = ([str(work / "comfy-loras")], {".safetensors"})
    from animekit.nodes.training import progress as train_progress, run as train_run
    from animekit.nodes.training.dataset import bucket_config, build_dataset
    from animekit.training.data.captions import CaptionConfig

    size = 64 if args.smoke else 1024
    if args.smoke:
        from support.comfy_models import tiny_sdxl

        torch.set_num_threads(1)
        models = tiny_sdxl()
        model, clip, vae = models.model, models.clip, models.vae
    else:
        with torch.inference_mode():  # as CheckpointLoaderSimple runs
            model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(work / "sdxl-random.safetensors"))
    buckets = bucket_config(size, size, size, 64, False)
    spec = build_dataset(str(work / "data" / "1_bench"), repeats=1, caption_extension=".txt", buckets=buckets,
                         captions=CaptionConfig(), flip=False, random_crop=False)  # fmt: skip
    steps = args.warmup + args.steps
    values = dict(
        model=model, clip=clip, vae=vae, dataset=spec, filename="bench", steps=steps, batch_size=args.batch,
        gradient_accumulation=1, unet_lr=1e-4, train_text_encoder=False, text_encoder_lr=1e-4, rank=args.rank,
        alpha=args.rank / 2, conv_rank=0, conv_alpha=1.0, noise_offset=0.0, min_snr_gamma=0.0, optimizer=args.optimizer,
        lr_scheduler="constant", warmup_steps=0, mixed_precision="no" if args.smoke else "bf16",
        gradient_checkpointing=True, cache_latents="memory", cache_text_encoder_outputs=True, training_seed=0,
        save_every_n_steps=0, sample_every_n_steps=0, sample_prompts="", sample_negative="", sample_steps=1,
        sample_cfg=1.0, resume=False, continue_from="none",
    )  # fmt: skip
    marks: dict[int, float] = {}
    monitor = train_progress.TrainingMonitor
    original_on_step, original_progress = monitor.on_step, monitor.progress

    def on_step(self, step, loss, rates):  # the loop has just read the loss: the step is finished on the GPU
        marks[step] = time.perf_counter()
        original_on_step(self, step, loss, rates)

    def progress(self, p):
        if p.phase == "train" and p.done == 0 and torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        original_progress(self, p)

    monitor.on_step, monitor.progress = on_step, progress
    with torch.inference_mode():  # nodes run under inference mode
        outcome = train_run.run_training(values, lora=True, node_id=None, prompt=None, title="bench")
    report = {
        "trainer": "animekit-comfyui",
        "mode": "lora",
        "steps": outcome.result.steps,
        "images_per_s": bench_train.images_per_second(marks, args.batch, args.warmup, steps),
        "last_loss": outcome.result.last_loss,
    }
    if torch.cuda.is_available():
        report["torch_peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return report


def run_worker(command: list[str]) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"worker failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui", required=True, help="path to a ComfyUI checkout (0.3.64 or newer)")
    parser.add_argument("--smoke", action="store_true", help="tiny SDXL on the CPU: checks the script, measures nothing real")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20, help="timed steps (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--optimizer", choices=("adamw", "adamw8bit"), default="adamw")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--workdir", help="assets and outputs (default: a temporary folder, removed after)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch, args.steps, args.warmup = min(args.batch, 2), min(args.steps, 3), min(args.warmup, 1)
    if args.worker:
        print(json.dumps(comfy_worker(args)))
        return 0

    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("bench_train_nodes: no CUDA GPU here; run on a GPU machine, or use --smoke on the CPU", file=sys.stderr)
        return 2
    temporary = args.workdir is None
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="animekit-bench-nodes-")
    work = Path(args.workdir)
    size = 64 if args.smoke else 1024
    try:
        if not (work / "data" / "1_bench").is_dir():
            bench_train.write_dataset(work / "data" / "1_bench", max(8, args.batch * 4), size)
        if not args.smoke and not (work / "sdxl-random.safetensors").is_file():
            from support.checkpoints import write_checkpoint

            write_checkpoint(work / "sdxl-random.safetensors", "sdxl", full_size=True, dtype=torch.bfloat16)
        common = ["--workdir", str(work), "--batch", str(args.batch), "--steps", str(args.steps),
                  "--warmup", str(args.warmup), "--optimizer", args.optimizer, "--rank", str(args.rank)]  # fmt: skip
        smoke = ["--smoke"] if args.smoke else []
        headless = run_worker([sys.executable, str(REPO / "benchmarks" / "bench_train.py"), "--worker", "--mode", "lora",
                               "--precision", "bf16", *common, *smoke])  # fmt: skip
        comfy = run_worker([sys.executable, __file__, "--worker", "--comfyui", args.comfyui, *common, *smoke])
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    ratio = comfy["images_per_s"] / headless["images_per_s"] if comfy.get("images_per_s") and headless.get("images_per_s") else None
    results = {"device": "cpu (smoke)" if args.smoke else torch.cuda.get_device_name(0), "batch": args.batch,
               "resolution": size, "runs": [headless, comfy], "ratio": ratio}  # fmt: skip
    for run in results["runs"]:
        speed = f"{run['images_per_s']:.3f}" if run.get("images_per_s") else "-"
        print(f"{run['trainer']:<20} {speed:>10} images/s  peak {run.get('torch_peak_allocated_gib', '-')} GiB")
    verdict = "n/a" if ratio is None else f"{ratio:.3f} ({'within' if ratio >= TOLERANCE else 'NOT within'} 5%)"
    print(f"{results['device']}, {size}x{size}, batch {args.batch}: ComfyUI / headless = {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0 if args.smoke or (ratio is not None and ratio >= TOLERANCE) else 1


if __name__ == "__main__":
    sys.exit(main())
