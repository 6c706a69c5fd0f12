"""Stopping cleans up: SIGTERM and SIGHUP stop `animekit merge` like Ctrl-C (temporary output removed,
a clear message, exit code 128 + signal), and after a kill -9 the next run in that folder removes the
dead process's temporary file, never a live process's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from animekit.files.atomic import atomic_output, remove_stale_partials
from support.checkpoints import write_checkpoint

# Slows each tensor write so a signal lands mid-merge, and says when writing began.
SLOW_WRITER = textwrap.dedent("""
    import os, time
    from animekit.merge import safetensors_stream
    _write = safetensors_stream.SafetensorsWriter.write
    def write(self, key, data):
        flag = os.environ["ANIMEKIT_TEST_STARTED"]
        if not os.path.exists(flag):
            open(flag, "w").close()
        time.sleep(0.05)
        return _write(self, key, data)
    safetensors_stream.SafetensorsWriter.write = write
""")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("stop")
    return [write_checkpoint(root / f"{name}.safetensors", "sd15", seed=seed) for name, seed in (("a", 1), ("b", 2))]


def _start_merge(tmp_path: Path, inputs, out: Path) -> tuple[subprocess.Popen, Path]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_WRITER)
    started = tmp_path / "started"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "ANIMEKIT_TEST_STARTED": str(started), "ANIMEKIT_HASH_CACHE": str(tmp_path / "cache.json")}
    proc = subprocess.Popen([sys.executable, "-m", "animekit", "merge", str(inputs[0]), str(inputs[1]),
                             "--weights", ",".join(["0.5"] * 26), "--quiet", "-o", str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not started.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "merge never started writing"
        time.sleep(0.02)
    return proc, started


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_signal_stops_merge_and_removes_the_temporary_output(tmp_path, inputs, signum):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "merged.safetensors"
    proc, _ = _start_merge(tmp_path, inputs, out)
    assert any(p.name.endswith(".partial") for p in out_dir.iterdir())  # it was writing
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert f"stopped by {signal.Signals(signum).name}; temporary files removed" in err
    assert "Traceback" not in err
    assert list(out_dir.iterdir()) == []


def test_after_kill_9_the_next_run_removes_the_dead_writers_file(tmp_path, inputs):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc, _ = _start_merge(tmp_path, inputs, out_dir / "merged.safetensors")
    proc.kill()
    proc.wait(timeout=30)
    left = [p for p in out_dir.iterdir() if p.name.endswith(".partial")]
    assert len(left) == 1  # what a kill -9 leaves
    with atomic_output(out_dir / "other.txt") as tmp:  # any later output in that folder cleans up
        tmp.write_text("ok")
    assert sorted(p.name for p in out_dir.iterdir()) == ["other.txt"]


def test_a_live_writers_temporary_file_is_kept(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = tmp_path / f".model.safetensors.pid{sleeper.pid}.abc123.partial"
        live.write_bytes(b"x" * 10)
        ours = tmp_path / f".model.safetensors.pid{os.getpid()}.def456.partial"
        ours.write_bytes(b"x")
        unrelated = tmp_path / ".model.safetensors.partial"
        unrelated.write_bytes(b"x")
        assert remove_stale_partials(tmp_path) == []
        assert live.exists() and ours.exists() and unrelated.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert remove_stale_partials(tmp_path) == [live]
