"""Where a host's run puts its files (training/run_files.py): names, folders, resume states."""

from __future__ import annotations

import json

import pytest

from animekit.training.run_files import (
    clear_states,
    destination,
    file_stem,
    is_state_folder,
    own_output_path,
    own_outputs,
    run_folder,
    start_state,
)


@pytest.mark.parametrize(
    ("given", "stem"),
    [("alice", "alice"), (" alice.safetensors ", "alice"), ("chars/alice.SAFETENSORS", "chars/alice"), ("a\\b", "a/b")],
)
def test_file_stem_takes_the_users_name(given, stem):
    assert file_stem(given) == stem


@pytest.mark.parametrize("bad", ["", "   ", ".safetensors", "/abs", "../x", "a//b", "a/./b", "a/"])
def test_file_stem_refuses_what_cannot_be_a_file_name(bad):
    with pytest.raises(ValueError, match=r"^filename: .* is not a plain file name \(subfolders like `chars/alice` are fine\)$"):
        file_stem(bad)


def test_destination_and_work_folder_keep_subfolders_inside_their_roots(tmp_path):
    loras = tmp_path / "loras"
    found = destination(loras, "chars/alice")
    assert found.folder == (loras / "chars").resolve()
    assert found.name == "alice"
    assert found.listed == "chars/alice.safetensors"  # what LoraLoader lists
    assert run_folder(tmp_path / "out", "lora", "chars/alice") == (tmp_path / "out" / "animekit_training" / "lora" / "chars" / "alice").resolve()
    (tmp_path / "elsewhere").mkdir()
    (loras / "link").parent.mkdir(parents=True)
    (loras / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="filename 'link/x.safetensors' escapes the folder"):
        destination(loras, "link/x")


def test_own_outputs_are_listed_with_their_prefix_and_found_again(tmp_path):
    root = tmp_path / "checkpoints"
    assert own_outputs(root) == []
    (root / "sub").mkdir(parents=True)
    for name in ("b.safetensors", "sub/a.safetensors", "notes.txt"):
        (root / name).write_bytes(b"x")
    assert own_outputs(root) == ["output/b.safetensors", "output/sub/a.safetensors"]
    assert own_output_path(root, "output/sub/a.safetensors") == (root / "sub" / "a.safetensors").resolve()
    assert own_output_path(root, "sub/a.safetensors") is None  # a name from the host's own model list
    with pytest.raises(ValueError, match="continue_from '../x.safetensors' escapes the folder"):
        own_output_path(root, "output/../x.safetensors")


def _state(run, step: int, complete: bool = True):
    folder = run / f"state-{step:08d}"
    folder.mkdir(parents=True)
    if complete:
        (folder / "state.json").write_text(json.dumps({"step": step}), encoding="utf-8")
    return folder


def test_state_folder_names():
    assert is_state_folder("state-00000100")
    assert is_state_folder(".state-00000100.partial") and is_state_folder(".state-00000100.old")
    for other in ("state-", "state-12a", "samples", "latent_cache", ".state-00000100", "state-00000100.partial", "xstate-00000001"):
        assert not is_state_folder(other), other


def test_resume_picks_the_newest_complete_state(tmp_path):
    run = tmp_path / "run"
    assert start_state(run, resume=True) is None  # nothing saved yet: a fresh start
    _state(run, 2)
    newest = _state(run, 10)
    _state(run, 30, complete=False)  # a save that never finished is not a state
    assert start_state(run, resume=True) == newest
    assert (run / "state-00000002").is_dir()  # resuming removes nothing


def test_a_fresh_run_clears_old_states_and_nothing_else(tmp_path):
    run = tmp_path / "run"
    _state(run, 2)
    _state(run, 3, complete=False)
    (run / ".state-00000004.partial").mkdir()
    (run / "latent_cache").mkdir()
    (run / "log.csv").write_text("step,loss\n", encoding="utf-8")
    assert start_state(run, resume=False) is None
    assert sorted(p.name for p in run.iterdir()) == ["latent_cache", "log.csv"]
    assert clear_states(run) == 0
    assert clear_states(tmp_path / "missing") == 0
