"""The dependency direction, read from the source with `ast` (every import, lazy ones too):
nodes -> features (prompting, sizes, merge, training) -> neutral helpers (files, checkpoints).

- no core package imports ComfyUI (`comfy`, `comfy_api`, `comfy_extras`, `folder_paths`, ComfyUI's
  `nodes`, ...) or the pack's own `nodes/`;
- `training/` imports neither `merge/` nor `nodes/`; `merge/` imports neither `training/` nor `nodes/`;
- the neutral helpers import no feature package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOT_CORE = ("nodes", "tests", "tools", "benchmarks")
# every package folder of the pack but the ComfyUI nodes (so a new core package is checked too)
CORE = tuple(sorted(p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name not in NOT_CORE))
NEUTRAL = ("files", "checkpoints")
FEATURES = tuple(p for p in CORE if p not in NEUTRAL)
COMFYUI = ("comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "nodes", "server", "execution", "node_helpers")
FORBIDDEN = {
    "training": {"merge", "nodes"},
    "merge": {"training", "nodes"},
    **{package: {"nodes"} for package in CORE},
    **{package: set(FEATURES) | {"nodes"} for package in NEUTRAL},
}


def imports_of(path: Path) -> list[tuple[int, str, str]]:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return imports_in(path.read_text(encoding="utf-8"), parts[:-1], str(path))


def imports_in(text: str, package: tuple[str, ...], where: str = "<text>") -> list[tuple[int, str, str]]:
    """(line, kind, target) for every import in `text`, a module of the pack folder `package`: kind
    'pack' (a top-level folder of this pack, from a relative or `animekit.` import) or 'external'
    (the first part of an absolute module name)."""
    found = []
    for node in ast.walk(ast.parse(text, where)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                if node.level - 1 > len(package):
                    raise AssertionError(f"{where}:{node.lineno}: relative import above the pack root")
                module = ".".join((*base, node.module)) if node.module else ".".join(base)
                targets = [module] if node.module or base else [alias.name for alias in node.names]
                found += [(node.lineno, "pack", t.split(".")[0]) for t in targets if t]
                continue
            names = [node.module or ""]
        else:
            continue
        for name in names:
            if name.startswith("animekit."):
                found.append((node.lineno, "pack", name.split(".")[1]))
            else:
                found.append((node.lineno, "external", name.split(".")[0]))
    return found


def sources(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def test_the_known_core_packages_are_checked():
    assert {"prompting", "sizes", "merge", "training", "files", "checkpoints"} <= set(CORE)


@pytest.mark.parametrize("package", CORE)
def test_core_package_imports_follow_the_direction(package):
    files = sources(package)
    assert files, f"{package}/ has no Python files"
    wrong = []
    for path in files:
        for line, kind, target in imports_of(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            if kind == "external" and target in COMFYUI:
                wrong.append(f"{where} imports ComfyUI's {target!r}")
            if kind == "pack" and target in FORBIDDEN[package]:
                wrong.append(f"{where} imports the pack's {target}/")
    assert wrong == []


def test_the_reader_sees_every_kind_of_import():
    """The checker itself can fail: relative, absolute, lazy and `from .. import x` imports are all seen."""
    text = (
        "import comfy.utils\n"
        "from ..merge.blocks import unet_block\n"
        "from .. import nodes\n"
        "def lazy():\n    import folder_paths\n    from animekit.merge import plan\n"
        "from ...files.atomic import atomic_output\n"
        "from .lora import x\n"
    )
    assert sorted(imports_in(text, ("training", "adapters"))) == [
        (1, "external", "comfy"),
        (2, "pack", "training"),  # ..merge from training/adapters/ is training.merge, not the pack's merge/
        (3, "pack", "training"),
        (5, "external", "folder_paths"),
        (6, "pack", "merge"),
        (7, "pack", "files"),
        (8, "pack", "training"),
    ]
    assert sorted(imports_in("from ..merge.blocks import unet_block\nfrom .. import nodes\n", ("training",))) == [
        (1, "pack", "merge"),
        (2, "pack", "nodes"),
    ]
