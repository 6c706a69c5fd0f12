"""pyproject.toml ships what the pack holds: every package folder, every data file, the TOML reader's
backport for Python 3.10, and a torch floor the tests run on."""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import sys
import types
from pathlib import Path

import torch

from animekit.training import config_toml

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

PACK_ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((PACK_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
# Folders that are never part of the installed package: tests, benchmarks, build tools, environments.
NOT_SHIPPED = {"tests", "benchmarks", "tools", "build", "dist", "node_modules"}
DOCS = ("*.md",)  # documentation beside the code, read on GitHub, not at run time


def _skipped(name: str) -> bool:
    return name in NOT_SHIPPED or name.startswith(".") or name.endswith(".egg-info") or name == "__pycache__"


def _package_folders() -> dict[str, Path]:
    """Dotted package name -> folder, for every folder with an __init__.py that the pack ships."""
    found = {}
    for folder, subfolders, files in os.walk(PACK_ROOT):
        subfolders[:] = sorted(d for d in subfolders if not _skipped(d))
        if "__init__.py" in files:
            found[".".join(("animekit", *Path(folder).relative_to(PACK_ROOT).parts))] = Path(folder)
    return found


def _data_files(folder: Path) -> list[str]:
    """The package's non-Python, non-documentation files, relative to its folder (subpackages' left out)."""
    found = []
    for current, subfolders, files in os.walk(folder):
        subfolders[:] = [d for d in subfolders if not _skipped(d) and not (Path(current) / d / "__init__.py").is_file()]
        for name in files:
            if not name.endswith((".py", ".pyc")) and not any(fnmatch.fnmatch(name, p) for p in DOCS):
                found.append((Path(current) / name).relative_to(folder).as_posix())
    return sorted(found)


def test_every_package_folder_is_listed_and_every_listed_package_exists():
    assert SETUPTOOLS["package-dir"] == {"animekit": "."}
    listed = SETUPTOOLS["packages"]
    assert len(listed) == len(set(listed))
    assert sorted(_package_folders()) == sorted(listed), "pyproject.toml [tool.setuptools] packages must list every package folder"


def test_every_data_file_is_package_data_and_every_pattern_matches():
    data = SETUPTOOLS["package-data"]
    for package, folder in _package_folders().items():
        if package == "animekit":
            continue  # the repository root: its files are the project's (README, LICENSE, pyproject)
        files = _data_files(folder)
        patterns = data.get(package, [])
        missing = [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)]
        assert not missing, f"{package}: add these to [tool.setuptools.package-data]: {missing}"
        unused = [p for p in patterns if not any(fnmatch.fnmatch(f, p) for f in files)]
        assert not unused, f"{package}: package-data patterns that match nothing: {unused}"
    assert set(data) <= set(SETUPTOOLS["packages"])


def test_shipped_data_is_where_the_code_reads_it():
    assert data_names("animekit.merge") == ["mbw-presets.tsv"]
    assert "profiles/sd15-anime.profile.json" in data_names("animekit.prompting")
    assert data_names("animekit.sizes") == ["resolution-sets.json"]


def data_names(package: str) -> list[str]:
    return _data_files(_package_folders()[package])


def test_tomli_is_declared_for_python_310():
    dependencies = PYPROJECT["project"]["dependencies"]
    assert "tomli>=2; python_version < '3.11'" in dependencies
    requirements = (PACK_ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    assert 'tomli>=2; python_version < "3.11"' in requirements


def test_the_toml_reader_uses_tomli_before_python_311(monkeypatch):
    """Load a second copy of training/config_toml.py as Python 3.10 would, with a stand-in `tomli`."""
    stand_in = types.ModuleType("tomli")
    stand_in.loads, stand_in.TOMLDecodeError = tomllib.loads, tomllib.TOMLDecodeError
    monkeypatch.setitem(sys.modules, "tomli", stand_in)
    monkeypatch.setattr(sys, "version_info", (3, 10, 14, "final", 0))
    spec = importlib.util.spec_from_file_location("animekit.training._config_toml_py310", config_toml.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.tomllib is stand_in
    assert config_toml.tomllib is not stand_in


def test_torch_floor_is_the_tested_version():
    """The floor is the oldest torch the tests run on; CI installs exactly that one first."""
    floor = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch"))
    assert floor == "torch>=2.13"
    assert tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 13)
    assert "pip install -q torch==2.13.0" in (PACK_ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_comfyignore_keeps_tests_benchmarks_ci_and_tools_out_of_the_archive():
    """`comfy node pack` zips the git-tracked files less the .comfyignore patterns."""
    patterns = (PACK_ROOT / ".comfyignore").read_text(encoding="utf-8").split()
    assert {"tests/", "benchmarks/", ".ci/", "tools/", "test-artifacts/"} <= set(patterns)
    assert not {"workflows/", "prompting/", "nodes/", "*.json", "*.tsv"} & set(patterns)  # the pack itself ships
