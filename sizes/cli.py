"""`animekit buckets`: kohya aspect buckets, one `WxH` per line."""

from __future__ import annotations

import argparse

from ..prompting.profile import load_profile
from .resolutions import kohya_buckets


def register(sub) -> None:
    """Add this area's subcommands to the `animekit` parser."""
    buckets = sub.add_parser(
        "buckets",
        help="print kohya aspect-ratio buckets, one WxH per line",
        description="kohya sd-scripts' bucket rule (area = resolution^2, sides in steps). Give --profile for "
        "its training buckets, or --resolution (with --min/--max/--step, default resolution/2, resolution*2, 64).",
    )
    buckets.add_argument("--profile", help="use this profile's bucket settings")
    buckets.add_argument("--resolution", type=int, help="bucket area is resolution^2 (e.g. 512, 1024)")
    buckets.add_argument("--min", dest="min_size", type=int, help="smallest side")
    buckets.add_argument("--max", dest="max_size", type=int, help="largest side")
    buckets.add_argument("--step", type=int, help="side step (multiple of 8)")
    buckets.set_defaults(run=run_buckets)


def run_buckets(args: argparse.Namespace) -> int:
    if args.profile is None and args.resolution is None:
        raise ValueError("give --profile ID or --resolution R")
    if args.profile is not None:
        settings = load_profile(args.profile).buckets
        resolution, min_size, max_size, step = settings.resolution, settings.min_size, settings.max_size, settings.step
    else:
        step = args.step if args.step is not None else 64
        # defaults on the step grid (kohya refuses off-grid sides): half and double the resolution
        resolution, min_size, max_size = args.resolution, max(step, args.resolution // 2 // step * step), args.resolution * 2 // step * step
    resolution = args.resolution if args.resolution is not None else resolution
    min_size = args.min_size if args.min_size is not None else min_size
    max_size = args.max_size if args.max_size is not None else max_size
    step = args.step if args.step is not None else step
    for width, height in kohya_buckets(resolution, min_size, max_size, step):
        print(f"{width}x{height}")
    return 0
