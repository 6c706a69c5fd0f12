"""Preset book (seed + SuperMerger names), user TSVs, and SD1 -> SDXL mapping by resolution level."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from animekit.checkpoints.architecture import SD15, SDXL
from animekit.merge.presets import BUILTIN_PRESETS, SDXL_FROM_SD1, builtin_presets, load_presets, read_preset_file, sd1_to_sdxl
from animekit.merge.weights import resolve_weights

# SuperMerger's preset list as the project received it (CRLF), beside the repository in ../shared/.
SHARED_TSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mbw-presets-sd1.tsv"
# sha256 of that list with LF line ends: the shipped file, less its two seed rows, must be exactly it.
SUPERMERGER_SHA256 = "069d8670a6f81cbb3c7668abd8780ad33886f4f3cdcd50325942948eb2c561b0"
HIGHRES = (0, 0, 1, 1, 0.67, 0.67, 0.33, 0.33, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.33, 0.33, 0.67, 0.67, 1, 1, 0)
LOWRES = (0, 0, 0, 0, 0, 0, 0, 0.33, 0.33, 0.67, 0.67, 1, 1, 1, 1, 1, 0.67, 0.67, 0.33, 0.33, 0, 0, 0, 0, 0, 0)


def test_seed_presets_are_shipped_first_with_the_cards_values():
    book = builtin_presets()
    assert book.names[:2] == ["HIGHRES_REPLACE", "LOWRES_REPLACE"]
    assert book.get("HIGHRES_REPLACE") == HIGHRES
    assert book.get("lowres_replace") == LOWRES  # names are matched case-insensitively
    assert len(book.names) == 2 + 38  # the seed presets, then the 38 rows of the SuperMerger list


def _supermerger_rows() -> str:
    """The shipped file's header and SuperMerger rows (the two seed rows after the header left out)."""
    lines = BUILTIN_PRESETS.read_text(encoding="utf-8").splitlines(keepends=True)
    assert [line.split("\t")[0] for line in lines[1:3]] == ["HIGHRES_REPLACE", "LOWRES_REPLACE"]
    return "".join(lines[:1] + lines[3:])


def test_shipped_book_holds_every_supermerger_preset_unchanged(tmp_path):
    rows = _supermerger_rows()
    assert hashlib.sha256(rows.encode("utf-8")).hexdigest() == SUPERMERGER_SHA256
    crlf = tmp_path / "supermerger.tsv"
    crlf.write_bytes(rows.replace("\n", "\r\n").encode("utf-8"))  # as SuperMerger ships it: the reader copes
    reference = read_preset_file(crlf)
    assert len(reference) == 38
    book = builtin_presets()
    for name, values in reference.items():
        assert book.get(name) == values
    assert book.get("GRAD_V")[:3] == (0, 1, 0.9166666667)


@pytest.mark.skipif(not SHARED_TSV.is_file(), reason=f"SuperMerger's original list is not at {SHARED_TSV}")
def test_pinned_hash_is_the_shared_reference_list():
    reference = SHARED_TSV.read_bytes()
    assert b"\r\n" in reference
    assert hashlib.sha256(reference.replace(b"\r\n", b"\n")).hexdigest() == SUPERMERGER_SHA256


def test_sd1_to_sdxl_maps_by_resolution_level():
    assert SDXL_FROM_SD1["OUT00"] == "OUT03" and SDXL_FROM_SD1["OUT08"] == "OUT11"
    assert SDXL_FROM_SD1["IN08"] == "IN08" and SDXL_FROM_SD1["M00"] == "M00"
    numbered = tuple(range(26))  # value = SD1 index, so the mapping is visible
    assert sd1_to_sdxl(numbered) == (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 17, 18, 19, 20, 21, 22, 23, 24, 25)
    # the high-res preset hits the highest-resolution output blocks on SDXL, not the middle ones
    sdxl = dict(zip(SDXL.blocks, sd1_to_sdxl(HIGHRES)))
    assert (sdxl["OUT06"], sdxl["OUT07"], sdxl["OUT08"]) == (1, 1, 0)
    assert (sdxl["IN01"], sdxl["IN02"], sdxl["M00"], sdxl["OUT00"]) == (1, 1, 0, 0)
    low = dict(zip(SDXL.blocks, sd1_to_sdxl(LOWRES)))
    assert (low["M00"], low["OUT00"], low["OUT06"], low["IN01"]) == (1, 0.67, 0, 0)


