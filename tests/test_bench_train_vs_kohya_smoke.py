"""benchmarks/bench_train_vs_kohya_cpu.py keeps working: its AnimeKit half on a tiny single file, and
the pieces that read kohya's and ComfyUI's step bars (no kohya or ComfyUI needed here)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from safetensors import safe_open

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train_vs_kohya_cpu.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_train_vs_kohya_cpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_step_bars_of_each_tool_are_read_and_timed():
    bench = _bench()
    lines = {
        "animekit": "training:  67%|██████▋   | 2/3 [00:31<00:15, 15.52s/step, loss=1.3439, epoch=1]",
        "kohya": "steps:  43%|████▎     | 3/7 [02:53<03:51, 57.71s/it, avr_loss=0.121]",
        "comfyui": "Training LoRA:  20%|██        | 1/5 [00:04<00:16,  4.02s/it, loss=0.0312]",
    }
    found = {tool: bench.STEP_BARS[tool].search(line).groups() for tool, line in lines.items()}
    assert found == {"animekit": ("2", "3"), "kohya": ("3", "7"), "comfyui": ("1", "5")}
    assert bench.STEP_BARS["animekit"].search("caching latents: 100%|██████████| 4/4 [00:03<00:00]") is None
    assert bench.seconds_per_step({0: 1.0, 1: 3.0, 2: 7.0, 3: 10.0}, warmup=1, last=3) == 3.5
    assert bench.seconds_per_step({0: 1.0, 1: 3.0}, warmup=1, last=3) is None  # a step never seen: no figure


def test_summary_takes_medians_and_ratios():
    bench = _bench()
    runs = [
        {"tool": "animekit", "s_per_step": 2.0, "peak_rss_train_gib": 4.0, "peak_rss_run_gib": 5.0},
        {"tool": "animekit", "s_per_step": 4.0, "peak_rss_train_gib": 4.0, "peak_rss_run_gib": 5.0},
        {"tool": "kohya", "s_per_step": 6.0, "peak_rss_train_gib": 8.0, "peak_rss_run_gib": 8.0},
        {"tool": "kohya", "s_per_step": None, "error": "kohya exited with 1"},
    ]
    summary = bench.summarise(runs)
    assert summary["median"]["animekit"] == {"s_per_step": 3.0, "peak_rss_train_gib": 4.0, "peak_rss_run_gib": 5.0}
    assert summary["ratios"] == {"animekit/kohya": {"s_per_step": 0.5, "peak_rss_train_gib": 0.5, "peak_rss_run_gib": 0.625}}


def test_kohya_gets_the_same_job(tmp_path):
    bench = _bench()
    args = bench.argparse.Namespace(warmup=2, steps=5, size=256, rank=16, kohya=str(tmp_path / "sd-scripts"), kohya_python="py")
    assets = {"kohya_launcher": tmp_path / "launch.py", "checkpoint": tmp_path / "m.safetensors",
              "kohya_tokenizers": tmp_path / "tok", "data": tmp_path / "data"}  # fmt: skip
    command = bench.kohya_command(args, assets, tmp_path)
    pairs = dict(zip(command[3::2], command[4::2]))
    assert pairs["--max_train_steps"] == "7" and pairs["--network_dim"] == "16" and pairs["--network_alpha"] == "8.0"
    assert pairs["--resolution"] == "256,256" and pairs["--mixed_precision"] == "no" and pairs["--optimizer_type"] == "AdamW"
    assert {"--cache_latents", "--sdpa", "--network_train_unet_only"} <= set(command)
    assert "--gradient_checkpointing" not in command


def test_animekit_half_trains_one_step_on_a_tiny_single_file(tmp_path):
    report = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(BENCH), "--tiny", "--only", "animekit", "--rounds", "1", "--warmup", "0", "--steps", "1",
         "--size", "64", "--images", "2", "--rank", "4", "--workdir", str(tmp_path / "work"), "--json", str(report)],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(report.read_text())
    [run] = results["runs"]
    assert run["tool"] == "animekit" and run["round"] == 1 and run["steps_seen"] == [0, 1]
    assert run["s_per_step"] > 0 and run["peak_rss_run_gib"] > 0
    assert set(results["summary"]["median"]) == {"animekit"} and results["summary"]["ratios"] == {}
    assert "median animekit   s_per_step" in done.stdout and run["peak_anon_run_gib"] > 0
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    with safe_open(str(tmp_path / "work" / "animekit-out" / "bench.safetensors"), framework="pt") as handle:
        keys = list(handle.keys())
        down, alpha = handle.get_tensor(f"{key}.lora_down.weight"), handle.get_tensor(f"{key}.alpha").item()
    assert keys and all(k.startswith("lora_unet_") for k in keys)
    assert down.shape[0] == 4 and alpha == 2.0  # --rank 4, alpha = rank / 2 as kohya's --network_alpha
