"""Benchmark `animekit extract-lora` beside kohya sd-scripts' networks/extract_lora_from_models.py.

    python benchmarks/bench_extract_lora.py --kohya /tmp/sd-scripts [--rank 4] [--workdir DIR] [--keep]

Writes two random-weight fp16 SD1.5 checkpoints of the real full-size layout (tests/support/checkpoints.py,
~2.1 GB each; "tuned" and "base" differ everywhere, so every layer's SVD is full work), then extracts a
rank-N LoRA from them with each tool, each in its own process, on the CPU, saving fp16:

- animekit: ``python -m animekit extract-lora TUNED BASE --rank N --device cpu``
- kohya:    ``extract_lora_from_models.py --model_tuned TUNED --model_org BASE --dim N --save_precision fp16
  --device cpu`` (sd-scripts checked out anywhere, given by --kohya; it runs in this environment with
  stand-ins for torchvision and cv2, which only its image helpers import, written into the work folder)

Prints wall time and peak RSS (os.wait4's ru_maxrss of that process) with the ratios, and compares the two
LoRAs: the same module names, and per layer the relative difference of up @ down (sign-free). Targets
(issue 12): faster than kohya, under 1 GB RSS.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNNER = '''"""Run a script with transformers / diffusers imported first, then stand-ins for image / training-only packages.

