"""`animekit extract-lora` (a LoRA from two checkpoints) and `animekit bake-lora` (LoRAs into a checkpoint)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .checkpoint_merge import OUTPUT_DTYPES
from .lora_bake import BakeConfig, bake_loras, parse_lora_argument
from .lora_extract import DTYPES, ExtractConfig, extract_lora
from ..files.progress import PhaseBars


def register(sub) -> None:
    extract = sub.add_parser(
        "extract-lora",
        help="extract a kohya LoRA (tuned minus base, per-layer truncated SVD) from two SD1.x / SDXL checkpoints",
        description="Per LoRA layer: D = tuned - base, truncated SVD to --rank (or fewer with --energy), outliers "
        "clamped at --clamp-quantile, kohya key names and ss_*/modelspec metadata, one layer in memory at a time, on "
        "the GPU when there is one. Prints the relative reconstruction error per block.",
    )
    extract.add_argument("tuned", help="the fine-tuned checkpoint (.safetensors or .ckpt)")
    extract.add_argument("base", help="the checkpoint it was tuned from")
    extract.add_argument("-o", "--output", required=True, help="output LoRA .safetensors")
    extract.add_argument("--rank", type=int, default=4, help="LoRA rank (default 4)")
    extract.add_argument("--conv-rank", type=int, default=None, help="also extract ResNet / sampler layers (LoCon) at this rank")
    extract.add_argument("--energy", type=float, default=None,
                         help="per layer, the smallest rank keeping this fraction of sum(S^2), at most --rank (e.g. 0.9)")
    extract.add_argument("--clamp-quantile", type=float, default=0.99, help="clamp up/down at this quantile (default 0.99, as kohya)")
    extract.add_argument("--min-diff", type=float, default=0.01, help="leave the text encoder out unless a weight differs by more (default 0.01)")
    extract.add_argument("--dtype", choices=list(DTYPES), default="fp16", help="saved dtype (default fp16)")
    extract.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:1, ...")
    extract.add_argument("--svd", choices=["lowrank", "full"], default="lowrank",
                         help="lowrank: randomized top singular vectors (fast, default); full: exact SVD as kohya")
    extract.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    extract.add_argument("--quiet", action="store_true", help="no progress bar")
    extract.set_defaults(run=run_extract)

    bake = sub.add_parser(
        "bake-lora",
        help="bake kohya LoRA / LoCon files into a checkpoint, with per-block weights, streamed file to file",
        description="W + strength * w[block] * alpha/rank * up@down for every LoRA module, streamed tensor by tensor "
        "(bounded memory), written atomically with the recipe in sd_merge_recipe. Text encoders use the vector's BASE "
        "value. LyCORIS LoHa / LoKr / OFT / DoRA files are refused by name.",
    )
    bake.add_argument("checkpoint", help="the SD1.x / SDXL checkpoint")
    bake.add_argument("loras", nargs="+", metavar="LORA[:STRENGTH]", help="LoRA files, each with an optional :strength (default 1)")
    bake.add_argument("--lbw", metavar="VECTOR_OR_PRESET",
                      help="block weights for every LoRA: 17 / 12 (A1111 LBW), 26 / 20 (MBW) values, or a preset "
                      "(ALL, INS, IND, INALL, MIDD, OUTD, OUTS, OUTALL, ... or an MBW preset)")
    bake.add_argument("-o", "--output", required=True, help="output .safetensors")
    bake.add_argument("--dtype", choices=list(OUTPUT_DTYPES), default="fp16", help="output float dtype (default fp16; keep = the checkpoint's)")
    bake.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    bake.add_argument("--quiet", action="store_true", help="no progress bar")
    bake.set_defaults(run=run_bake)


def run_extract(args: argparse.Namespace) -> int:
    config = ExtractConfig(
        tuned=Path(args.tuned), base=Path(args.base), output=Path(args.output), rank=args.rank, conv_rank=args.conv_rank,
        energy=args.energy, clamp_quantile=args.clamp_quantile, min_diff=args.min_diff, dtype=args.dtype,
        device=args.device, svd=args.svd, overwrite=args.overwrite,
    )
    bars = PhaseBars({"extracting": "layer"}, enabled=not args.quiet)
    try:
        result = extract_lora(config, progress=lambda done, total: bars.show("extracting", done, total))
    finally:
        bars.close()
    print(result.report(), end="")
    print(f"wrote {result.path}", file=sys.stderr)
    return 0


def run_bake(args: argparse.Namespace) -> int:
    config = BakeConfig(
        checkpoint=Path(args.checkpoint), loras=tuple(parse_lora_argument(t) for t in args.loras), output=Path(args.output),
        lbw=args.lbw, dtype=args.dtype, overwrite=args.overwrite,
    )
    bars = PhaseBars({"baking": "tensor"}, enabled=not args.quiet)
    try:
        result = bake_loras(config, progress=lambda done, total: bars.show("baking", done, total))
    finally:
        bars.close()
    print(result.report(), end="")
    return 0
