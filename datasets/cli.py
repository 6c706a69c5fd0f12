"""`animekit dataset tag|format|score|stats FOLDER`: the dataset steps in the order a user takes them."""

from __future__ import annotations

import argparse
import json
import sys

from ..files.progress import PhaseBars


def register(sub) -> None:
    """Add this area's subcommands to the `animekit` parser."""
    dataset = sub.add_parser(
        "dataset", help="tag, order, score and inspect a training image folder",
        description="Prepare a training folder the way the seed models' datasets were made: tag images with a WD14 "
        "ONNX tagger, rewrite captions in a profile's training order, score images with an aesthetic model, and "
        "inspect the folder. FOLDER may hold kohya `N_name` subfolders.",
    )  # fmt: skip
    steps = dataset.add_subparsers(dest="step", required=True, metavar="STEP")

    tag = steps.add_parser("tag", help="caption images that have no caption with a WD14-style ONNX tagger",
                           description="Write a tag caption (FOLDER/image.txt) for every image without one, from a "
                           "WD14-style tagger: DIR holds model.onnx and selected_tags.csv (e.g. SmilingWolf's wd-*-tagger).")
    tag.add_argument("folder", metavar="FOLDER")
    tag.add_argument("--model", required=True, metavar="DIR", help="tagger folder with model.onnx and selected_tags.csv")
    tag.add_argument("--threshold", type=float, default=0.35, help="general tag threshold (default 0.35)")
    tag.add_argument("--character-threshold", type=float, default=0.85, help="character tag threshold (default 0.85)")
    tag.add_argument("--exclude", default="", metavar="TAGS", help='comma-separated tags never written, e.g. "watermark, signature"')
    tag.add_argument("--overwrite", action="store_true", help="re-tag images that already have a caption (originals kept as .txt.orig)")
    tag.add_argument("--caption-extension", default=".txt")
    tag.add_argument("--batch-size", type=int, default=4)
    tag.set_defaults(run=run_tag)

    fmt = steps.add_parser("format", help="rewrite captions in a profile's training order (preview unless --write)",
                           description="Sort each caption's tags into the profile's training order (Animagine: 1girl/1boy, "
                           "character, series ||| everything else) with kohya's keep-tokens separator, adding quality / rating / "
                           "year tags from a post's metadata (image.png.json or image.json: score, rating, date). Prints what "
                           "would change; --write writes it (each original kept as <caption>.orig).")
    fmt.add_argument("folder", metavar="FOLDER")
    fmt.add_argument("--profile", default=None, help="model profile id (default animagine-xl-3.0)")
    fmt.add_argument("--write", action="store_true", help="write the new captions (atomically; originals kept as .orig)")
    fmt.add_argument("--separator", default="|||", help='keep-tokens separator after the fixed part (default "|||"; "" for none)')
    fmt.add_argument("--fixed-through", default="series", metavar="SLOT", help="last slot of the fixed part (default series)")
    fmt.add_argument("--no-metadata", dest="use_metadata", action="store_false", help="ignore metadata sidecars")
    fmt.add_argument("--tags-csv", metavar="CSV", help="a1111 tagcomplete danbooru.csv: more general tags, aliases and counts")
    fmt.add_argument("--caption-extension", default=".txt")
    fmt.set_defaults(run=run_format)

    score = steps.add_parser("score", help="score images with an aesthetic model (written to aesthetic_scores.json)",
                             description="Score every image with an aesthetic model and write the scores beside the images "
                             "(aesthetic_scores.json per folder). DIR is a transformers image-classification folder "
                             "(Cafe-aesthetic kind) or a CLIP vision model folder with one MLP file (waifu-scorer kind). "
                             "Train above a threshold with dataset.min_aesthetic_score or the Dataset node's input.")
    score.add_argument("folder", metavar="FOLDER")
    score.add_argument("--model", required=True, metavar="DIR", help="aesthetic model folder")
    score.add_argument("--label", help="classifier label whose probability is the score (default: aesthetic)")
    score.add_argument("--mlp", metavar="FILE", help="the MLP file of a CLIP + MLP scorer (default: the one in DIR)")
    score.add_argument("--batch-size", type=int, default=8)
    score.set_defaults(run=run_score)

    stats = steps.add_parser("stats", help="report tags, buckets, long captions, small images and duplicates",
                             description="Inspect FOLDER before training: tag frequencies, bucket histogram, captions over "
                             "75 / 225 CLIP tokens, images smaller than the smallest bucket, exact and near duplicates.")
    stats.add_argument("folder", metavar="FOLDER")
    stats.add_argument("--profile", default=None, help="take the buckets from this profile (default animagine-xl-3.0)")
    stats.add_argument("--resolution", type=int, help="bucket resolution instead of a profile's (min half, max double)")
    stats.add_argument("--step", type=int, default=64, help="bucket step with --resolution (default 64)")
    stats.add_argument("--tokenizer", metavar="DIR", help="folder with CLIP's vocab.json + merges.txt for exact token counts")
    stats.add_argument("--near-distance", type=int, default=4, help="dHash bits that may differ for near duplicates (default 4)")
    stats.add_argument("--caption-extension", default=".txt")
    stats.add_argument("--json", action="store_true", help="print the report as JSON")
    stats.set_defaults(run=run_stats)


