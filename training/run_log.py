"""The loss / learning-rate log: `log.csv` in the output folder, plus TensorBoard events when the
tensorboard package is installed.

On resume, rows after the resumed step are dropped first, so the CSV reads as one clean run.
"""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path

from ..files.atomic import atomic_output

COLUMNS = ("step", "epoch", "loss", "lr_unet", "lr_te1", "lr_te2", "grad_norm", "images_per_s")


class RunLog:
    def __init__(self, output_dir: Path, *, tensorboard: bool, resume_step: int | None = None):
        self.path = output_dir / "log.csv"
        output_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.is_file():
            self._truncate_after(resume_step)
        elif self.path.is_file():
            self.path.unlink()
        new = not self.path.is_file()
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(COLUMNS)
            self._file.flush()
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(output_dir / "tensorboard"), purge_step=resume_step)
            except ImportError:
                warnings.warn("logging.tensorboard: the tensorboard package is not installed; writing log.csv only")

    def _truncate_after(self, step: int) -> None:
        rows = list(csv.reader(io.StringIO(self.path.read_text(encoding="utf-8"))))
        kept = [rows[0]] + [row for row in rows[1:] if row and row[0].isdigit() and int(row[0]) <= step]
        with atomic_output(self.path) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as handle:
                csv.writer(handle).writerows(kept)

    def write(self, step: int, epoch: int, loss: float, rates: dict[str, float], grad_norm: float | None, images_per_s: float | None) -> None:
        row = [
            step,
            epoch,
            f"{loss:.6g}",
            *(f"{rates[p]:.6g}" if p in rates else "" for p in ("unet", "te1", "te2")),
            "" if grad_norm is None else f"{grad_norm:.6g}",
            "" if images_per_s is None else f"{images_per_s:.4g}",
        ]
        self._csv.writerow(row)
        self._file.flush()
        if self._tb is not None:
            self._tb.add_scalar("loss", loss, step)
            for part, rate in rates.items():
                self._tb.add_scalar(f"lr/{part}", rate, step)
            if grad_norm is not None:
                self._tb.add_scalar("grad_norm", grad_norm, step)

    def write_validation(self, step: int, loss: float) -> None:
        """validation.csv (step, val_loss) beside log.csv; TensorBoard's val_loss beside loss."""
        path = self.path.with_name("validation.csv")
        rows = []
        if path.is_file():  # a resume: keep the rows up to this step
            rows = [r for r in csv.reader(io.StringIO(path.read_text(encoding="utf-8")))][1:]
            rows = [r for r in rows if r and r[0].isdigit() and int(r[0]) < step]
        with atomic_output(path) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as handle:
                csv.writer(handle).writerows([["step", "val_loss"], *rows, [step, f"{loss:.6g}"]])
        if self._tb is not None:
            self._tb.add_scalar("val_loss", loss, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
