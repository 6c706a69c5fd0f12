"""Benchmark the streaming block merge against the I/O floor (and ComfyUI's own merge for SD1.5).

    python benchmarks/bench_merge.py --arch sd15 [--arch sdxl] [--workdir DIR] [--repeat 2]

For each architecture it writes two random-weight fp16 checkpoints of the real full-size layout
(tests/support/checkpoints.py; SD1.5 ~2.1 GB, SDXL ~6.9 GB each) into a temporary folder, then
measures, side by side and alternating, each in its own process with the inputs evicted from the
page cache first (posix_fadvise DONTNEED, where the OS allows it):

- the I/O floor: read both inputs fully, write and fsync an output of the merged file's size
  (as `cat A B; dd conv=fsync`), and a tighter variant with the reads overlapping the writes and
  writeback started early, as the merge itself does its I/O;
- `animekit merge` with every block at 0.5 (every tensor read, computed and written), once hashing
  both inputs for the metadata (a first merge of these files) and once with their sha256 already
  remembered (any later merge of them, as A1111 caches hashes); and with the seed's HIGHRES_REPLACE
  preset (hashes remembered);
- for SD1.5, when COMFYUI_PATH is set and memory allows: ComfyUI's own ModelMergeSD1 + checkpoint
  save (what a ComfyUI user does today), as the anchor.

Wall time and peak RSS (os.wait4's ru_maxrss of that process) are printed with ratios to the
floor measured in the same round. Targets: merge wall <= 1.5x floor, peak RSS < 1 GB.
Files are deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LABELS = {"sd15": "SD1.5", "sdxl": "SDXL"}
COUNTS = {"sd15": 26, "sdxl": 20}
BLOCK = 16 * 1024 * 1024


@dataclass
class Measure:
    name: str
    wall: float
    rss_mb: float


def evict(*paths: Path) -> None:
    """Drop clean cached pages of these files, so every run starts with cold-ish caches."""
    if not hasattr(os, "posix_fadvise"):
        return
    for path in paths:
        if path.exists():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


class Failed(Exception):
    pass


def run_measured(name: str, argv: list[str], env: dict | None = None) -> Measure:
    """Run a process, return its wall time and its own peak RSS (not the whole tree's)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    output = proc.stdout.read().decode(errors="replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise Failed(f"{name} failed (exit {proc.returncode}):\n{output[-3000:]}")
    return Measure(name, wall, usage.ru_maxrss / 1024)


# --- the child processes ------------------------------------------------------------------------

def _read_all(*paths: str) -> None:
    buffer = bytearray(BLOCK)
    for path in paths:
        with open(path, "rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass


def _write_all(out: str, size: int, early_writeback: bool) -> None:
    data = os.urandom(BLOCK)  # not zeros: no storage layer can shortcut them
    with open(out, "wb", buffering=0) as handle:
        written = 0
        while written < size:
            written += handle.write(data[: min(BLOCK, size - written)])
            if early_writeback and written % (4 * BLOCK) == 0:
                os.posix_fadvise(handle.fileno(), written - 4 * BLOCK, 4 * BLOCK, os.POSIX_FADV_DONTNEED)
        os.fsync(handle.fileno())


def child_floor(a: str, b: str, out: str, size: int) -> None:
    """The brief's floor: read both inputs, then write and fsync the output (as cat + dd)."""
    _read_all(a, b)
    _write_all(out, size, early_writeback=False)


def child_floor_overlapped(a: str, b: str, out: str, size: int) -> None:
    """A tighter floor: the same I/O overlapped as the merge does it (reads beside the writes,
    writeback started early)."""
    import threading

    reader = threading.Thread(target=_read_all, args=(a, b))
    reader.start()
    _write_all(out, size, early_writeback=True)
    reader.join()


def child_comfy(a: str, b: str, out_dir: str) -> None:
    root = os.environ["COMFYUI_PATH"]
    sys.path.insert(0, root)
    try:
        import torchvision  # noqa: F401
    except ImportError:  # ComfyUI imports it at module level but the merge never uses it
        stub = Path(tempfile.mkdtemp(prefix="tvstub-")) / "torchvision"
        (stub / "transforms").mkdir(parents=True)
        (stub / "__init__.py").write_text("")
        (stub / "transforms" / "__init__.py").write_text("")
        sys.path.append(str(stub.parent))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    from comfy.cli_args import args

    args.cpu = True
    import comfy.sd
    from comfy_extras.nodes_model_merging import save_checkpoint
    from comfy_extras.nodes_model_merging_model_specific import ModelMergeSD1

    model_a, clip_a, vae_a, _ = comfy.sd.load_checkpoint_guess_config(a)
    model_b, _, _, _ = comfy.sd.load_checkpoint_guess_config(b, output_vae=False, output_clip=False)
    ratios = {name: 0.5 for name in ModelMergeSD1.INPUT_TYPES()["required"] if name not in ("model1", "model2")}
    (merged,) = ModelMergeSD1().merge(model_a, model_b, **ratios)
    save_checkpoint(merged, clip=clip_a, vae=vae_a, filename_prefix="checkpoints/comfy-merge", output_dir=out_dir)


# --- the benchmark ------------------------------------------------------------------------------

def child_make(arch: str, path: str, seed: int) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from support.checkpoints import write_checkpoint

    write_checkpoint(path, arch, full_size=True, seed=seed)


def make_inputs(arch: str, folder: Path) -> tuple[Path, Path]:
    """Written by child processes, so this one stays small (a fork starts at its parent's RSS)."""
    paths = []
    for role, seed in (("a", 1), ("b", 2)):
        path = folder / f"{arch}-{role}.safetensors"
        start = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--child-make", arch, str(path), str(seed)], check=True)
        print(f"  wrote {path.name}: {path.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - start:.0f} s", flush=True)
        paths.append(path)
    return paths[0], paths[1]


def remember_hashes(cache: Path, *paths: Path) -> None:
    """Pre-fill a hash cache, as a previous merge of these inputs would have."""
    from animekit.files.hashing import HASH_CACHE_ENV, remember_sha256, sha256_file

    previous = os.environ.get(HASH_CACHE_ENV)
    os.environ[HASH_CACHE_ENV] = str(cache)
    try:
        for path in paths:
            remember_sha256(path, sha256_file(path))
    finally:
        os.environ.pop(HASH_CACHE_ENV) if previous is None else os.environ.__setitem__(HASH_CACHE_ENV, previous)


def comfy_anchor_possible(arch: str, size: int) -> str | None:
    if arch != "sd15":
        return "ComfyUI anchor only for SD1.5 (its SDXL merge + save was killed for memory at 19.6 GB on this 24 GB machine)"
    if not os.environ.get("COMFYUI_PATH"):
        return "set COMFYUI_PATH to add ComfyUI's own ModelMergeSD1 + checkpoint save as the anchor"
    try:
        available = int(next(line for line in open("/proc/meminfo") if line.startswith("MemAvailable")).split()[1]) * 1024
    except (OSError, StopIteration):
        available = 0
    if available < 16e9:  # it holds ~12 GB; leave room for the other work on the machine
        return f"ComfyUI anchor skipped: it needs ~12 GB RAM, {available / 1e9:.1f} GB available now"
    return None


def bench(arch: str, workdir: Path, repeat: int, keep: bool, with_comfy: bool) -> None:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-merge-{arch}-", dir=workdir))
    try:
        print(f"\n== {LABELS[arch]}: random fp16 weights, real key layout ==", flush=True)
        a, b = make_inputs(arch, folder)
        size = a.stat().st_size
        need = 3 * size + (6 * size if with_comfy else 0)
        if shutil.disk_usage(folder).free < need - 2 * size:
            raise SystemExit(f"not enough free disk in {folder} for the outputs")
        out = folder / "merged.safetensors"
        py = sys.executable
        half = ",".join(["0.5"] * COUNTS[arch])
        merge = [py, "-m", "animekit", "merge", str(a), str(b), "--quiet", "--overwrite", "-o", str(out)]
        runs = {
            "floor": [py, __file__, "--child-floor", str(a), str(b), str(folder / "floor.bin"), str(size)],
            "floor-overlap": [py, __file__, "--child-floor-overlapped", str(a), str(b), str(folder / "floor.bin"), str(size)],
            "merge-cold": merge + ["--weights", half],
            "merge-all": merge + ["--weights", half],
            "merge-seed": merge + ["--preset", "HIGHRES_REPLACE"],
        }
        # `python -m animekit` needs the package installed (pip install -e .)
        cache = folder / "sha256-cache.json"
        remember_hashes(cache, a, b)
        envs = {name: dict(os.environ, ANIMEKIT_HASH_CACHE="off" if name == "merge-cold" else str(cache)) for name in runs}
        results: dict[str, list[Measure]] = {name: [] for name in runs}
        for round_ in range(repeat):
            for name, argv in runs.items():
                evict(a, b)
                results[name].append(run_measured(name, argv, envs[name]))
                for leftover in (folder / "floor.bin", out):
                    leftover.unlink(missing_ok=True)
                print(f"  round {round_ + 1}: {name:<10} {results[name][-1].wall:6.1f} s  {results[name][-1].rss_mb:7.0f} MB", flush=True)
        comfy_note = comfy_anchor_possible(arch, size) if with_comfy else "ComfyUI anchor not requested"
        comfy = None
        if comfy_note is None:
            evict(a, b)
            try:
                comfy = run_measured("comfy", [py, __file__, "--child-comfy", str(a), str(b), str(folder / "comfy-out")], dict(os.environ))
                print(f"  comfy      {comfy.wall:6.1f} s  {comfy.rss_mb:7.0f} MB", flush=True)
            except Failed as exc:  # killed for memory, most likely: report it, keep our numbers
                comfy_note = f"ComfyUI anchor failed: {str(exc).splitlines()[0]} {str(exc).splitlines()[-1]}"
        report(arch, size, results, comfy, comfy_note)
    finally:
        if keep:
            print(f"  kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def report(arch, size, results, comfy, comfy_note) -> None:
    floor = [m.wall for m in results["floor"]]
    print(f"\n{LABELS[arch]}: two {size / 1e9:.2f} GB fp16 inputs -> one {size / 1e9:.2f} GB fp16 output; "
          f"{len(floor)} alternating round(s), cold-ish cache each run; ratios are per round, then the median")
    print(f"{'run':<44} {'wall s (each round)':>20} {'median':>7} {'x floor':>8} {'x overlap':>9} {'peak RSS':>10}")
    rows = [
        ("I/O floor: read A+B, write+fsync same size", "floor"),
        ("I/O floor, reads and writes overlapped", "floor-overlap"),
        ("animekit merge, all 0.5, hashing A and B", "merge-cold"),
        ("animekit merge, all 0.5, hashes remembered", "merge-all"),
        ("animekit merge, HIGHRES_REPLACE, remembered", "merge-seed"),
    ]
    per_round = {name: [m.wall for m in ms] for name, ms in results.items()}
    overlap = per_round["floor-overlap"]
    for label, name in rows:
        walls = per_round[name]
        ratios = [w / f for w, f in zip(walls, floor)]
        tight = [w / f for w, f in zip(walls, overlap)]
        rss = max(m.rss_mb for m in results[name])
        print(f"{label:<44} {', '.join(f'{w:.1f}' for w in walls):>20} {statistics.median(walls):7.1f} "
              f"{statistics.median(ratios):7.2f}x {statistics.median(tight):8.2f}x {rss:8.0f} MB")
    if comfy is not None:
        print(f"{'ComfyUI ModelMergeSD1 + CheckpointSave':<44} {comfy.wall:>20.1f} {comfy.wall:7.1f} "
              f"{comfy.wall / statistics.median(floor):7.2f}x {comfy.wall / statistics.median(overlap):8.2f}x {comfy.rss_mb:8.0f} MB")
        merge = statistics.median(per_round["merge-all"])
        print(f"animekit vs ComfyUI: {comfy.wall / merge:.1f}x faster, "
              f"{comfy.rss_mb / max(m.rss_mb for m in results['merge-all']):.0f}x less peak RSS")
    else:
        print(f"({comfy_note})")
    rss = max(m.rss_mb for name in ("merge-cold", "merge-all", "merge-seed") for m in results[name])
    for name, what in (("merge-cold", "first merge (hashing)"), ("merge-all", "hashes remembered")):
        ratios = [w / f for w, f in zip(per_round[name], floor)]
        tight = [w / f for w, f in zip(per_round[name], per_round["floor-overlap"])]
        verdict = "met" if statistics.median(ratios) <= 1.5 else "MISSED"
        print(f"target wall <= 1.5x floor, {what}: {verdict} (median {statistics.median(ratios):.2f}x, worst round "
              f"{max(ratios):.2f}x; vs the overlapped floor: median {statistics.median(tight):.2f}x, worst {max(tight):.2f}x)")
    print(f"target peak RSS < 1 GB: {'met' if rss < 1024 else 'MISSED'} ({rss:.0f} MB)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child-floor":
        return child_floor(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    if len(sys.argv) > 1 and sys.argv[1] == "--child-floor-overlapped":
        return child_floor_overlapped(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    if len(sys.argv) > 1 and sys.argv[1] == "--child-make":
        return child_make(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    if len(sys.argv) > 1 and sys.argv[1] == "--child-comfy":
        return child_comfy(sys.argv[2], sys.argv[3], sys.argv[4])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", action="append", choices=list(LABELS), help="sd15 and/or sdxl (default: both)")
    parser.add_argument("--workdir", default=str(REPO.parent), help="where the temporary files go (default: next to the repo)")
    parser.add_argument("--repeat", type=int, default=2, help="alternating rounds of floor/merge (default 2)")
    parser.add_argument("--no-comfy", action="store_true", help="skip ComfyUI's merge (the SD1.5 anchor)")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()
    for arch in args.arch or list(LABELS):
        bench(arch, Path(args.workdir), args.repeat, args.keep, not args.no_comfy)


if __name__ == "__main__":
    main()
