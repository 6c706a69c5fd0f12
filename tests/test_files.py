"""Shared output safety: folder-bound paths and atomic writes (merge/files.py)."""

import os

import pytest
import torch
from safetensors.torch import load_file

from animekit.files.atomic import atomic_output, save_safetensors_atomic
from animekit.files.paths import resolve_inside


def test_resolve_inside_refuses_escapes(tmp_path):
    assert resolve_inside(tmp_path, "sub/model.safetensors") == tmp_path.resolve() / "sub" / "model.safetensors"
    for bad in ("../x.safetensors", "/etc/passwd", "sub/../../x"):
        with pytest.raises(ValueError, match="escapes the folder"):
            resolve_inside(tmp_path, bad)


def test_failed_write_leaves_the_old_file_and_no_partial(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_finished_file_gets_umask_permissions_and_round_trips(tmp_path):
    old = os.umask(0o022)
    try:
        path = save_safetensors_atomic({"w": torch.arange(6.0).view(2, 3)}, tmp_path / "m.safetensors", {"k": 1})
    finally:
        os.umask(old)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert torch.equal(load_file(str(path))["w"], torch.arange(6.0).view(2, 3))
