"""Terminal progress for the `animekit` commands: one labelled tqdm bar per phase, on stderr.

A phase's bar appears on its first report (so a command that fails on its input prints no bar)
and is closed when the next phase starts; the label may change within a phase (the model part
being loaded). Redraws are rate-limited by tqdm, so reporting every item is cheap.
"""

from __future__ import annotations

import sys
from typing import Mapping, TextIO


class PhaseBars:
    """`show(phase, done, total, label=...)` for each report; `close()` when the work ends."""

    def __init__(self, units: Mapping[str, str] | None = None, *, file: TextIO | None = None, enabled: bool = True):
        self.units = dict(units or {})
        self.file = file
        self.enabled = enabled
        self.phase: str | None = None
        self.bar = None

    def show(self, phase: str, done: int, total: int, *, label: str = "", postfix: dict | None = None) -> None:
        if not self.enabled:
            return
        if phase != self.phase or self.bar is None:
            from tqdm import tqdm

            self.close()
            self.phase = phase
            self.bar = tqdm(
                total=total, initial=done, desc=label or phase, unit=self.units.get(phase, "it"),
                file=self.file or sys.stderr, dynamic_ncols=True,
            )  # fmt: skip
            return
        bar = self.bar
        if total != bar.total:
            bar.total = total
        if label and label != bar.desc:
            bar.set_description_str(label, refresh=False)
        if postfix:
            bar.set_postfix(postfix, refresh=False)
        if done == total:
            bar.n = done
            bar.refresh()  # the last count always shows
        else:
            bar.update(done - bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.phase = None
