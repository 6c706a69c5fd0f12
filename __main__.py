"""`animekit` command: one subcommand per capability, each defined next to the code it drives."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from .prompting import cli as prompting_cli
    from .sizes import cli as sizes_cli
    from .merge import cli as merge_cli
    from .training import cli as training_cli

    parser = argparse.ArgumentParser(prog="animekit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (prompting_cli, sizes_cli, merge_cli, training_cli):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("animekit: cancelled", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error worth a traceback.
        sys.stderr.close()
        return 0
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError) as exc:
        print(f"animekit {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
