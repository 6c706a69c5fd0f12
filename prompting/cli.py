"""`animekit prompt`: tags -> ordered positive + negative prompt for a profile."""

from __future__ import annotations

import argparse
import json
import sys

from .categories import category_source
from .profile import DEFAULT_PROFILE, PERIOD_LEVELS, RATING_LEVELS, load_profile
from .prompt import NEGATIVE_CHOICES, QUALITY_CHOICES, PromptRequest, build_prompt


def register(sub) -> None:
    """Add this area's subcommands to the `animekit` parser."""
    prompt = sub.add_parser(
        "prompt",
        help="normalise and order Danbooru tags for a model profile",
        description="Normalise TAGS (underscores, escapes, duplicates), sort them into the profile's tag "
        "order, add its quality and modifier tags, and print the positive and negative prompts.",
    )
    prompt.add_argument("tags", metavar="TAGS", nargs="?",
                        help='comma-separated tags, e.g. "1girl, ganyu_(genshin_impact), smile"; - reads them from standard input')
    prompt.add_argument("--tags-file", metavar="FILE", help="read the tags from a UTF-8 text file (commas or new lines between tags)")
    prompt.add_argument("--profile", default=DEFAULT_PROFILE, help=f"model profile id (default {DEFAULT_PROFILE})")
    prompt.add_argument("--json", action="store_true", help='print {"positive": ..., "negative": ...}')
    prompt.add_argument("--quality", choices=QUALITY_CHOICES, default="default", help="add the profile's quality tags (default) or not")
    prompt.add_argument("--rating", default="none", help=f"none or one of {', '.join(RATING_LEVELS)}")
    prompt.add_argument("--year", default="none", help=f"none, a period ({', '.join(PERIOD_LEVELS)}) or a year such as 2020")
    prompt.add_argument("--aesthetic", default="none", help="none or one of the profile's aesthetic tags")
    prompt.add_argument("--no-sfw-guard", dest="sfw_guard", action="store_false",
                        help="don't add the general rating to the positive and NSFW ratings to the negative")
    prompt.add_argument("--negative", choices=NEGATIVE_CHOICES, default="default", help="the profile's negative prompt (default) or none")
    prompt.add_argument("--extra-negative", default="", help="tags appended to the negative prompt")
    prompt.add_argument("--tags-csv", metavar="CSV", help="a1111 tagcomplete danbooru.csv for tag categories (character, series, artist ...)")
    prompt.set_defaults(run=run_prompt)


def read_tags(tags: str | None, tags_file: str | None, stdin=None) -> str:
    """The tag text from exactly one source: the TAGS argument, standard input (TAGS = -) or --tags-file
    (a command-line argument is capped at 128 KB on Linux; files and pipes are not)."""
    if tags is not None and tags_file is not None:
        raise ValueError("give the tags either as TAGS or with --tags-file, not both")
    if tags_file is not None:
        with open(tags_file, encoding="utf-8") as handle:  # FileNotFoundError names the file
            return handle.read()
    if tags is None:
        raise ValueError('no tags: give TAGS ("1girl, smile"), - to read them from standard input, or --tags-file FILE')
    if tags == "-":
        return (stdin or sys.stdin).read()
    return tags


def run_prompt(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    request = PromptRequest(
        tags=read_tags(args.tags, args.tags_file), quality=args.quality, rating=args.rating, year=args.year, aesthetic=args.aesthetic,
        sfw_guard=args.sfw_guard, negative=args.negative, extra_negative=args.extra_negative,
    )
    built = build_prompt(profile, request, category_source(args.tags_csv))
    if args.json:
        print(json.dumps({"positive": built.positive, "negative": built.negative}, ensure_ascii=False))
    else:
        print(f"positive: {built.positive}")
        print(f"negative: {built.negative}")
    return 0
