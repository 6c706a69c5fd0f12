"""The streaming file merge: slicing, dtypes, .ckpt inputs, VAE handling, and every kind of bad input
ending in a clear error with no file left behind."""

from __future__ import annotations

import collections
import errno
import json
import os
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from animekit.files import output_checks
from animekit.merge import checkpoint_merge, sinks, stream_merge
from animekit.merge.checkpoint_merge import FileMergeConfig, merge_checkpoints, plan_checkpoint_merge
from animekit.merge.methods import MergeMethod
from animekit.merge.safetensors_stream import SafetensorsFile
from animekit.merge.weights import WeightChoice
from support.checkpoints import build_state_dict, write_checkpoint

HALF = WeightChoice(weights=",".join(["0.5"] * 26))



@pytest.fixture(autouse=True)
def private_hash_cache(tmp_path_factory, monkeypatch):
    """Remembered input hashes go to a per-test file outside the test's folder (some tests list it)."""
    monkeypatch.setenv("ANIMEKIT_HASH_CACHE", str(tmp_path_factory.mktemp("hash-cache") / "sha256.json"))


@pytest.fixture(scope="module")
def sd15(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd15")
    return {r: write_checkpoint(root / f"{r}.safetensors", "sd15", seed=s) for r, s in (("a", 1), ("b", 2), ("c", 3))}


def ws(a, b, w=0.5):
    return (a.float() * (1 - w) + b.float() * w)


def folder_files(path):
    return sorted(p.name for p in path.parent.iterdir())


def test_tiny_slices_give_the_same_file_as_whole_tensors(tmp_path, sd15, monkeypatch):
    whole = merge_checkpoints(FileMergeConfig(sd15["a"], sd15["b"], tmp_path / "whole.safetensors", HALF,
                                              model_c=sd15["c"], method=MergeMethod("dare", 0.5, 3)))
    monkeypatch.setattr(stream_merge, "SLICE_ELEMENTS", 5)  # every tensor cut in many slices, buffers reused
    sliced = merge_checkpoints(FileMergeConfig(sd15["a"], sd15["b"], tmp_path / "sliced.safetensors", HALF,
                                               model_c=sd15["c"], method=MergeMethod("dare", 0.5, 3)))
    a, b = load_file(whole.path), load_file(sliced.path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _supports_direct_io(folder) -> bool:
    probe = folder / "direct-probe.bin"
    probe.touch()
    try:
        os.close(os.open(probe, os.O_WRONLY | getattr(os, "O_DIRECT", 0)))
        return hasattr(os, "O_DIRECT")
    except OSError:
        return False
    finally:
        probe.unlink()


@pytest.mark.parametrize("chunk", [8192, 8 * 1024 * 1024])
def test_direct_and_buffered_output_are_byte_identical(tmp_path, sd15, monkeypatch, chunk):
    if not _supports_direct_io(tmp_path):
        pytest.skip(f"the filesystem of {tmp_path} does not take O_DIRECT, so there is no direct sink to compare")
    used = []

    def recording_open_sink(path):
        sink, fds = sinks.open_sink(path)
        used.append(type(sink))
        return sink, fds

    monkeypatch.setattr(checkpoint_merge, "open_sink", recording_open_sink)
    monkeypatch.setattr(sinks, "DIRECT_CHUNK", chunk)  # small chunks: header rewrite lands on flushed data
    monkeypatch.delenv("ANIMEKIT_NO_DIRECT_IO", raising=False)
    direct = merge_checkpoints(FileMergeConfig(sd15["a"], sd15["b"], tmp_path / "direct" / "m.safetensors", HALF))
    monkeypatch.setenv("ANIMEKIT_NO_DIRECT_IO", "1")
    buffered = merge_checkpoints(FileMergeConfig(sd15["a"], sd15["b"], tmp_path / "buffered" / "m.safetensors", HALF))
    assert used == [sinks.DirectSink, sinks.BufferedSink]  # each run really went through the sink it names
    a, b = direct.path.read_bytes(), buffered.path.read_bytes()
    cut = a.index(b'"modelspec.date"')  # the metadata differs only in the time stamp
    assert len(a) == len(b) and a[:cut] == b[:cut] and a[cut + 100:] == b[cut + 100:]


def test_output_is_a_valid_aligned_safetensors_file(tmp_path, sd15):
    result = merge_checkpoints(FileMergeConfig(sd15["a"], sd15["b"], tmp_path / "m.safetensors", HALF))
    raw = result.path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    assert length % 8 == 0 and len(raw) == result.bytes_written
    header = json.loads(raw[8:8 + length])
    header.pop("__metadata__")
    spans = sorted(entry["data_offsets"] for entry in header.values())
    assert spans[0][0] == 0 and spans[-1][1] == len(raw) - 8 - length
    assert all(prev[1] == nxt[0] for prev, nxt in zip(spans, spans[1:]))  # contiguous
    sizes = {"F16": 2, "F32": 4, "I64": 8}
    assert all(e["data_offsets"][0] % sizes[e["dtype"]] == 0 for e in header.values())


@pytest.mark.parametrize(("dtype", "torch_dtype"), [("fp16", torch.float16), ("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_output_dtype(tmp_path, sd15, dtype, torch_dtype):
    result = merge_checkpoints(FileMergeConfig(sd15["a"], sd15["b"], tmp_path / "m.safetensors", HALF, dtype=dtype))
    out, a, b = load_file(result.path), load_file(sd15["a"]), load_file(sd15["b"])
    key = "model.diffusion_model.input_blocks.4.1.proj_in.weight"
    assert torch.equal(out[key], ws(a[key], b[key]).to(torch_dtype))
    vae = "first_stage_model.decoder.conv_in.weight"  # kept keys are cast too
    assert torch.equal(out[vae], a[vae].to(torch_dtype))
    ids = "cond_stage_model.transformer.text_model.embeddings.position_ids"
    assert out[ids].dtype == torch.int64 and torch.equal(out[ids], a[ids])


def test_keep_dtype_follows_model_a_and_mixed_inputs_merge_in_fp32(tmp_path):
    a = write_checkpoint(tmp_path / "a32.safetensors", "sd15", seed=1, dtype=torch.float32)
    b = write_checkpoint(tmp_path / "b16.safetensors", "sd15", seed=2, dtype=torch.bfloat16)
    result = merge_checkpoints(FileMergeConfig(a, b, tmp_path / "m.safetensors", HALF, dtype="keep"))
    out, sa, sb = load_file(result.path), load_file(a), load_file(b)
    key = "model.diffusion_model.middle_block.1.proj_out.weight"
    assert out[key].dtype == torch.float32 and torch.equal(out[key], ws(sa[key], sb[key]))


def test_ckpt_inputs_load_safely_and_merge_the_same(tmp_path, sd15):
    torch.save({"state_dict": load_file(sd15["a"]), "global_step": 10}, tmp_path / "a.ckpt")
    from_ckpt = merge_checkpoints(FileMergeConfig(tmp_path / "a.ckpt", sd15["b"], tmp_path / "x.safetensors", HALF))
    from_st = merge_checkpoints(FileMergeConfig(sd15["a"], sd15["b"], tmp_path / "y.safetensors", HALF))
    x, y = load_file(from_ckpt.path), load_file(from_st.path)
    assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_a_pickle_with_code_is_refused(tmp_path, sd15):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"state_dict": {"x": Evil()}}, tmp_path / "evil.ckpt")
    with pytest.raises(ValueError, match=r"model A: .*evil.ckpt.* cannot be loaded safely .*weights_only=True"):
        merge_checkpoints(FileMergeConfig(tmp_path / "evil.ckpt", sd15["b"], tmp_path / "o.safetensors", HALF))
    assert folder_files(tmp_path / "evil.ckpt") == ["evil.ckpt"]


def test_vae_merge_uses_the_base_weight(tmp_path, sd15):
    weights = WeightChoice(weights="0.25," + ",".join(["0"] * 25))
    result = merge_checkpoints(FileMergeConfig(sd15["a"], sd15["b"], tmp_path / "m.safetensors", weights, vae="merge"))
    out, a, b = load_file(result.path), load_file(sd15["a"]), load_file(sd15["b"])
    key = "first_stage_model.encoder.conv_in.weight"
    assert torch.equal(out[key], ws(a[key], b[key], 0.25).half())
    text = "cond_stage_model.transformer.text_model.final_layer_norm.bias"
    assert torch.equal(out[text], ws(a[text], b[text], 0.25).half())


def test_vae_file_is_baked_in(tmp_path, sd15):
    vae = {k[len("first_stage_model."):]: v.float() for k, v in build_state_dict("sd15", seed=9).items() if k.startswith("first_stage_model.")}
    save_file(vae, tmp_path / "my.vae.safetensors")
    result = merge_checkpoints(FileMergeConfig(sd15["a"], sd15["b"], tmp_path / "m.safetensors", HALF, vae=str(tmp_path / "my.vae.safetensors")))
    out = load_file(result.path)
    assert all(torch.equal(out["first_stage_model." + k], v.half()) for k, v in vae.items())
    assert len([k for k in out if k.startswith("first_stage_model.")]) == len(vae) == 248
    assert "VAE baked in from my.vae.safetensors; model A's 248 VAE keys are not written" in result.report


def test_a_diffusers_vae_is_refused(tmp_path, sd15):
    save_file({"encoder.down_blocks.0.resnets.0.conv1.weight": torch.zeros(4)}, tmp_path / "d.safetensors")
    with pytest.raises(ValueError, match="diffusers-format VAE"):
        merge_checkpoints(FileMergeConfig(sd15["a"], sd15["b"], tmp_path / "m.safetensors", HALF, vae=str(tmp_path / "d.safetensors")))


# --- bad input: a clear error and nothing written ---------------------------------------------

def _cut(src, dst, keep_bytes):
    dst.write_bytes(src.read_bytes()[:keep_bytes])
    return dst


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda src, d: _cut(src, d / "t.safetensors", os.path.getsize(src) - 100), r"model B: .*t\.safetensors.*truncated"),
        (lambda src, d: _cut(src, d / "t.safetensors", 5), r"only 5 bytes long"),
        (lambda src, d: _cut(src, d / "t.safetensors", 3000), r"header length \d+ does not fit"),
        (lambda src, d: (d / "t.safetensors").write_bytes(struct.pack("<Q", 4) + b"nope") and d / "t.safetensors", r"header is not JSON"),
        (lambda src, d: d / "missing.safetensors", r"model B: .*missing.safetensors.* does not exist"),
        (lambda src, d: (d / "t.bin.txt").write_text("x") and d / "t.bin.txt", r"neither \.safetensors nor \.ckpt"),
    ],
)
def test_broken_inputs_fail_clearly(tmp_path, sd15, make, message):
    broken = make(sd15["b"], tmp_path)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        merge_checkpoints(FileMergeConfig(sd15["a"], broken, tmp_path / "out.safetensors", HALF))
    assert not (tmp_path / "out.safetensors").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_shape_mismatch_names_the_key(tmp_path, sd15):
    state = load_file(sd15["b"])
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(4, 9, 3, 3, dtype=torch.float16)  # an inpainting conv_in
    save_file(state, tmp_path / "inpaint.safetensors")
    with pytest.raises(ValueError, match=r"shape mismatch in 1 key\(s\).*model\.diffusion_model\.input_blocks\.0\.0\.weight: A \(4, 4, 3, 3\) vs B \(4, 9, 3, 3\)"):
        merge_checkpoints(FileMergeConfig(sd15["a"], tmp_path / "inpaint.safetensors", tmp_path / "out.safetensors", HALF))
    assert not (tmp_path / "out.safetensors").exists()


