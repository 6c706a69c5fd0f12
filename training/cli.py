"""`animekit train CONFIG.toml [--resume DIR]`: headless training with a progress bar.

Ctrl-C once saves a resume state and stops; a second Ctrl-C aborts at once. Under
`accelerate launch`, every process runs this and only the main one draws the bar.
"""

from __future__ import annotations

import signal
import sys


def register(sub) -> None:
    """Add this area's subcommands to the `animekit` parser."""
    parser = sub.add_parser(
        "train",
        help="train a LoRA or fine-tune SD1.5 / SDXL from a TOML config",
        description="Train a LoRA or full fine-tune of an SD1.5 / SDXL model described by a TOML file "
        "(see training/animagine_stage1.toml). Multi-GPU: accelerate launch -m animekit train CONFIG.toml",
    )
    parser.add_argument("config", help="training TOML file")
    parser.add_argument("--resume", metavar="DIR",
                        help="a saved state folder (e.g. out/state-00000400), or an output folder (its newest state)")
    parser.add_argument("--check", action="store_true", help="validate the config and scan the dataset, then exit")
    parser.set_defaults(run=run_train)


class _Interrupt:
    """First SIGINT (or SIGTERM / SIGHUP) asks the loop to save and stop; the second one raises KeyboardInterrupt."""

    def __init__(self):
        self.requested = False
        self._previous = None

    # SIGTERM / SIGHUP (a service manager, a closed terminal) are handled like Ctrl-C
    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

    def __enter__(self):
        self._previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nanimekit train: stopping after this step and saving a resume state (Ctrl-C again to abort)", file=sys.stderr)


class _Bars:
    """A labelled bar with counts per phase: scanning, loading, caching, training (with loss and epoch)."""

    def __init__(self):
        from ..files.progress import PhaseBars
        from .hooks import PHASE_UNITS

        self.bars = PhaseBars(PHASE_UNITS)

    def __call__(self, progress) -> None:
        postfix = None
        if progress.phase == "train" and progress.loss is not None:
            postfix = {"loss": f"{progress.loss:.4f}", "epoch": progress.epoch}
        self.bars.show(progress.phase, progress.done, progress.total, label=progress.label, postfix=postfix)

    def close(self) -> None:
        self.bars.close()


def run_train(args) -> int:
    if not args.check:  # the imports and the config take a second or two: say at once that work began
        print(f"animekit train: reading {args.config}", file=sys.stderr, flush=True)
    from .config_toml import load_config

    cfg = load_config(args.config)
    if args.check:
        from .check import check_run

        print("\n".join(check_run(cfg, args.config)))
        return 0

    from transformers.utils import logging as hf_logging

    from .adapters.diffusers_sampler import make_sampler
    from .hooks import Hooks, TrainingDiverged
    from .run import train

    hf_logging.disable_progress_bar()
    bars = _Bars()
    with _Interrupt() as interrupt:
        hooks = Hooks(
            progress=bars,
            should_stop=lambda: interrupt.requested,
            on_sample=make_sampler(cfg) if cfg.sample.every_n_steps else None,
        )
        try:
            result = train(cfg, hooks=hooks, resume=args.resume)
        except TrainingDiverged as exc:
            bars.close()
            print(f"animekit train: error: {exc}", file=sys.stderr)
            return 1
        finally:
            bars.close()
    if result.stopped:
        where = f"; resume with --resume {result.state}" if result.state else ""
        print(f"animekit train: stopped at step {result.steps}{where}", file=sys.stderr)
        return 130
    if result.output is not None:
        loss = f" (loss {result.last_loss:.4f})" if result.last_loss is not None else ""
        print(f"animekit train: wrote {result.output} after {result.steps} steps{loss}")
    return 0
