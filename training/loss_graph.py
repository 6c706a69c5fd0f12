"""The loss-per-step picture a host shows after a run: raw losses and their smoothed curve."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SIZE = (768, 384)
RAW_COLOUR = (160, 190, 235)
SMOOTH_COLOUR = (20, 60, 160)


def smoothed(values: list[float], weight: float = 0.9) -> list[float]:
    """Debiased exponential moving average (TensorBoard's smoothing)."""
    out, avg = [], 0.0
    for i, value in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * value
        out.append(avg / (1 - weight**i))
    return out


def draw_loss_graph(losses: list[tuple[int, float]], title: str, size: tuple[int, int] = SIZE) -> Image.Image:
    """(step, loss) pairs as an RGB image: axes with the loss range and first / last step."""
    width, height = size
    left, right, top, bottom = 64, 16, 28, 36
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    draw.text((left, 8), f"{title}: loss per step", fill="black", font=font)
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    if not losses:
        draw.text((left + 10, height // 2), "no training steps", fill="gray", font=font)
        return img
    steps = [s for s, _ in losses]
    values = [v for _, v in losses]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    first, last = steps[0], max(steps[-1], steps[0] + 1)

    def point(step, value):
        x = left + (step - first) / (last - first) * (width - left - right)
        y = height - bottom - (value - lo) / (hi - lo) * (height - top - bottom)
        return x, y

    if len(losses) > 1:
        draw.line([point(s, v) for s, v in losses], fill=RAW_COLOUR, width=1)
        draw.line([point(s, v) for s, v in zip(steps, smoothed(values))], fill=SMOOTH_COLOUR, width=2)
    else:
        x, y = point(steps[0], values[0])
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=SMOOTH_COLOUR)
    draw.text((4, top), f"{hi:.4f}", fill="black", font=font)
    draw.text((4, height - bottom - 12), f"{lo:.4f}", fill="black", font=font)
    draw.text((left, height - bottom + 6), f"step {first}", fill="black", font=font)
    label = f"step {steps[-1]}"
    draw.text((width - right - 8 * len(label), height - bottom + 6), label, fill="black", font=font)
    return img


def loss_graph_pixels(losses: list[tuple[int, float]], title: str) -> np.ndarray:
    """The graph as float32 [H, W, 3] in [0, 1] (a ComfyUI IMAGE is this with a batch axis)."""
    return np.asarray(draw_loss_graph(losses, title), dtype=np.float32) / 255.0
