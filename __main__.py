"""`animekit` command: one subcommand per capability, each defined next to the code it drives."""

from __future__ import annotations

import argparse
import signal
import sys

# Stopping the way a service manager or a closed terminal does is handled like Ctrl-C: the work stops,
# temporary files are removed, and the exit code says which signal stopped it (128 + number).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Stopped(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM / SIGHUP, so every `finally` and cleanup runs as for Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum, frame):
    raise Stopped(signum)


def install_stop_handlers() -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_stopped)


def build_parser() -> argparse.ArgumentParser:
    from .prompting import cli as prompting_cli
    from .sizes import cli as sizes_cli
    from .merge import cli as merge_cli
    from .merge import lora_cli as merge_lora_cli
    from .training import cli as training_cli
    from .datasets import cli as datasets_cli

    parser = argparse.ArgumentParser(
        prog="animekit",
        description="AnimeKit on the command line: Danbooru-tag prompts, aspect buckets, block-weighted merges and "
        "LoRA / fine-tune training for SD1.5 and SDXL anime models.",
        epilog="Run `animekit COMMAND --help` for what a command does and its options.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (prompting_cli, sizes_cli, merge_cli, merge_lora_cli, training_cli, datasets_cli):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    install_stop_handlers()
    try:
        return int(args.run(args) or 0)
    except Stopped as stop:
        name = signal.Signals(stop.signum).name
        print(f"animekit {args.command}: stopped by {name}; temporary files removed", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:
        print(f"animekit {args.command}: cancelled; temporary files removed", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error worth a traceback.
        sys.stderr.close()
        return 0
    except (ValueError, OSError) as exc:  # bad input, missing/existing/unwritable files, a full disk
        print(f"animekit {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
