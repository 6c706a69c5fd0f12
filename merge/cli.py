"""`animekit merge` (block-weighted file merge) and `animekit merge-presets` (list the presets)."""

from __future__ import annotations

import argparse
import errno
import re
import sys

from ..checkpoints.architecture import ALIASES, ARCHITECTURE_NAMES, architecture
from .checkpoint_merge import OUTPUT_DTYPES, FileMergeConfig, merge_checkpoints, plan_checkpoint_merge
from ..files.hashing import HASH_CACHE_HELP
from ..checkpoints.detect import detect_file_architecture
from .explain import explain
from .naming import CLI
from .methods import METHODS, REGISTRY, MergeMethod
from .recipe_cli import add_recipe_arguments, save_recipe, use_recipe
from .plan import VAE_KEEP
from .presets import builtin_presets, for_architecture, load_presets
from .weights import WeightChoice

WEIGHT_HELP = "weight = fraction of model B (0 = A, 1 = B)"


def register(sub) -> None:
    """Add this area's subcommands to the `animekit` parser."""
    merge = sub.add_parser(
        "merge",
        help="block-weighted (MBW) merge of two SD1.x / SDXL checkpoints into a .safetensors file",
        description=(
            "Merge model B into model A block by block, streaming tensor by tensor. A block's weight is the "
            "fraction of model B it gets (SuperMerger's alpha: 0 = A, 1 = B). Give one weight for every block "
            "(--alpha 0.3, or --weights 0.3), one per block (SD1.x 26: BASE, IN00..IN11, M00, OUT00..OUT11; "
            "SDXL 20: BASE, IN00..IN08, M00, OUT00..OUT08, or 26 SD1.x-layout ones mapped by resolution level), "
            "or a --preset. Negative weights may follow a space or '=': --weights -1,... and --weights=-1,... "
            "both work."
        ),
        epilog=HASH_CACHE_HELP,
    )
    _accept_negative_lists(merge)
    merge.add_argument("model_a", nargs="?", help="model A (.safetensors, or .ckpt loaded with weights_only)")
    merge.add_argument("model_b", nargs="?", help="model B")
    merge.add_argument("--base", dest="model_c", help="model C: the base for " + ", ".join(n for n, s in REGISTRY.items() if s.c_role == "base" and s.needs_base) + "; the third model for " + ", ".join(n for n, s in REGISTRY.items() if s.c_role != "base"))
    choice = merge.add_mutually_exclusive_group()  # one of them, or --recipe
    choice.add_argument("--preset", help="a named set of block weights; `animekit merge-presets` lists them")
    choice.add_argument("--weights", metavar="W[,W...]", help="one weight for every block, or one per block, BASE first (comma-separated)")
    choice.add_argument("--alpha", type=float, metavar="W", help="one weight for every block (the same as --weights W)")
    merge.add_argument("--presets", dest="preset_file", help="extra preset TSV (preset_name<TAB>26 comma-separated weights)")
    merge.add_argument("--method", choices=METHODS, default=None, help="per-block formula (default weighted-sum): " + "; ".join(f"{n}: {s.formula}" for n, s in REGISTRY.items()))
    merge.add_argument("--density", type=float, default=0.5, help="ties/dare: fraction of B-C kept (default 0.5)")
    merge.add_argument("--seed", type=int, default=0, help="dare: seed of the drop mask (default 0)")
    merge.add_argument("--beta", type=float, default=0.0, help="triple-sum / sum-twice: the weight of model C (default 0)")
    merge.add_argument("--dtype", choices=list(OUTPUT_DTYPES), default="fp16", help="output float dtype (default fp16; keep = A's)")
    merge.add_argument("--vae", default=VAE_KEEP, metavar="merge|FILE", help="merge the VAE under BASE, or bake in a VAE file (default: keep A's)")
    merge.add_argument("--explain", action="store_true", help="print each block's weight and key count and what stays A's; without -o, write nothing")
    merge.add_argument("--explain-keys", action="store_true", help="--explain, plus the block and weight of every key (a line per key)")
    merge.add_argument("-o", "--output", help="output .safetensors path")
    merge.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    merge.add_argument("--quiet", action="store_true", help="no progress bar")
    add_recipe_arguments(merge)
    merge.set_defaults(run=run_merge)

    presets = sub.add_parser(
        "merge-presets",
        help="list block-merge presets (26 SD1.x values; SDXL form with --arch sdxl)",
        description=(
            "List the block-weight presets for `animekit merge --preset NAME`, one per line: the name, a tab and "
            "the weights, BASE first; a weight is the fraction of model B (0 = A, 1 = B). "
            f"Built in: {preset_summary()}. They are written for SD1.x (26 values); --arch sdxl shows the 20 "
            "values each becomes on SDXL (mapped by resolution level). "
            "--presets FILE.tsv adds your own (one line per preset: name<TAB>26 comma-separated weights)."
        ),
    )
    presets.add_argument("--presets", dest="preset_file", help="extra preset TSV to include")
    presets.add_argument(
        "--arch", type=_arch_name, default="sd15", metavar="{" + ",".join(ARCHITECTURE_NAMES) + "}",
        help=f"show the values for this architecture ({', '.join(f'{k} = {v}' for k, v in ALIASES.items())} also accepted)",
    )
    presets.set_defaults(run=run_presets)


