"""Concurrent use is safe: many processes and threads remembering hashes at once keep every entry and
a valid cache file; two writers of one output name never read each other's temporary files."""

from __future__ import annotations

import json
import multiprocessing
import threading
from pathlib import Path

from animekit.files.atomic import atomic_output
from animekit.files.hashing import cached_sha256, remember_sha256

ROUNDS = 25


def _remember_many(cache: str, folder: str, worker: int) -> None:
    for i in range(ROUNDS):
        path = Path(folder) / f"w{worker}-{i}.bin"
        path.write_bytes(bytes([worker, i]))
        remember_sha256(path, f"{worker:032x}{i:032x}", cache)


def test_processes_and_threads_never_lose_or_corrupt_cache_entries(tmp_path):
    cache = tmp_path / "sha256.json"
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_remember_many, args=(str(cache), str(tmp_path), w)) for w in range(4)]
    threads = [threading.Thread(target=_remember_many, args=(str(cache), str(tmp_path), w)) for w in range(4, 8)]
    for runner in (*procs, *threads):
        runner.start()
    for runner in (*procs, *threads):
        runner.join()
    assert all(p.exitcode == 0 for p in procs)
    entries = json.loads(cache.read_text())  # valid JSON
    assert len(entries) == 8 * ROUNDS  # nobody's entry was dropped by another writer
    assert cached_sha256(tmp_path / "w5-7.bin", cache) == f"{5:032x}{7:032x}"
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_two_writers_of_one_name_use_separate_temporary_files(tmp_path):
    target = tmp_path / "model.safetensors"
    with atomic_output(target) as first, atomic_output(target) as second:
        assert first != second
        first.write_text("first")
        second.write_text("second")
        assert first.read_text() == "first"
    assert target.read_text() == "first"  # the later rename wins whole; neither file is mixed


def _claim_and_hold(folder: str, queue, release) -> None:
    from animekit.files.numbered import claimed_numbered_path

    with claimed_numbered_path(folder, "merge") as path:
        queue.put(path.name)
        release.wait(30)


def test_two_writers_at_once_never_get_the_same_numbered_name(tmp_path):
    context = multiprocessing.get_context("fork")
    queue, release = context.Queue(), context.Event()
    procs = [context.Process(target=_claim_and_hold, args=(str(tmp_path), queue, release)) for _ in range(4)]
    for proc in procs:
        proc.start()
    names = sorted(queue.get(timeout=30) for _ in procs)
    release.set()
    for proc in procs:
        proc.join()
    assert names == [f"merge_{n:05d}_.safetensors" for n in (1, 2, 3, 4)]
    assert list(tmp_path.iterdir()) == []  # claims released


def test_numbers_skip_finished_files_and_dead_writers_claims_are_freed(tmp_path):
    import subprocess
    import sys

    from animekit.files.numbered import claimed_numbered_path

    (tmp_path / "merge_00001_.safetensors").write_bytes(b"x")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".merge_00002_.safetensors.claim").write_text(dead.stdout.strip())  # its writer was killed
    with claimed_numbered_path(tmp_path, "merge") as path:
        assert path.name == "merge_00002_.safetensors"
        with claimed_numbered_path(tmp_path, "merge") as other:  # a second writer meanwhile
            assert other.name == "merge_00003_.safetensors"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merge_00001_.safetensors"]
