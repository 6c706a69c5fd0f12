"""benchmarks/bench_train.py keeps working: its CPU smoke mode runs our trainer end to end.

No timing is asserted (that is the benchmark's job on a GPU); only that it measured something.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"


def test_bench_smoke_mode_runs_and_reports(tmp_path):
    report = tmp_path / "bench.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--mode", "lora", "--workdir", str(tmp_path / "work"), "--json", str(report)],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(report.read_text())
    assert results["device"] == "cpu (smoke)" and results["resolution"] == 64
    [run] = results["runs"]
    assert run["trainer"] == "animekit" and run["mode"] == "lora" and run["steps"] == 4
    assert run["images_per_s"] > 0
    assert run["plan_allocated_gib"] > 0 and "mfu" not in run  # the plan is reported; no MFU for tiny CPU models
    assert "pass --kohya" in results["kohya"]
    assert "animekit          lora" in done.stdout