def test_architecture_is_checked_before_any_tensor_is_read(tmp_path, sd15, monkeypatch):
    sdxl = write_checkpoint(tmp_path / "xl.safetensors", "sdxl", seed=1)
    monkeypatch.setattr(SafetensorsFile, "read_into", lambda *a, **k: pytest.fail("a tensor was read"))
    with pytest.raises(ValueError, match=r"mixed architectures\): model A \(a.safetensors\) is SD1.x; model B \(xl.safetensors\) is SDXL"):
        merge_checkpoints(FileMergeConfig(sd15["a"], sdxl, tmp_path / "out.safetensors", HALF))
    save_file({"lora_unet_x.lora_up.weight": torch.zeros(2)}, tmp_path / "lora.safetensors")
    with pytest.raises(ValueError, match=r"model B \(lora.safetensors\) is a LoRA, not a checkpoint"):
        plan_checkpoint_merge(FileMergeConfig(sd15["a"], tmp_path / "lora.safetensors", tmp_path / "o.safetensors", HALF))


def test_output_rules(tmp_path, sd15):
    with pytest.raises(ValueError, match="is model A; inputs are never overwritten"):
        merge_checkpoints(FileMergeConfig(sd15["a"], sd15["b"], sd15["a"], HALF, overwrite=True))
    (tmp_path / "exists.safetensors").write_text("old")
    with pytest.raises(FileExistsError, match="exists"):
        merge_checkpoints(FileMergeConfig(sd15["a"], sd15["b"], tmp_path / "exists.safetensors", HALF))
    assert (tmp_path / "exists.safetensors").read_text() == "old"
    with pytest.raises(ValueError, match=r"must end in \.safetensors"):
        merge_checkpoints(FileMergeConfig(sd15["a"], sd15["b"], tmp_path / "out.ckpt", HALF))
    with pytest.raises(ValueError, match="needs a base model C"):
        merge_checkpoints(FileMergeConfig(sd15["a"], sd15["b"], tmp_path / "o.safetensors", HALF, method=MergeMethod("ties")))


