"""CPU side by side: AnimeKit's trainer vs kohya sd-scripts (and ComfyUI's native TrainLoraNode) on one SD1.5 LoRA job.

    python benchmarks/bench_train_vs_kohya_cpu.py --kohya /tmp/sd-scripts --kohya-python /tmp/kohya-venv/bin/python \\
        [--comfyui /path/to/ComfyUI] [--rounds 2] [--warmup 2] [--steps 5]
    python benchmarks/bench_train_vs_kohya_cpu.py --tiny --only animekit   # seconds: tiny model, checks the script

The same job for every trainer, in one run, alternating (round 1: AnimeKit, kohya, ComfyUI; round 2: ...):
- one random-weight single-file checkpoint with every key and shape of a real SD1.5 file (fp16 on disk,
  tests/support/checkpoints.py), built once at run time;
- the same 8 captioned 256x256 images (kohya's `1_bench` folder layout, read by both);
- LoRA rank 16 / alpha 8 on the UNet only, AdamW (lr 1e-4, constant), fp32, batch 1, latents cached in
  memory, text encoder run each step (kohya's SD1.5 train_network.py cannot cache its outputs), SDPA
  attention, no gradient checkpointing, no samples; only each tool's final LoRA file is written.
ComfyUI's TrainLoraNode has fixed targets of its own (a LoRA on every linear and conv weight, plus a
trained difference on every bias and norm weight) and its latents and conditioning are computed before it
runs: it is the node a user would try, not the identical job.

Seconds per step: every tool shows a tqdm bar per optimizer step; this script timestamps each bar update
as it arrives and takes (time at step warmup+steps - time at step warmup) / steps, so loading, caching
and saving are outside the figure, for all tools alike. Peak RSS: the summed resident memory of the
process tree, polled every 50 ms with psutil; "train" is the peak from the first step on, "run" the peak
of the whole run (loading included). RSS counts the pages of a memory-mapped checkpoint the page cache
happens to hold, so it varies from run to run; "anon" (RSS minus file-backed pages, Linux) is the memory
the process itself allocated, the steadier figure. The machine's 1-minute load average is recorded beside each run:
the CPUs may be shared, so read the ratios of runs that alternated, not single figures.

kohya runs from its own virtual environment (`--kohya-python`: torch, then its requirements.txt; it needs
no torchvision here: its two uses, ToTensor and Normalize while caching, are shimmed by a launcher this
script writes). Its CLIP tokenizer is read from `--tokenizer_cache_dir`, filled with ComfyUI's
sd1_tokenizer files (the same vocabulary AnimeKit uses); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOLS = ("animekit", "kohya", "comfyui")
KOHYA_TOKENIZER = "openai/clip-vit-large-patch14"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")
# The tqdm bar each tool draws once per optimizer step: (description, done, total).
STEP_BARS = {
    "animekit": re.compile(r"(?:^|\s)training:[^|]*\|[^|]*\|\s*(\d+)/(\d+)"),
    "kohya": re.compile(r"steps:[^|]*\|[^|]*\|\s*(\d+)/(\d+)"),
    "comfyui": re.compile(r"Training LoRA[^|]*\|[^|]*\|\s*(\d+)/(\d+)"),
}
CAPTIONS = ("1girl, solo, red hair, smile", "1boy, solo, blue eyes, school uniform", "1girl, long hair, outdoors, sky",
            "2girls, sitting, bench, park")  # fmt: skip


# ------------------------------------------------------------------------------------------- assets


def write_dataset(folder: Path, count: int, size: int) -> Path:
    """`count` smooth random images with Danbooru-style captions (kohya `1_bench` layout: 1 repeat)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((size, size), Image.BILINEAR).save(folder / f"{i:03d}.png")
        (folder / f"{i:03d}.txt").write_text(CAPTIONS[i % len(CAPTIONS)], encoding="utf-8")
    return folder


def comfy_tokenizer_dir(comfyui: str | None) -> Path:
    for root in (comfyui, os.environ.get("COMFYUI_PATH")):
        if root and (Path(root) / "comfy" / "sd1_tokenizer" / "vocab.json").is_file():
            return Path(root) / "comfy" / "sd1_tokenizer"
    raise FileNotFoundError("the CLIP tokenizer files: pass --comfyui or set COMFYUI_PATH to a ComfyUI checkout "
                            "(its comfy/sd1_tokenizer/ folder is used by both trainers)")  # fmt: skip


