"""Skip markers for tests that need a package the pack only uses when it is installed.

A test that needs TensorBoard, prodigyopt, bitsandbytes and the like is marked `@requires("tensorboard")`:
where the package is absent it is skipped with the reason and the install command, never failed.
"""

from __future__ import annotations

import importlib.util

import pytest


def is_installed(module: str) -> bool:
    """Whether `module` (a top-level import name) can be imported, without importing it."""
    return importlib.util.find_spec(module) is not None


def requires(module: str, package: str | None = None) -> pytest.MarkDecorator:
    """skipif marker: skip unless `module` is importable; `package` is its PyPI name when that differs."""
    package = package or module
    return pytest.mark.skipif(
        not is_installed(module), reason=f"needs the optional package {package}: pip install {package}"
    )