def _config(args: argparse.Namespace) -> FileMergeConfig:
    return FileMergeConfig(
        model_a=args.model_a,
        model_b=args.model_b,
        model_c=args.model_c,
        output=args.output or "",  # --explain alone: planned, never written
        weights=WeightChoice(preset=args.preset, weights=_weights_text(args), preset_file=args.preset_file),
        method=MergeMethod(args.method, density=args.density, seed=args.seed, beta=args.beta),
        dtype=args.dtype,
        vae=args.vae,
        overwrite=args.overwrite,
    )


def warn_preset_problems(book) -> None:
    """A broken user preset file is reported, not fatal: its good presets and the shipped ones work."""
    for problem in (*book.problems, *book.broken.values()):
        print(f"warning: skipped in the preset file: {problem}", file=sys.stderr)


def run_merge(args: argparse.Namespace) -> int:
    use_recipe(args)
    if args.preset_file:
        warn_preset_problems(load_presets(args.preset_file))
    args.explain = args.explain or args.explain_keys
    if args.output is None and not args.explain:
        raise ValueError("give -o OUTPUT.safetensors (or --explain alone to plan without writing)")
    config = _config(args)
    if args.save_recipe and args.output is None:
        print(f"saved the recipe to {save_recipe(config, args.save_recipe)}", file=sys.stderr)
    if args.output is None:
        print(explain(plan_checkpoint_merge(config), keys=args.explain_keys, naming=CLI), end="")
        print("animekit merge: nothing written (a plan only); add -o OUTPUT.safetensors to write the merge", file=sys.stderr)
        return 0
    bars = []

    def progress(done: int, total: int) -> None:
        if args.quiet:
            return
        if not bars:  # created on the first slice, so input errors print without a bar
            from tqdm import tqdm

            bars.append(tqdm(total=total, unit="B", unit_scale=True, desc="merging", file=sys.stderr))
        bars[0].update(done - bars[0].n)

    if not args.explain:  # --explain prints the same note in its report
        _print_extrapolation_note(config)
    try:
        result = merge_checkpoints(config, progress=progress)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            print(f"animekit merge: error: {exc.strerror}", file=sys.stderr)
            return 1
        raise
    finally:
        for bar in bars:
            bar.close()
    if args.save_recipe:  # after the merge: the inputs' sha256 are known (remembered) by now
        print(f"saved the recipe to {save_recipe(config, args.save_recipe)}", file=sys.stderr)
    if args.explain:
        print(explain(result.plan, keys=args.explain_keys, naming=CLI), end="")
    print(f"wrote {result.path} ({result.bytes_written / 1e9:.2f} GB, {result.plan.arch.label}, {result.plan.weights.source})", file=sys.stderr)
    return 0


def run_presets(args: argparse.Namespace) -> int:
    book = load_presets(args.preset_file)
    warn_preset_problems(book)
    arch = architecture(args.arch)
    print(f"# {arch.label}: {arch.layout_text()}; {WEIGHT_HELP}")
    for name in book.presets:
        values = for_architecture(book.presets[name], arch)
        print(f"{name}\t{','.join(f'{v:.6g}' for v in values)}")
    return 0


def _weights_text(args: argparse.Namespace) -> str | None:
    """--alpha W is --weights W: one weight for every block."""
    return repr(args.alpha) if args.alpha is not None else args.weights


# argparse reads a value that starts with '-' as the next option unless it looks like one negative
# number, so `--weights -1,0,...` failed; this parser also takes a list of numbers for a value.
NEGATIVE_NUMBERS = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?([,\s].*)?$")


def _accept_negative_lists(parser: argparse.ArgumentParser) -> None:
    parser._negative_number_matcher = NEGATIVE_NUMBERS  # noqa: SLF001 - argparse's hook for this exact rule


def preset_summary() -> str:
    """E.g. "HIGHRES_REPLACE, LOWRES_REPLACE and SuperMerger's 38 presets"."""
    names = list(builtin_presets().presets)
    seed = [n for n in names if n in ("HIGHRES_REPLACE", "LOWRES_REPLACE")]
    return f"{', '.join(seed)} and SuperMerger's {len(names) - len(seed)} presets"


def _arch_name(value: str) -> str:
    """argparse type for --arch: the canonical name, accepting aliases ('sd1' -> 'sd15')."""
    try:
        return architecture(value, what="--arch").name
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _print_extrapolation_note(config: FileMergeConfig) -> None:
    """Say so when weights lie outside 0..1; bad inputs are left for the merge to refuse by name."""
    try:
        weights = config.weights.resolve(detect_file_architecture(config.model_a, label="model A"))
    except (ValueError, OSError):
        return
    note = weights.extrapolation_note()
    if note:
        print(f"animekit merge: note: {note}", file=sys.stderr)