def prepare(args, work: Path) -> dict:
    """Checkpoint, dataset, kohya's tokenizer cache and launcher, AnimeKit's TOML (each made once)."""
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    data = work / "data" / "1_bench"
    if not data.is_dir():
        write_dataset(data, args.images, args.size)
    assets = {"data": data.parent, "images": data}
    if args.tiny:
        from support.tiny_single_file import make_single_file, make_tiny_vocab

        checkpoint = work / "sd15-tiny.safetensors"
        if not checkpoint.is_file():
            make_single_file(checkpoint, "sd15", dtype=torch.float16)
        tokenizer = work / "tiny-vocab"
        if not (tokenizer / "vocab.json").is_file():
            make_tiny_vocab(tokenizer)
    else:
        checkpoint = work / "sd15-random.safetensors"
        if not checkpoint.is_file():
            from support.checkpoints import write_checkpoint

            print(f"writing a random-weight SD1.5 checkpoint (real layout, fp16, ~2 GB) to {checkpoint}", file=sys.stderr)
            write_checkpoint(checkpoint, "sd15", full_size=True, dtype=torch.float16)
        tokenizer = comfy_tokenizer_dir(args.comfyui)
    assets.update(checkpoint=checkpoint, tokenizer=tokenizer)
    assets["animekit_toml"] = write_animekit_toml(args, work, assets)
    if "kohya" in args.only:
        cache = work / "kohya-tokenizers" / KOHYA_TOKENIZER.replace("/", "_")
        cache.mkdir(parents=True, exist_ok=True)
        for name in TOKENIZER_FILES:
            if (tokenizer / name).is_file():
                shutil.copyfile(tokenizer / name, cache / name)
        config = json.loads((cache / "tokenizer_config.json").read_text(encoding="utf-8"))
        config["model_max_length"] = 77  # as openai/clip-vit-large-patch14's; ComfyUI's copy says 8192 (it pads itself)
        (cache / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        assets["kohya_tokenizers"] = cache.parent
        assets["kohya_launcher"] = work / "kohya_launch.py"
        assets["kohya_launcher"].write_text(KOHYA_LAUNCHER, encoding="utf-8")
    return assets


def write_animekit_toml(args, work: Path, assets: dict) -> Path:
    steps = args.warmup + args.steps
    text = f"""seed = 0
[model]
path = {json.dumps(str(assets['checkpoint']))}
tokenizer = {json.dumps(str(assets['tokenizer']))}
[network]
rank = {args.rank}
alpha = {args.rank / 2}
[optimizer]
type = "adamw"
lr = 1e-4
[schedule]
name = "constant"
max_steps = {steps}
[precision]
mixed = "no"
gradient_checkpointing = false
[cache]
latents = "memory"
text_encoder_outputs = {'true' if args.animekit_cache_te else 'false'}
[save]
output_dir = {json.dumps(str(work / 'animekit-out'))}
name = "bench"
save_state = false
precision = "fp32"
[logging]
tensorboard = false
[dataset]
batch_size = 1
verify_images = false
[dataset.buckets]
resolution = {args.size}
min_size = {args.size}
max_size = {args.size}
[[dataset.folders]]
path = {json.dumps(str(assets['images']))}
"""
    path = work / "animekit.toml"
    path.write_text(text, encoding="utf-8")
    return path


# Runs kohya's script with torchvision's two caching transforms shimmed. transformers and diffusers are
# imported first, so they record torchvision as absent and never reach for its other features.
KOHYA_LAUNCHER = '''"""Run a kohya sd-scripts script without torchvision (written by bench_train_vs_kohya_cpu.py)."""
import runpy, sys, types
import diffusers, numpy, torch, transformers  # noqa: F401  (import-time torchvision checks see it absent)
import diffusers.utils.import_utils, transformers.utils.import_utils  # noqa: F401

class Compose:
    def __init__(self, transforms): self.transforms = transforms
    def __call__(self, x):
        for t in self.transforms: x = t(x)
        return x

class ToTensor:
    def __call__(self, pic):
        a = numpy.asarray(pic)
        a = a[:, :, None] if a.ndim == 2 else a
        t = torch.from_numpy(numpy.ascontiguousarray(a)).permute(2, 0, 1).contiguous()
        return t.float().div(255) if t.dtype == torch.uint8 else t

class Normalize:
    def __init__(self, mean, std): self.mean, self.std = torch.tensor(mean), torch.tensor(std)
    def __call__(self, t): return (t - self.mean.view(-1, 1, 1)) / self.std.view(-1, 1, 1)

def pil_to_tensor(image):
    return torch.from_numpy(numpy.array(image)).permute(2, 0, 1).contiguous()

tv, tr, fn = (types.ModuleType(n) for n in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"))
tr.Compose, tr.ToTensor, tr.Normalize, tr.functional, fn.pil_to_tensor, tv.transforms = Compose, ToTensor, Normalize, fn, pil_to_tensor, tr
sys.modules.update({"torchvision": tv, "torchvision.transforms": tr, "torchvision.transforms.functional": fn})
script, sys.argv = sys.argv[1], sys.argv[1:]
sys.path.insert(0, str(__import__("pathlib").Path(script).resolve().parent))
runpy.run_path(script, run_name="__main__")
'''


# ------------------------------------------------------------------------------------------ commands


def animekit_command(args, assets: dict) -> list[str]:
    if args.tiny:  # tiny files need the tiny component configs: the worker patches them in
        return [sys.executable, __file__, "--worker-animekit-tiny", str(assets["animekit_toml"])]
    return [sys.executable, "-m", "animekit", "train", str(assets["animekit_toml"])]


def kohya_command(args, assets: dict, work: Path) -> list[str]:
    steps = args.warmup + args.steps
    return [
        args.kohya_python, str(assets["kohya_launcher"]), str(Path(args.kohya) / "train_network.py"),
        "--pretrained_model_name_or_path", str(assets["checkpoint"]), "--tokenizer_cache_dir", str(assets["kohya_tokenizers"]),
        "--train_data_dir", str(assets["data"]), "--caption_extension", ".txt", "--resolution", f"{args.size},{args.size}",
        "--output_dir", str(work / "kohya-out"), "--output_name", "bench", "--save_model_as", "safetensors",
        "--save_precision", "float", "--train_batch_size", "1", "--max_train_steps", str(steps),
        "--mixed_precision", "no", "--sdpa", "--cache_latents", "--max_data_loader_n_workers", "0", "--seed", "0",
        "--learning_rate", "1e-4", "--lr_scheduler", "constant", "--optimizer_type", "AdamW",
        "--network_module", "networks.lora", "--network_dim", str(args.rank), "--network_alpha", str(args.rank / 2),
        "--network_train_unet_only",
    ]  # fmt: skip


def comfyui_command(args, assets: dict) -> list[str]:
    return [sys.executable, __file__, "--worker-comfyui", str(assets["checkpoint"]), "--comfyui", args.comfyui,
            "--data", str(assets["images"]), "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--rank", str(args.rank)]  # fmt: skip


def comfyui_worker(args) -> int:
    """ComfyUI's own TrainLoraNode in this process, as a workflow would run it (fp32, no checkpointing)."""
    import numpy as np
    import torch
    from PIL import Image

    sys.path.insert(0, str(REPO / "tests"))
    from support.host import import_comfy

    import_comfy(Path(args.comfyui).resolve())
    import comfy.sd
    from comfy_extras.nodes_train import TrainLoraNode

    images = sorted(Path(args.data).glob("*.png"))
    with torch.inference_mode():  # as CheckpointLoaderSimple, VAEEncode and CLIPTextEncode run
        model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(args.worker_comfyui)
        pixels = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255) for p in images])
        latents = {"samples": vae.encode(pixels)}
        positive = []
        for p in images:
            caption = p.with_suffix(".txt").read_text(encoding="utf-8")
            positive += clip.encode_from_tokens_scheduled(clip.tokenize(caption))
        TrainLoraNode().train(
            model, latents, positive, batch_size=1, steps=args.warmup + args.steps, grad_accumulation_steps=1,
            learning_rate=1e-4, rank=args.rank, optimizer="AdamW", loss_function="MSE", seed=0, training_dtype="fp32",
            lora_dtype="fp32", algorithm="LoRA", gradient_checkpointing=False, existing_lora="[None]",
        )  # fmt: skip
    return 0