def _bars() -> PhaseBars:
    return PhaseBars({"tag": "img", "format": "caption", "write": "caption", "score": "img", "stats": "img"})


def _progress(bars: PhaseBars, phase: str, label: str):
    return lambda done, total: bars.show(phase, done, total, label=label)


def _report_failures(failed) -> int:
    for path, why in failed:
        print(f"skipped {path}: {why}", file=sys.stderr)
    return 1 if failed else 0


def run_tag(args: argparse.Namespace) -> int:
    from .tagger import TaggerConfig, WdTagger, tag_folder

    cfg = TaggerConfig(general_threshold=args.threshold, character_threshold=args.character_threshold,
                       exclude=tuple(t.strip() for t in args.exclude.split(",") if t.strip()), overwrite=args.overwrite,
                       caption_extension=args.caption_extension, batch_size=args.batch_size)  # fmt: skip
    tagger = WdTagger(args.model)
    bars = _bars()
    try:
        report = tag_folder(args.folder, tagger, cfg, progress=_progress(bars, "tag", "tagging"))
    finally:
        bars.close()
    print(report.summary())
    return _report_failures(report.failed)


def run_format(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..prompting.categories import category_source
    from ..prompting.profile import DEFAULT_PROFILE, load_profile
    from .caption_format import FormatConfig, plan_folder, write_plan

    profile = load_profile(args.profile or DEFAULT_PROFILE)
    cfg = FormatConfig(profile=profile.id, fixed_through=args.fixed_through, separator=args.separator,
                       use_metadata=args.use_metadata, caption_extension=args.caption_extension)  # fmt: skip
    bars = _bars()
    try:
        plan = plan_folder(args.folder, profile, category_source(args.tags_csv), cfg, progress=_progress(bars, "format", "reading"))
        bars.close()
        if not args.write:
            print(plan.preview(Path(args.folder)))
            if plan.changes:
                print("nothing written; run again with --write to rewrite them (originals kept as <caption>.orig)")
            return _report_failures(plan.failed)
        kept = write_plan(plan, progress=_progress(bars, "write", "writing"))
    finally:
        bars.close()
    print(f"rewrote {len(plan.changes)} captions ({len(kept)} originals kept as .orig); {plan.summary()}")
    return _report_failures(plan.failed)


def run_score(args: argparse.Namespace) -> int:
    from .aesthetic import load_scorer, score_folder

    scorer = load_scorer(args.model, label=args.label, mlp=args.mlp)
    bars = _bars()
    try:
        report = score_folder(args.folder, scorer, batch_size=args.batch_size, progress=_progress(bars, "score", "scoring"))
    finally:
        bars.close()
    print(report.summary())
    for path in report.files:
        print(f"wrote {path}")
    return _report_failures(report.failed)


def run_stats(args: argparse.Namespace) -> int:
    from ..prompting.profile import DEFAULT_PROFILE, load_profile
    from ..training.data.dataset import BucketConfig
    from .stats import StatsConfig, dataset_stats

    if args.resolution:
        buckets = BucketConfig(resolution=args.resolution, min_size=max(args.step, args.resolution // 2 // args.step * args.step),
                               max_size=args.resolution * 2, step=args.step)  # fmt: skip
    else:
        b = load_profile(args.profile or DEFAULT_PROFILE).buckets
        buckets = BucketConfig(resolution=b.resolution, min_size=b.min_size, max_size=b.max_size, step=b.step)
    cfg = StatsConfig(buckets=buckets, caption_extension=args.caption_extension, near_distance=args.near_distance,
                      tokenizer=args.tokenizer)  # fmt: skip
    bars = _bars()
    try:
        report = dataset_stats(args.folder, cfg, progress=_progress(bars, "stats", "reading"))
    finally:
        bars.close()
    print(json.dumps(report.to_dict(), indent=1, ensure_ascii=False) if args.json else report.text())
    return 0
