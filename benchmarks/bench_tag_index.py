"""Benchmark the tag-category index over tipo-kgen's name lists against kgen's own way of loading them.

    python benchmarks/bench_tag_index.py [--repeat 5]

Each measurement runs in a fresh process, alternating:
- AnimeKit: `KgenTagLists.discover()` + a first lookup (the hashed index, prompting/categories.py),
  then the mean time of later lookups;
- the anchor: tipo-kgen's own load (kgen/formatter.py: one Python `set` of names per list file,
  `set(open(f).read().strip().split("\\n"))`), reproduced here without importing kgen's model code.

Printed: median first-lookup wall time (after imports), median later-lookup time, and the index's
memory as tracemalloc's net allocation (in a separate run, since tracing slows allocation) and the
RSS growth (/proc/self/statm) across the load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

ANIMEKIT = r'''
import json, os, time, tracemalloc, sys
from animekit.prompting.categories import KgenTagLists, _hashed_name_lists
def rss(): return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
trace = sys.argv[1] == "trace"
if trace: tracemalloc.start()
r0 = rss(); t = time.perf_counter()
source = KgenTagLists.discover(); source.lookup("ganyu (genshin impact)")
first = time.perf_counter() - t; r1 = rss()
t = time.perf_counter()
for key in ("smile", "upper body", "genshin impact", "wlop") * 25000: source.lookup(key)
later = (time.perf_counter() - t) / 100000
print(json.dumps({"first": first, "later": later, "rss": r1 - r0, "names": len(source.index),
                  "traced": tracemalloc.get_traced_memory()[0] if trace else None}))
'''

ANCHOR = r'''
import importlib.util, json, os, pathlib, time, tracemalloc, sys
def rss(): return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
trace = sys.argv[1] == "trace"
if trace: tracemalloc.start()
r0 = rss(); t = time.perf_counter()
folder = pathlib.Path(importlib.util.find_spec("kgen").submodule_search_locations[0]) / "tag-list"
lists = {f.stem: set(open(f).read().strip().split("\n")) for f in folder.glob("*.txt")}
def lookup(key):
    for name, names in lists.items():
        if key in names: return name
lookup("ganyu (genshin impact)")
first = time.perf_counter() - t; r1 = rss()
t = time.perf_counter()
for key in ("smile", "upper body", "genshin impact", "wlop") * 25000: lookup(key)
later = (time.perf_counter() - t) / 100000
print(json.dumps({"first": first, "later": later, "rss": r1 - r0, "names": sum(map(len, lists.values())),
                  "traced": tracemalloc.get_traced_memory()[0] if trace else None}))
'''


def run(code: str, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, mode], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results = {"animekit": [], "kgen set (anchor)": []}
    for _ in range(args.repeat):
        results["animekit"].append(run(ANIMEKIT, "time"))
        results["kgen set (anchor)"].append(run(ANCHOR, "time"))
    traced = {"animekit": run(ANIMEKIT, "trace"), "kgen set (anchor)": run(ANCHOR, "trace")}
    print(f"{'':18} {'names':>8} {'first lookup':>13} {'later lookup':>13} {'RSS growth':>11} {'traced':>9}")
    for name, runs in results.items():
        first = statistics.median(r["first"] for r in runs)
        later = statistics.median(r["later"] for r in runs)
        grown = statistics.median(r["rss"] for r in runs)
        print(f"{name:18} {runs[0]['names']:>8} {first:>11.3f} s {later * 1e6:>10.2f} us "
              f"{grown / 2**20:>8.1f} MiB {traced[name]['traced'] / 2**20:>6.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