@pytest.mark.parametrize("name", builtin_presets().names)
def test_every_preset_works_on_both_architectures(name):
    sd1 = resolve_weights(SD15, preset=name)
    sdxl = resolve_weights(SDXL, preset=name)
    assert len(sd1.values) == 26 and len(sdxl.values) == 20
    for block in SDXL.blocks:
        assert sdxl.of(block) == sd1.of(SDXL_FROM_SD1[block])
    assert "resolution level" in sdxl.source


def test_user_presets_load_and_override(tmp_path):
    user = tmp_path / "mine.tsv"
    user.write_bytes(
        b"preset_name\tpreset_weights\r\n# my favourites\r\n\r\n"
        b"MINE\t" + ",".join(["0.5"] * 26).encode() + b"\r\n"
        b"GRAD_V\t" + ",".join(["1"] * 26).encode() + b"\r\n"
    )
    book = load_presets(user)
    assert book.get("MINE") == (0.5,) * 26
    assert book.get("GRAD_V") == (1.0,) * 26 and book.sources["GRAD_V"] == str(user)
    assert book.names[:2] == ["HIGHRES_REPLACE", "LOWRES_REPLACE"] and "MINE" in book.names


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("X\t1,2,3\n", r"mine.tsv line 2 \(X\): a preset needs 26 values .*got 3"),
        ("X\t" + ",".join(["0"] * 25 + ["half"]) + "\n", r"value 26 \('half'\) is not a number"),
        ("X\t" + ",".join(["0"] * 25 + ["nan"]) + "\n", r"not a finite number"),
        ("X\t" + ",".join(["0"] * 26) + "\nX\t" + ",".join(["0"] * 26) + "\n", r"line 3: preset 'X' is defined twice"),
        ("X " + ",".join(["0"] * 26) + "\n", r"expected 'name<TAB>comma-separated weights'"),
        ("", r"holds no presets"),
    ],
)
def test_bad_user_preset_files_say_where(tmp_path, body, message):
    path = tmp_path / "mine.tsv"
    path.write_text("preset_name\tpreset_weights\n" + body)
    with pytest.raises(ValueError, match=message):
        read_preset_file(path)


def test_a_missing_user_file_leaves_the_shipped_presets_working():
    book = load_presets("/nonexistent/nope.tsv")
    assert book.get("GRAD_V") == builtin_presets().get("GRAD_V")
    assert book.problems == ("preset file '/nonexistent/nope.tsv' does not exist",)
    with pytest.raises(ValueError, match=r"unknown preset 'MINE'; .* \(not read: preset file '/nonexistent/nope.tsv' does not exist\)$"):
        book.get("MINE")
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        read_preset_file("/nonexistent/nope.tsv")  # the strict reader (shipped file) still refuses


def test_a_broken_user_file_fails_only_for_its_broken_presets(tmp_path):
    user = tmp_path / "mine.tsv"
    user.write_text(
        "preset_name\tpreset_weights\n"
        "GOOD\t" + ",".join(["0.5"] * 26) + "\n"
        "SHORT\t1,2,3\n"
        "GRAD_V\t" + ",".join(["x"] * 26) + "\n"  # a broken override of a shipped name
        "no tab here\n"
    )
    book = load_presets(user)
    shipped = builtin_presets()
    for name in ("HIGHRES_REPLACE", "LOWRES_REPLACE", "GRAD_A"):  # shipped presets keep working
        assert book.get(name) == shipped.get(name)
        assert resolve_weights(SDXL, preset=name, book=book).values == resolve_weights(SDXL, preset=name).values
    assert book.get("GOOD") == (0.5,) * 26 and book.sources["GOOD"] == str(user)
    with pytest.raises(ValueError, match=r"^preset 'SHORT' cannot be used: mine.tsv line 3 \(SHORT\): a preset needs 26 values .*got 3$"):
        book.get("SHORT")
    with pytest.raises(ValueError, match=r"^preset 'GRAD_V' cannot be used: mine.tsv line 4 \(GRAD_V\): value 1 \('x'\) is not a number$"):
        book.get("grad_v")  # not silently the shipped GRAD_V: the user meant theirs
    assert book.problems == ("mine.tsv line 5: expected 'name<TAB>comma-separated weights', got 'no tab here'",)
    assert book.names[-3:] == ["GOOD", "SHORT", "GRAD_V"]  # choosable, so the choice says what is wrong


def test_shipped_file_is_package_data():
    assert BUILTIN_PRESETS.name == "mbw-presets.tsv" and BUILTIN_PRESETS.parent.name == "merge"
