"""Weights from a preset or a typed list: counts per architecture and clear errors."""

from __future__ import annotations

import pytest

from animekit.checkpoints.architecture import SD15, SDXL
from animekit.merge.weights import WeightChoice, parse_weight_list, resolve_weights


def test_a_typed_list_gives_one_weight_per_block():
    weights = resolve_weights(SD15, weights="0, 1 0.5\t" + ",".join(["0.25"] * 23))
    assert weights.values[:3] == (0.0, 1.0, 0.5) and weights.of("OUT11") == 0.25
    assert weights.of("BASE") == 0.0 and weights.source == "custom"
    sdxl = resolve_weights(SDXL, weights=[0.1] * 20)
    assert sdxl.of("OUT08") == 0.1


def test_26_weights_on_sdxl_are_mapped_by_resolution_level():
    weights = resolve_weights(SDXL, weights=",".join(str(i) for i in range(26)))
    assert weights.of("OUT00") == 17.0 and weights.of("M00") == 13.0 and weights.of("IN08") == 9.0
    assert "mapped to SDXL by resolution level" in weights.source


@pytest.mark.parametrize(
    ("arch", "count", "message"),
    [
        (SD15, 20, r"SD1\.x needs 26 weights \(BASE, IN00\.\.IN11, M00, OUT00\.\.OUT11\); got 20"),
        (SDXL, 25, r"SDXL needs 20 weights \(BASE, IN00\.\.IN08, M00, OUT00\.\.OUT08\), or 26 SD1\.x-layout .*; got 25"),
        (SD15, 2, r"needs 26 weights .*; got 2 \(one weight alone is used for every block\)$"),
    ],
)
def test_wrong_count_says_what_the_architecture_needs(arch, count, message):
    with pytest.raises(ValueError, match=message):
        resolve_weights(arch, weights=",".join(["0.5"] * count))


@pytest.mark.parametrize(("arch", "count"), [(SD15, 26), (SDXL, 20)])
def test_one_weight_is_every_blocks_weight(arch, count):
    weights = resolve_weights(arch, weights="0.33")
    assert weights.values == (0.33,) * count
    assert weights.source == "custom: 0.33 for every block"
    assert resolve_weights(arch, weights=" -1 ").values == (-1.0,) * count


def test_non_numbers_are_named_by_position():
    with pytest.raises(ValueError, match=r"weight 2 \('x'\) is not a number"):
        parse_weight_list("0,x,1")
    with pytest.raises(ValueError, match=r"weight 1 \('inf'\) is not a finite number"):
        parse_weight_list("inf,0")
    with pytest.raises(ValueError, match="the weights list is empty"):
        parse_weight_list(" , ")


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError) as err:
        resolve_weights(SD15, preset="HIGH_RES")
    assert "unknown preset 'HIGH_RES'" in str(err.value)
    assert "HIGHRES_REPLACE, LOWRES_REPLACE, GRAD_V" in str(err.value)


def test_preset_and_list_together_are_refused_and_nothing_is_an_error():
    with pytest.raises(ValueError, match="set the preset to 'custom'"):
        resolve_weights(SD15, preset="GRAD_V", weights="0," * 25 + "0")
    with pytest.raises(ValueError, match=r"no weights: choose a preset or give 26 weights"):
        resolve_weights(SD15, preset="custom", weights="  ")
    with pytest.raises(ValueError, match="'GRAD_V' is a preset name"):
        resolve_weights(SD15, preset="custom", weights="GRAD_V")


def test_weight_choice_resolves_late_with_a_user_book(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("preset_name\tpreset_weights\nMINE\t" + ",".join(str(i / 25) for i in range(26)) + "\n")
    choice = WeightChoice(preset="MINE", preset_file=str(path))
    assert choice.resolve(SD15).of("OUT11") == 1.0
    assert choice.resolve(SDXL).of("OUT08") == 1.0 and choice.resolve(SDXL).of("OUT00") == 17 / 25