def test_not_enough_disk_space_is_refused_up_front(tmp_path, sd15, monkeypatch):
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(output_checks.shutil, "disk_usage", lambda path: usage(10**12, 10**12 - 1000, 1000))
    with pytest.raises(OSError, match=r"not enough free disk space .*needs 0.0\d GB, 0.00 GB are free") as err:
        merge_checkpoints(FileMergeConfig(sd15["a"], sd15["b"], tmp_path / "out.safetensors", HALF))
    assert err.value.errno == errno.ENOSPC and list(tmp_path.iterdir()) == []


def test_disk_full_mid_write_leaves_nothing(tmp_path, sd15, monkeypatch):
    real_write, real_pwrite = os.write, os.pwrite
    written = [0]

    def count(data):
        written[0] += len(data)
        if written[0] > 20_000:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sinks.os, "write", lambda fd, data: count(data) or real_write(fd, data))
    monkeypatch.setattr(sinks.os, "pwrite", lambda fd, data, offset: count(data) or real_pwrite(fd, data, offset))
    monkeypatch.setattr(sinks, "DIRECT_CHUNK", 8192)
    with pytest.raises(OSError, match="disk full while writing .*out.safetensors.*nothing was saved"):
        merge_checkpoints(FileMergeConfig(sd15["a"], sd15["b"], tmp_path / "out.safetensors", HALF))
    assert list(tmp_path.iterdir()) == []


