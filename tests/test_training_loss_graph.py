"""The loss picture (training/loss_graph.py): TensorBoard's smoothing, and a graph that shows the losses."""

from __future__ import annotations

import numpy as np
import pytest

from animekit.training.loss_graph import RAW_COLOUR, SIZE, SMOOTH_COLOUR, loss_graph_pixels, smoothed


def test_smoothing_is_a_debiased_moving_average():
    assert smoothed([]) == []
    assert smoothed([2.0]) == pytest.approx([2.0])  # debiased: the first value is itself, not 0.1 of it
    assert smoothed([3.0, 3.0, 3.0]) == pytest.approx([3.0, 3.0, 3.0])
    # by hand: avg1 = 0.1, avg2 = 0.09 + 0 = 0.09; divided by 1 - 0.9 and 1 - 0.81
    assert smoothed([1.0, 0.0]) == pytest.approx([1.0, 0.09 / 0.19])
    assert smoothed([1.0, 0.0], weight=0.0) == pytest.approx([1.0, 0.0])


def colour_mask(pixels: np.ndarray, colour) -> np.ndarray:
    return np.all(np.abs(pixels * 255 - np.array(colour)) < 1.5, axis=-1)


def test_a_falling_loss_is_drawn_from_top_left_to_bottom_right():
    pixels = loss_graph_pixels([(step, 1.0 / step) for step in range(1, 51)], "run")
    assert pixels.shape == (SIZE[1], SIZE[0], 3) and pixels.dtype == np.float32
    assert 0.0 <= pixels.min() and pixels.max() == 1.0
    ys, xs = np.nonzero(colour_mask(pixels, SMOOTH_COLOUR))
    assert len(xs) > 200  # the smoothed curve is there
    left, right = ys[xs < xs.min() + 5].mean(), ys[xs > xs.max() - 5].mean()
    assert left < right  # high loss at the start is drawn higher (smaller y)
    assert colour_mask(pixels, RAW_COLOUR).any()  # and the raw losses beside it


def test_no_steps_draws_no_curve():
    pixels = loss_graph_pixels([], "run")
    assert not colour_mask(pixels, SMOOTH_COLOUR).any() and not colour_mask(pixels, RAW_COLOUR).any()
    one = loss_graph_pixels([(1, 0.5)], "run")
    assert colour_mask(one, SMOOTH_COLOUR).sum() > 0 and not colour_mask(one, RAW_COLOUR).any()  # a dot, no line
