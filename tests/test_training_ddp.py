"""Two processes on the CPU (gloo), launched the way `accelerate launch --multi_gpu` launches them
(torch.distributed.run): both ranks end with identical weights after training on different batches."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from support.tiny_sd import make_dataset, make_model_folder

RANK_SCRIPT = Path(__file__).parent / "support" / "ddp_train_rank.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_cpu_processes_end_with_identical_weights(tmp_path):
    make_model_folder(tmp_path / "model", "sdxl")
    make_dataset(tmp_path / "data", 4)
    out = tmp_path / "out"
    (tmp_path / "train.toml").write_text(
        f"""
seed = 3
[model]
path = "model"
[network]
rank = 4
alpha = 4
train_text_encoder = true
[schedule]
max_steps = 4
[precision]
gradient_checkpointing = true
[save]
output_dir = "out"
every_n_steps = 2
[logging]
tensorboard = false
[dataset]
batch_size = 1
[dataset.buckets]
resolution = 64
min_size = 64
max_size = 128
[[dataset.folders]]
path = "data"
""",
        encoding="utf-8",
    )
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(free_port()), str(RANK_SCRIPT), str(tmp_path / "train.toml"),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]

    ranks = [json.loads((out / f"rank{r}-batches.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    first, second = ranks[0]["batches"], ranks[1]["batches"]
    assert len(first) == len(second) == 4
    assert all(a != b for a, b in zip(first, second))  # DDP sharding: each step the ranks see different images
    names = lambda batches: sorted(Path(p).name for batch in batches for p in batch)  # noqa: E731
    assert names(first[:2] + second[:2]) == ["img000.png", "img001.png", "img002.png", "img003.png"]  # epoch 1

    a, b = load_file(out / "rank0.safetensors"), load_file(out / "rank1.safetensors")
    assert set(a) == set(b) and any(k.startswith("lora_te2_") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert any(torch.count_nonzero(a[k]) for k in a if k.endswith("lora_up.weight"))  # it did train
    saved = load_file(out / "animekit.safetensors")  # written once, by the main process
    assert all(torch.equal(saved[k], a[k].to(torch.float16)) for k in saved)
    assert len((out / "log.csv").read_text().strip().splitlines()) == 5
    assert sorted(p.name for p in (out / "state-00000004").iterdir()) == [
        "optimizer.pt", "rank0.json", "rank0.pt", "rank1.json", "rank1.pt", "state.json", "trainable.safetensors", "training.pt",
    ]  # fmt: skip