transformers 5 dropped CLIPTextModel's `text_model.` level; sd-scripts (written for 4.x) loads state dicts
with it, so its keys are read without it (the weights are the same)."""
import runpy, sys, types
import diffusers  # noqa: F401
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: F401
if "text_model.embeddings.token_embedding.weight" not in CLIPTextModel(CLIPTextConfig(
        hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1)).state_dict():
    _load = CLIPTextModel.load_state_dict
    def _strip(self, state_dict, *args, **kwargs):
        state_dict = {k[len("text_model."):] if k.startswith("text_model.") else k: v for k, v in state_dict.items()}
        return _load(self, state_dict, *args, **kwargs)
    CLIPTextModel.load_state_dict = _strip
for name in ("torchvision", "torchvision.transforms", "cv2", "toml", "imagesize", "voluptuous"):
    sys.modules.setdefault(name, types.ModuleType(name))  # imported by sd-scripts' image / training helpers only
sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
class _Inert:  # stands for anything built at import time from the stand-ins (transforms.Compose([...]), ...)
    def __init__(self, *args, **kwargs): pass
    def __call__(self, *args, **kwargs): return _Inert()
def _inert_attribute(attr):
    if attr.startswith("__"):
        raise AttributeError(attr)
    return _Inert
sys.modules["torchvision.transforms"].__getattr__ = _inert_attribute
import transformers
if not hasattr(transformers, "CLIPFeatureExtractor"):  # removed in transformers 5; only imported by a pipeline module
    transformers.CLIPFeatureExtractor = transformers.CLIPImageProcessor
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
'''


def run_measured(name: str, argv: list[str], *, cwd=None, env=None, timeout: float | None = None):
    """(wall s, peak RSS MB, finished, output) of one process; stopped (finished False) after `timeout` s."""
    start = time.perf_counter()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    finished = True
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if timeout is not None and time.perf_counter() - start > timeout:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            finished = False
            break
        time.sleep(0.5)
    wall = time.perf_counter() - start
    log.seek(0)
    output = log.read().decode(errors="replace")
    if finished and os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed:\n{output[-3000:]}")
    return wall, usage.ru_maxrss / 1024, finished, output


def progress_of(output: str) -> tuple[int, int] | None:
    """The last tqdm "done/total" kohya printed (its SVD loop), to extrapolate a run that was stopped."""
    found = re.findall(r"(\d+)/(\d+) \[", output)
    return (int(found[-1][0]), int(found[-1][1])) if found else None


def compare(ours: Path, theirs: Path, tuned: Path, base: Path) -> str:
    """Same module names? And each LoRA's reconstruction error sqrt(sum ||D - up@down||^2 / sum ||D||^2) over all
    layers, D = tuned - base: on random (flat-spectrum) differences the top-rank directions are not unique, so the
    two tools' up@down may differ while approximating D equally well."""
    import torch
    from safetensors.torch import load_file

    from animekit.merge.lora_names import kohya_module

    a = load_file(ours)
    b = {k.replace("lora_te_encoder_", "lora_te_text_model_encoder_"): v for k, v in load_file(theirs).items()}  # transformers 5 names
    names_a = {k.split(".", 1)[0] for k in a}
    names_b = {k.split(".", 1)[0] for k in b}
    t, o = load_file(tuned), load_file(base)
    keys = {kohya_module("sd15", k)[0]: k for k in o if kohya_module("sd15", k)}
    sums = {"animekit": [0.0, 0.0], "kohya": [0.0, 0.0]}
    for name in sorted(names_a & names_b):
        d = (t[keys[name]].float() - o[keys[name]].float()).flatten(1)
        for tool, lora in (("animekit", a), ("kohya", b)):
            scale = float(lora[f"{name}.alpha"].float()) / lora[f"{name}.lora_down.weight"].shape[0]
            approx = lora[f"{name}.lora_up.weight"].float().flatten(1) @ lora[f"{name}.lora_down.weight"].float().flatten(1) * scale
            sums[tool][0] += float((d - approx).norm() ** 2)
            sums[tool][1] += float(d.norm() ** 2)
    errors = ", ".join(f"{tool} {(e / n) ** 0.5:.4f}" for tool, (e, n) in sums.items())
    return (f"modules: animekit {len(names_a)}, kohya {len(names_b)}, common {len(names_a & names_b)}; "
            f"relative reconstruction error of tuned - base: {errors}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kohya", required=True, help="an sd-scripts checkout (holds networks/extract_lora_from_models.py)")
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--workdir", help="where the test checkpoints go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoints and LoRAs")
    parser.add_argument("--svd", choices=["lowrank", "full"], default="lowrank", help="animekit's SVD (default lowrank)")
    parser.add_argument("--kohya-timeout", type=float, default=None,
                        help="stop kohya after this many seconds and extrapolate its time from its progress")
    args = parser.parse_args()
    kohya = Path(args.kohya).resolve()
    script = kohya / "networks" / "extract_lora_from_models.py"
    if not script.is_file():
        raise SystemExit(f"--kohya {str(kohya)!r}: no networks/extract_lora_from_models.py there")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="animekit-bench-extract-"))
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO / "tests"))
    from support.checkpoints import write_checkpoint

    base, tuned = work / "base.safetensors", work / "tuned.safetensors"
    try:
        for path, seed in ((base, 1), (tuned, 2)):
            if not path.exists():
                write_checkpoint(path, "sd15", seed=seed, full_size=True)
        (work / "run_kohya.py").write_text(RUNNER)
        ours, theirs = work / "animekit.safetensors", work / "kohya.safetensors"
        for out in (ours, theirs):
            out.unlink(missing_ok=True)
        env = dict(os.environ)  # `python -m animekit` needs the package installed (pip install -e .)
        a_wall, a_rss, _, _ = run_measured("animekit", [
            sys.executable, "-m", "animekit", "extract-lora", str(tuned), str(base), "--rank", str(args.rank),
            "--svd", args.svd, "--device", "cpu", "--quiet", "-o", str(ours)], env=env)
        k_env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(kohya), str(kohya / "networks")]))
        k_wall, k_rss, k_done, k_out = run_measured("kohya", [
            sys.executable, str(work / "run_kohya.py"), str(script), "--model_org", str(base), "--model_tuned", str(tuned),
            "--save_to", str(theirs), "--dim", str(args.rank), "--save_precision", "fp16", "--device", "cpu"],
            cwd=kohya, env=k_env, timeout=args.kohya_timeout)
        print(f"SD1.5 full-size, rank {args.rank}, CPU ({os.cpu_count()} cores), animekit --svd {args.svd}")
        print(f"{'tool':<10} {'wall s':>8} {'peak RSS MB':>12}")
        print(f"{'animekit':<10} {a_wall:>8.1f} {a_rss:>12.0f}")
        if k_done:
            print(f"{'kohya':<10} {k_wall:>8.1f} {k_rss:>12.0f}")
            print(f"ratios animekit/kohya: wall {a_wall / k_wall:.3f}x, peak RSS {a_rss / k_rss:.3f}x")
            print(compare(ours, theirs, tuned, base))
        else:
            done = progress_of(k_out)
            where = f"{done[0]}/{done[1]} layers" if done else "before its SVD loop"
            print(f"{'kohya':<10} {'>' + format(k_wall, '.0f'):>8} {k_rss:>12.0f}  (stopped at {where})")
            if done and done[0]:
                estimate = k_wall * done[1] / done[0]
                print(f"kohya extrapolated from its progress: ~{estimate:.0f} s; ratios animekit/kohya: wall <= "
                      f"{a_wall / k_wall:.3f}x (~{a_wall / estimate:.3f}x), peak RSS {a_rss / k_rss:.3f}x (so far)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
