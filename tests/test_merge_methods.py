"""Per-tensor formulas with hand-computed numbers, and DARE's reproducible mask."""

from __future__ import annotations

import pytest
import torch

from animekit.merge.cosine import CosineRange
from animekit.merge.methods import (
    ADD_DIFFERENCE,
    DARE,
    METHODS,
    REGISTRY,
    TIES,
    WEIGHTED_SUM,
    MergeMethod,
    dare_keep_mask,
    key_seed,
    merge_values,
    trim_to_density,
    uniform_stream,
)

T = lambda *v: torch.tensor(v, dtype=torch.float32)  # noqa: E731


def test_weighted_sum_is_the_fraction_of_b():
    out = merge_values(MergeMethod(WEIGHTED_SUM), 0.25, T(1, 2, -4, 0), T(3, -2, 4, 8))
    assert torch.equal(out, T(1.5, 1.0, -2.0, 2.0))
    assert torch.equal(merge_values(MergeMethod(), 0.0, T(1, 2), T(5, 6)), T(1, 2))
    assert torch.equal(merge_values(MergeMethod(), 1.0, T(1, 2), T(5, 6)), T(5, 6))


def test_add_difference():
    out = merge_values(MergeMethod(ADD_DIFFERENCE), 0.5, T(1, 2, -4, 0), T(3, -2, 4, 8), T(1, 1, 1, 1))
    assert torch.equal(out, T(2.0, 0.5, -2.5, 3.5))


def test_ties_keeps_the_strong_agreeing_part_of_b_minus_c():
    a = T(0, 4, -5, 0.5, 6, 0.1)
    b = T(2, -3, 2.5, 7, -1, 0.2)
    c = torch.zeros(6)
    # trim(A-C) keeps 4,-5,6; trim(B-C) keeps -3,2.5,7; elected sign of the sum: [0,+,-,+,+,0];
    # B's -3 and 2.5 disagree with A's stronger 4 and -5, so only 7 is added (times w = 0.5)
    out = merge_values(MergeMethod(TIES, density=0.5), 0.5, a, b, c)
    assert torch.equal(out, a + T(0, 0, 0, 3.5, 0, 0))


def test_trim_keeps_the_top_fraction_by_magnitude():
    x = T(0.2, -1, 2, -3, 0.5, 0.1, 4, -0.3)
    assert torch.equal(trim_to_density(x, 0.25), T(0, 0, 0, -3, 0, 0, 4, 0))
    assert torch.equal(trim_to_density(x, 0.01), T(0, 0, 0, 0, 0, 0, 4, 0))  # at least one survives
    assert trim_to_density(x, 1.0) is x


def test_dare_drops_and_rescales_b_minus_c():
    n = 1 << 16
    stream = key_seed(3, "diffusion_model.input_blocks.1.0.emb_layers.1.weight")
    out = merge_values(MergeMethod(DARE, density=0.25, seed=3), 0.5, torch.zeros(n), torch.ones(n), torch.zeros(n), stream=stream)
    keep = dare_keep_mask(stream, 0, n, 0.25)
    assert torch.equal(out, keep.float() * 2.0)  # kept elements: (1-0)/0.25 * 0.5
    assert abs(keep.float().mean().item() - 0.25) < 0.01


def test_dare_mask_is_reproducible_and_independent_of_slicing():
    stream = key_seed(7, "diffusion_model.out.2.weight")
    whole = uniform_stream(stream, 0, 1000)
    sliced = torch.cat([uniform_stream(stream, 0, 300), uniform_stream(stream, 300, 700)])
    assert torch.equal(whole, sliced)
    assert torch.equal(whole, uniform_stream(key_seed(7, "diffusion_model.out.2.weight"), 0, 1000))
    assert not torch.equal(whole, uniform_stream(key_seed(8, "diffusion_model.out.2.weight"), 0, 1000))
    assert not torch.equal(whole, uniform_stream(key_seed(7, "diffusion_model.out.0.weight"), 0, 1000))
    # pinned values: the mask must not change between releases (splitmix64 of (i + 1) * golden + stream)
    assert uniform_stream(0, 0, 2).tolist() == [0.8833107948303223, 0.4315279722213745]
    assert key_seed(0, "diffusion_model.out.2.weight") == -1007246974312605814
    assert 0.0 <= whole.min() and whole.max() < 1.0


def test_dare_in_slices_equals_dare_whole():
    method = MergeMethod(DARE, density=0.5, seed=1)
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(1000, generator=g) for _ in range(3))
    stream = key_seed(1, "k")
    whole = merge_values(method, 0.7, a, b, c, stream=stream)
    parts = [merge_values(method, 0.7, a[s:s + 128], b[s:s + 128], c[s:s + 128], stream=stream, start=s) for s in range(0, 1000, 128)]
    assert torch.equal(whole, torch.cat(parts))


@pytest.mark.parametrize("name", [n for n in METHODS if REGISTRY[n].zero_keeps_a])
def test_weight_zero_leaves_a_exactly(name):
    g = torch.Generator().manual_seed(1)
    a, b, c = (torch.randn(64, generator=g).half() for _ in range(3))
    out = merge_values(MergeMethod(name, density=0.2), 0.0, a, b, c, stream=5)
    assert torch.equal(out.half(), a)


@pytest.mark.parametrize("name", METHODS)
def test_scratch_buffers_give_identical_results(name):
    g = torch.Generator().manual_seed(2)
    a, b, c = (torch.randn(3, 5, generator=g).half() for _ in range(3))
    method = MergeMethod(name, density=0.6, seed=9)
    span = CosineRange(-0.5, 0.5, 2)  # the cosine methods' first-pass range
    plain = merge_values(method, 0.3, a, b, c, stream=11, cosine=span)
    scratch = (torch.full((32,), float("nan")), torch.full((32,), float("nan")))
    reused = merge_values(method, 0.3, a, b, c, stream=11, scratch=scratch, cosine=span)
    assert torch.equal(plain, reused) and plain.dtype == torch.float32
    g = torch.Generator().manual_seed(2)  # the same inputs again, made independently of the merged ones
    assert all(torch.equal(t, torch.randn(3, 5, generator=g).half()) for t in (a, b, c))  # inputs untouched


def test_method_validation():
    with pytest.raises(ValueError, match="unknown merge method 'lerp'; choose one of: weighted-sum, add-difference, ties, dare, slerp, "):
        MergeMethod("lerp")
    with pytest.raises(ValueError, match=r"density must be in \(0, 1\]"):
        MergeMethod(DARE, density=0)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        MergeMethod(DARE, seed=-1)
    with pytest.raises(ValueError, match="needs a base model C"):
        merge_values(MergeMethod(ADD_DIFFERENCE), 0.5, T(1), T(2))
    assert MergeMethod(DARE, 0.3, 4).formula.endswith("density 0.3, seed 4")
    assert not MergeMethod(TIES).elementwise and MergeMethod(DARE).needs_base and not MergeMethod().needs_base
