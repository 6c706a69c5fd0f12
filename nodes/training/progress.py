"""What a user sees and does while a trainer node runs: progress bar, loss text, samples, Cancel.

The trainer reports through `training.hooks.Hooks`; this turns that into ComfyUI's progress bar
(with sample images as the node's live preview), a text line under the node
(`PromptServer.send_progress_text`), and a cancel that stops cleanly: ComfyUI's progress hook
raises on Cancel, which during training would skip the resume save, so the raise is caught and
turned into `should_stop`, and the trainer saves its state before it returns.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from PIL import Image

import comfy.model_management
import comfy.utils

from ...training.hooks import Hooks, Progress
from ...training.loss_graph import loss_graph_pixels

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 0.25  # progress messages at most this often (the last one always goes)


def send_text(node_id: str | None, text: str) -> None:
    """A status line under the node (ComfyUI 0.3.64+); quietly nothing outside a server run."""
    if node_id is None:
        return
    try:
        from server import PromptServer
    except ImportError:
        return
    server = getattr(PromptServer, "instance", None)
    if server is None:
        return
    send = getattr(server, "send_progress_text", None)
    if send is None:  # duck-typed servers (tests) still carry the message through their send_sync
        send = lambda message, node: PromptServer.send_progress_text(server, message, node)  # noqa: E731
    try:
        send(text, node_id)
    except Exception as exc:  # noqa: BLE001 - a status line must never stop training
        log.debug("progress text not sent: %s", exc)


def preview_tuple(image: torch.Tensor):
    """ComfyUI's preview format for a [H, W, 3] image in [0, 1]."""
    from comfy.cli_args import args

    pixels = (image.clamp(0, 1).cpu().numpy() * 255).astype(np.uint8)
    return ("JPEG", Image.fromarray(pixels), args.preview_size)


class TrainingMonitor:
    """Hooks for one node run; keeps the loss history and sample images for the node's outputs."""

    def __init__(self, node_id: str | None, title: str):
        self.node_id = node_id
        self.title = title
        self.losses: list[tuple[int, float]] = []
        self.samples: list[torch.Tensor] = []  # [N, H, W, 3] per sampling step
        self.sample_steps: list[int] = []
        self.cancelled = False
        self._bar: comfy.utils.ProgressBar | None = None
        self._phase = ""
        self._last = 0.0

    def hooks(self, render_samples=None) -> Hooks:
        on_sample = None
        if render_samples is not None:
            def on_sample(step, bundle):
                self.add_samples(step, render_samples(bundle))
        return Hooks(on_step=self.on_step, on_sample=on_sample, should_stop=self.should_stop, progress=self.progress)

    # ---------------------------------------------------------------------------- trainer hooks
    def on_step(self, step: int, loss: float, rates: dict[str, float]) -> None:
        self.losses.append((step, loss))

    def should_stop(self) -> bool:
        if comfy.model_management.processing_interrupted():
            self.cancelled = True
        return self.cancelled

    def progress(self, p: Progress) -> None:
        if p.phase != self._phase:
            self._phase = p.phase
            self._bar = comfy.utils.ProgressBar(max(1, p.total), node_id=self.node_id)
            self._last = 0.0
        now = time.monotonic()
        if p.done < p.total and now - self._last < MIN_INTERVAL_S:
            return
        self._last = now
        self._update(p.done, p.total)
        send_text(self.node_id, self.status(p))

    def status(self, p: Progress) -> str:
        text = f"{self.title}: {p.label} {p.done}/{p.total}"
        if p.phase == "train":
            if p.epoch:
                text += f", epoch {p.epoch}"
            if p.loss is not None:
                text += f", loss {p.loss:.4f}"
        return text

    def add_samples(self, step: int, images: torch.Tensor) -> None:
        self.samples.append(images)
        self.sample_steps.append(step)
        if self._bar is not None:
            self._update(self._bar.current, self._bar.total, preview_tuple(images[0]))
        send_text(self.node_id, f"{self.title}: sample images at step {step}")

    def _update(self, value: int, total: int, preview=None) -> None:
        try:
            self._bar.update_absolute(value, total, preview)
        except comfy.model_management.InterruptProcessingException:
            # ComfyUI's hook raises on Cancel (and clears the flag): remember it; while training the
            # trainer stops at the next step and saves a resume state, before that there is nothing to save
            self.cancelled = True
            if self._phase != "train":
                raise

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            comfy.model_management.interrupt_current_processing(False)
            raise comfy.model_management.InterruptProcessingException()

    # ---------------------------------------------------------------------------------- outputs
    def loss_graph(self) -> torch.Tensor:
        """The loss per step (raw and smoothed) as an IMAGE [1, H, W, 3]."""
        return torch.from_numpy(loss_graph_pixels(self.losses, self.title))[None]

    def sample_images(self) -> torch.Tensor | None:
        return torch.cat(self.samples) if self.samples else None