def test_cancel_leaves_nothing_and_inputs_are_untouched(tmp_path, sd15):
    before = {r: (p.stat().st_mtime_ns, p.read_bytes()) for r, p in sd15.items()}
    calls = [0]

    def cancel():
        calls[0] += 1
        if calls[0] == 50:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        merge_checkpoints(FileMergeConfig(sd15["a"], sd15["b"], tmp_path / "out.safetensors", HALF), check_cancel=cancel)
    assert list(tmp_path.iterdir()) == []
    assert before == {r: (p.stat().st_mtime_ns, p.read_bytes()) for r, p in sd15.items()}


def test_progress_reaches_the_total(tmp_path, sd15):
    seen = []
    result = merge_checkpoints(FileMergeConfig(sd15["a"], sd15["b"], tmp_path / "o.safetensors", HALF), progress=lambda d, t: seen.append((d, t)))
    assert seen[-1][0] == seen[-1][1] > 0 and all(d1 <= d2 for (d1, _), (d2, _) in zip(seen, seen[1:]))
    assert seen[-1][1] + 8 < result.bytes_written  # data bytes, without the header


def test_input_hashes_are_remembered_by_path_size_and_mtime(tmp_path, sd15, monkeypatch):
    import hashlib
    import json as _json

    from animekit.files import hashing

    first = merge_checkpoints(FileMergeConfig(sd15["a"], sd15["b"], tmp_path / "1.safetensors", HALF))
    real = {r: hashlib.sha256(sd15[r].read_bytes()).hexdigest() for r in "ab"}
    assert _json.loads(first.metadata["sd_merge_recipe"])["model_a"] == real["a"]
    assert hashing.cached_sha256(sd15["a"]) == real["a"] and hashing.cached_sha256(sd15["b"]) == real["b"]

    monkeypatch.setattr(SafetensorsFile, "start_hashing", lambda self: pytest.fail("hashed a remembered file"))
    second = merge_checkpoints(FileMergeConfig(sd15["a"], sd15["b"], tmp_path / "2.safetensors", HALF))
    assert second.metadata["sd_merge_models"] == first.metadata["sd_merge_models"]

    copy = tmp_path / "b-copy.safetensors"
    copy.write_bytes(sd15["b"].read_bytes())
    hashing.remember_sha256(copy, real["b"])
    assert hashing.cached_sha256(copy) == real["b"]
    os.utime(copy, ns=(1_000_000_000, 1_000_000_000))  # touched: no longer trusted
    assert hashing.cached_sha256(copy) is None
    monkeypatch.setenv("ANIMEKIT_HASH_CACHE", "off")
    assert hashing.hash_cache_path() is None and hashing.cached_sha256(sd15["a"]) is None
