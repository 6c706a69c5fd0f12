"""The package imports without ComfyUI and exposes the pack entry point and the CLI."""

import importlib
import subprocess
import sys

import animekit


def test_import_without_comfyui():
    assert "comfy" not in sys.modules
    assert callable(animekit.comfy_entrypoint)
    for name in ("animekit.prompting", "animekit.sizes", "animekit.files", "animekit.merge", "animekit.training", "animekit.training.data"):
        importlib.import_module(name)
    assert "comfy" not in sys.modules and "comfy_api" not in sys.modules


def test_cli_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "animekit", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for sub in ("prompt", "buckets", "merge", "train"):
        assert sub in out.stdout
