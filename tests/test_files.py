"""Neutral file helpers (files/): folder-bound paths, atomic writes with the process umask, and the
legacy model hash."""

import hashlib
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from animekit.files import atomic
from animekit.files.atomic import atomic_output, save_safetensors_atomic
from animekit.files.hashing import legacy_hash_from, legacy_model_hash
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


def test_finished_file_gets_umask_permissions_and_round_trips(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "UMASK", 0o027)  # the mask read at import
    path = save_safetensors_atomic({"w": torch.arange(6.0).view(2, 3)}, tmp_path / "m.safetensors", {"k": 1})
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)
    assert torch.equal(load_file(str(path))["w"], torch.arange(6.0).view(2, 3))


def test_writing_never_touches_the_process_umask(tmp_path, monkeypatch):
    """Another thread (ComfyUI runs several) must never see a temporary umask of 0."""

    def forbidden(mask):
        raise AssertionError(f"os.umask({mask:#o}) called while writing")

    monkeypatch.setattr(atomic.os, "umask", forbidden)
    path = save_safetensors_atomic({"w": torch.zeros(2)}, tmp_path / "m.safetensors")
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~atomic.UMASK)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_the_umask_is_read_at_import(mask):
    code = "from animekit.files.atomic import UMASK; import os; print(oct(UMASK), oct(os.umask(0)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         preexec_fn=lambda: os.umask(mask)).stdout.split()
    assert out == [oct(mask), oct(mask)]  # read right, and left as it was


def test_legacy_model_hash_is_a1111s(tmp_path):
    data = b"".join(bytes([i]) * 0x10000 for i in range(18))  # 64 KiB blocks 0..17: the one at 1 MiB is block 16
    path = tmp_path / "model.safetensors"
    path.write_bytes(data)
    expected = hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    assert expected == "db12c0f0"
    assert legacy_model_hash(path) == expected
    assert legacy_hash_from(lambda offset, n: data[offset:offset + n]) == expected
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 1000)  # shorter than 1 MiB: A1111 hashes the empty read
    assert legacy_model_hash(small) == "e3b0c442"