def animekit_tiny_worker(config: str) -> int:
    """`animekit train` on the tiny single file: the component configs are the tiny models' (as the tests do)."""
    sys.path.insert(0, str(REPO / "tests"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    from support.tiny_single_file import tiny_configs

    from animekit.__main__ import main
    from animekit.checkpoints.architecture import SD15
    from animekit.training import model_facts
    from animekit.training.adapters import single_file

    single_file.reference_config = tiny_configs
    model_facts.detect_architecture = lambda shapes, name: SD15
    return main(["train", config])


# ------------------------------------------------------------------------------------------ measuring


def seconds_per_step(marks: dict[int, float], warmup: int, last: int) -> float | None:
    """Mean seconds of steps warmup+1 .. last, from the times their bar updates arrived."""
    if warmup >= last or warmup not in marks or last not in marks:
        return None
    return (marks[last] - marks[warmup]) / (last - warmup)


class TreeRSS:
    """Peak summed RSS of a process and its children, polled in a thread; `mark()` starts the "train" peak."""

    def __init__(self, pid: int, interval: float = 0.05):
        import psutil

        self.root, self.interval = psutil.Process(pid), interval
        self.peak_run = self.peak_train = self.peak_anon = 0
        self.training = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = anon = 0
            try:
                for process in [self.root, *self.root.children(recursive=True)]:
                    try:
                        info = process.memory_info()
                    except psutil.Error:
                        continue
                    total += info.rss
                    anon += info.rss - getattr(info, "shared", 0)
            except psutil.Error:
                break
            self.peak_run = max(self.peak_run, total)
            self.peak_anon = max(self.peak_anon, anon)
            if self.training:
                self.peak_train = max(self.peak_train, total)
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def measure(tool: str, command: list[str], args, cwd: Path | None = None, log: Path | None = None) -> dict:
    """Run one trainer, timestamp its step bar, poll its memory (its whole output goes to `log`);
    raises with its output tail on failure."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    pattern, last = STEP_BARS[tool], args.warmup + args.steps
    marks: dict[int, float] = {}
    tail: list[str] = []
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    rss = TreeRSS(process.pid)
    buffer = b""
    sink = open(log, "wb") if log else None
    while chunk := process.stdout.read1(4096):
        now = time.perf_counter()
        if sink:
            sink.write(chunk)
        buffer += chunk
        *parts, buffer = re.split(rb"[\r\n]", buffer)
        for raw in parts:
            line = raw.decode("utf-8", "replace")
            match = pattern.search(line)
            if match and int(match.group(2)) == last:
                step = int(match.group(1))
                marks.setdefault(step, now)
                rss.training = rss.training or step >= 1
            if line.strip():
                tail = (tail + [line])[-30:]
    code = process.wait()
    rss.stop()
    if sink:
        sink.close()
    wall = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"{tool} exited with {code}: {' '.join(command)}\n" + "\n".join(tail))
    return {
        "tool": tool,
        "s_per_step": seconds_per_step(marks, args.warmup, last),
        "steps_seen": sorted(marks),
        "peak_rss_train_gib": round(rss.peak_train / 2**30, 2),
        "peak_rss_run_gib": round(rss.peak_run / 2**30, 2),
        "peak_anon_run_gib": round(rss.peak_anon / 2**30, 2),
        "wall_s": round(wall, 1),
        "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


# ------------------------------------------------------------------------------------------ report


FIGURES = ("s_per_step", "peak_rss_train_gib", "peak_rss_run_gib", "peak_anon_run_gib")


def summarise(runs: list[dict]) -> dict:
    """Median per tool over the rounds, and AnimeKit / other ratios (< 1: AnimeKit faster / smaller)."""
    tools: dict[str, dict] = {}
    for tool in TOOLS:
        mine = [r for r in runs if r["tool"] == tool and r["s_per_step"] is not None]
        if mine:
            tools[tool] = {key: statistics.median(r[key] for r in mine) for key in FIGURES if all(key in r for r in mine)}
    ratios = {}
    if "animekit" in tools:
        for other in ("kohya", "comfyui"):
            if other in tools:
                common = [k for k in FIGURES if k in tools["animekit"] and k in tools[other]]
                ratios[f"animekit/{other}"] = {k: round(tools["animekit"][k] / tools[other][k], 3) for k in common}
    return {"median": tools, "ratios": ratios}


def format_report(runs: list[dict], summary: dict) -> str:
    lines = [f"{'round':<6}{'tool':<10}{'s/step':>9}{'RSS train':>11}{'RSS run':>9}{'anon run':>10}{'wall s':>8}  load (start, end)"]
    for run in runs:
        if "error" in run:
            lines.append(f"{run['round']:<6}{run['tool']:<10}failed: {run['error'].splitlines()[-1][:200]}")
            continue
        speed = f"{run['s_per_step']:.2f}" if run["s_per_step"] is not None else "-"
        anon = f"{run['peak_anon_run_gib']:.2f}G" if "peak_anon_run_gib" in run else "-"
        lines.append(f"{run['round']:<6}{run['tool']:<10}{speed:>9}{run['peak_rss_train_gib']:>10.2f}G"
                     f"{run['peak_rss_run_gib']:>8.2f}G{anon:>10}{run['wall_s']:>8.0f}  {run['load_1min']}")  # fmt: skip
    for tool, m in summary["median"].items():
        lines.append(f"median {tool:<10} " + ", ".join(f"{k} {v:.2f}" for k, v in m.items()))
    for name, r in summary["ratios"].items():
        lines.append(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in r.items()) + "  (< 1: AnimeKit faster / smaller)")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kohya", help="a kohya-ss/sd-scripts checkout")
    parser.add_argument("--kohya-python", help="the python of a venv with kohya's requirements (and torch)")
    parser.add_argument("--comfyui", default=os.environ.get("COMFYUI_PATH"), help="a ComfyUI checkout (TrainLoraNode; tokenizer files)")
    parser.add_argument("--only", default=None, help="comma-separated subset of " + ",".join(TOOLS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--animekit-cache-te", action="store_true", help="AnimeKit also caches text-encoder outputs")
    parser.add_argument("--tiny", action="store_true", help="tiny SD1.5 model (AnimeKit only): checks the script in seconds")
    parser.add_argument("--workdir", help="assets and outputs, reused when present (default: a temporary folder, removed)")
    parser.add_argument("--json", help="also write runs and summary to this file")
    parser.add_argument("--worker-animekit-tiny", help=argparse.SUPPRESS)
    parser.add_argument("--worker-comfyui", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_animekit_tiny:
        return animekit_tiny_worker(args.worker_animekit_tiny)
    if args.worker_comfyui:
        return comfyui_worker(args)

    available = ["animekit"] + (["kohya"] if args.kohya and args.kohya_python else []) + (["comfyui"] if args.comfyui else [])
    args.only = [t.strip() for t in (args.only or ",".join(available)).split(",") if t.strip()]
    unknown = [t for t in args.only if t not in TOOLS]
    if unknown:
        parser.error(f"--only: unknown tool(s) {unknown}; expected some of {', '.join(TOOLS)}")
    if "kohya" in args.only and not (args.kohya and args.kohya_python):
        parser.error("--only kohya needs --kohya (sd-scripts checkout) and --kohya-python")
    if "comfyui" in args.only and not args.comfyui:
        parser.error("--only comfyui needs --comfyui (or COMFYUI_PATH)")
    if args.tiny and args.only != ["animekit"]:
        parser.error("--tiny runs AnimeKit only: the tiny model has no kohya / ComfyUI counterpart (add --only animekit)")
    temporary = args.workdir is None
    work = Path(args.workdir or tempfile.mkdtemp(prefix="animekit-bench-kohya-cpu-"))
    work.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    try:
        assets = prepare(args, work)
        commands = {
            "animekit": lambda: animekit_command(args, assets),
            "kohya": lambda: kohya_command(args, assets, work),
            "comfyui": lambda: comfyui_command(args, assets),
        }
        for round_ in range(1, args.rounds + 1):
            for tool in args.only:
                cwd = Path(args.kohya) if tool == "kohya" else REPO
                try:
                    run = measure(tool, commands[tool](), args, cwd=cwd, log=work / f"{tool}-round{round_}.log")
                except RuntimeError as error:  # one tool failing still leaves the others' figures
                    run = {"tool": tool, "error": str(error)[-3000:], "s_per_step": None}
                run["round"] = round_
                runs.append(run)
                print(json.dumps(run), file=sys.stderr, flush=True)
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    summary = summarise(runs)
    print(f"SD1.5 LoRA r{args.rank} UNet only, {args.size}px, fp32, batch 1, AdamW, cached latents, "
          f"{args.warmup} warm-up + {args.steps} timed steps, {os.cpu_count()} CPUs")  # fmt: skip
    print(format_report(runs, summary))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "summary": summary}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
