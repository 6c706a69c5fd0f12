"""Test tiers: pure tests always run; `host` tests need a real ComfyUI; `slow` ones need ANIMEKIT_SLOW=1."""

from __future__ import annotations

import os

import pytest

from support.host import boot, find_comfyui, missing_comfyui_module, missing_module_message

COMFYUI_ROOT, COMFYUI_REASON = find_comfyui()
RUN_SLOW = os.environ.get("ANIMEKIT_SLOW") == "1"


def pytest_configure(config):
    # One clear failure instead of a hundred collection errors when the host tier cannot boot.
    if COMFYUI_ROOT is not None and (problem := missing_comfyui_module(COMFYUI_ROOT)):
        pytest.exit(problem, returncode=4)
    # CI sets this where it provides ComfyUI, so a host tier that would be skipped fails the run instead.
    if COMFYUI_ROOT is None and os.environ.get("ANIMEKIT_REQUIRE_HOST") == "1":
        pytest.exit(f"ANIMEKIT_REQUIRE_HOST=1 but the host tier cannot run: {COMFYUI_REASON}", returncode=4)


def pytest_report_header(config):
    return [f"animekit host tier: {COMFYUI_REASON}", f"animekit slow tier: {'on' if RUN_SLOW else 'off (ANIMEKIT_SLOW=1)'}"]


def _needs_host(item) -> bool:
    return "host" in item.keywords or "comfy_host" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config, items):
    skip_host = pytest.mark.skip(reason=f"host tier skipped: {COMFYUI_REASON}")
    skip_slow = pytest.mark.skip(reason="slow tier skipped: set ANIMEKIT_SLOW=1 to run it")
    # Booting ComfyUI imports `comfy` for the rest of the session: run pure tests first, so they
    # see a process without ComfyUI however the suite is invoked (stable sort keeps file order).
    items.sort(key=_needs_host)
    for item in items:
        if "host" in item.keywords and COMFYUI_ROOT is None:
            item.add_marker(skip_host)
        if "slow" in item.keywords and not RUN_SLOW:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def comfy_host():
    """A booted ComfyUI with this pack loaded through its own loader."""
    if COMFYUI_ROOT is None:
        pytest.skip(f"host tier skipped: {COMFYUI_REASON}")
    try:
        return boot(COMFYUI_ROOT)
    except ModuleNotFoundError as error:  # one not in support.host.COMFYUI_IMPORTS: still one clear stop
        pytest.exit(missing_module_message(error.name or str(error), COMFYUI_ROOT), returncode=4)


@pytest.fixture
def comfy_folders(comfy_host, tmp_path):
    """ComfyUI's model/input/output/temp folders pointed at tmp_path for one test (see support.executor)."""
    from support.executor import configure_folders

    with configure_folders(tmp_path / "comfy") as folders:
        yield folders
