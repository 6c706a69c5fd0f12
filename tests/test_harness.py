"""The test harness itself: the host tier's one clear stop when ComfyUI's modules are missing, and
the skip markers for optional packages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.host import COMFYUI_IMPORTS, missing_comfyui_module, missing_module_message
from support.optional import is_installed, requires

PACK_ROOT = Path(__file__).resolve().parents[1]


def test_missing_module_is_named_with_the_install_command(tmp_path):
    message = missing_comfyui_module(tmp_path, imports=("json", "animekit_no_such_module", "os"))
    assert "module 'animekit_no_such_module' is missing" in message
    assert f"{tmp_path}/requirements.txt > /tmp/comfyui-req.txt" in message
    assert f"{sys.executable} -m pip install -r /tmp/comfyui-req.txt" in message
    assert "torch|torchvision|torchaudio|spandrel" in message  # never replace the installed torch


def test_nothing_missing_gives_none(tmp_path):
    assert missing_comfyui_module(tmp_path, imports=("json", "os")) is None


def test_the_checked_modules_are_comfyuis_core_imports():
    assert {"aiohttp", "einops", "torchsde", "scipy", "yaml", "av", "sqlalchemy"} <= set(COMFYUI_IMPORTS)


def test_a_missing_comfyui_module_stops_the_run_once(tmp_path):
    """COMFYUI_PATH set, `scipy` unimportable: exit status 4 and one message, no collection errors."""
    root = tmp_path / "ComfyUI"
    (root / "comfy").mkdir(parents=True)
    (root / "nodes.py").write_text("")
    hide_scipy = "import sys; sys.modules['scipy'] = None; import pytest; sys.exit(pytest.main(sys.argv[1:]))"
    env = {**os.environ, "COMFYUI_PATH": str(root)}
    result = subprocess.run(
        [sys.executable, "-c", hide_scipy, "-q", "-p", "no:cacheprovider", "tests/test_harness.py"],
        cwd=PACK_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 4, output
    assert output.strip().splitlines() == [f"Exit: {missing_module_message('scipy', root)}"]  # nothing else


def test_ci_fails_when_the_host_tier_it_requires_would_be_skipped(tmp_path):
    env = {**os.environ, "COMFYUI_PATH": str(tmp_path / "nowhere"), "ANIMEKIT_REQUIRE_HOST": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_harness.py"],
        cwd=PACK_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 4, output
    assert output.strip().splitlines() == [
        f"Exit: ANIMEKIT_REQUIRE_HOST=1 but the host tier cannot run: COMFYUI_PATH={tmp_path / 'nowhere'} "
        "is not a ComfyUI checkout (no comfy/ and nodes.py)"
    ]


def test_requires_skips_with_the_install_command_only_where_absent():
    absent = requires("animekit_no_such_module", "no-such-package")
    assert absent.args == (True,)
    assert absent.kwargs["reason"] == "needs the optional package no-such-package: pip install no-such-package"
    assert requires("json").args == (False,)
    assert is_installed("json") and not is_installed("animekit_no_such_module")
