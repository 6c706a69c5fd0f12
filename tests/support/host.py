"""Find and boot a real ComfyUI in-process for the host tier.

ComfyUI is found through `COMFYUI_PATH`, or because this pack sits in a ComfyUI's `custom_nodes/`.
The pack is then loaded through ComfyUI's own loader (`nodes.load_custom_node`), exactly as the
server does at start-up, so the node classes under test are the ones a user gets.

From boot on, ComfyUI's model, input, output, temp and user folders point into a session temporary
directory (`ComfyHost.sandbox`), so no test can write into the ComfyUI checkout; a test that needs
its own files uses the `comfy_folders` fixture (support.executor.configure_folders).
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[2]
# folder_paths kinds redirected away from the ComfyUI checkout (the ones SD1.5/SDXL work touches)
MODEL_FOLDERS = ("checkpoints", "loras", "vae", "embeddings", "text_encoders", "diffusion_models")


def find_comfyui() -> tuple[Path | None, str]:
    """Return (ComfyUI root, reason) — root is None when the host tier must skip."""
    env = os.environ.get("COMFYUI_PATH")
    if env:
        root = Path(env).expanduser().resolve()
        if (root / "comfy").is_dir() and (root / "nodes.py").is_file():
            return root, f"ComfyUI at {root}"
        return None, f"COMFYUI_PATH={env} is not a ComfyUI checkout (no comfy/ and nodes.py)"
    parent = PACK_ROOT.parent
    if parent.name == "custom_nodes" and (parent.parent / "nodes.py").is_file():
        return parent.parent, f"ComfyUI at {parent.parent} (pack in custom_nodes/)"
    return None, "no ComfyUI: set COMFYUI_PATH to a ComfyUI checkout to run the host tier"


# Modules ComfyUI's core imports at start-up (from its requirements.txt, by import name).
COMFYUI_IMPORTS = ("aiohttp", "yarl", "einops", "torchsde", "scipy", "yaml", "psutil", "sqlalchemy", "alembic",
                   "av", "PIL", "safetensors", "transformers", "tokenizers", "sentencepiece", "pydantic")


def missing_comfyui_module(root: Path, imports: tuple[str, ...] = COMFYUI_IMPORTS) -> str | None:
    """The first of `imports` this environment lacks, as a one-line message (missing_module_message); None if none."""
    for name in imports:
        if importlib.util.find_spec(name) is None:
            return missing_module_message(name, root)
    return None


def missing_module_message(name: str, root: Path) -> str:
    """Why the host tier cannot run, naming the module and the command that installs ComfyUI's requirements."""
    return (f"COMFYUI_PATH is set but ComfyUI cannot be imported here: module {name!r} is missing. "
            f"Install ComfyUI's requirements into this environment, leaving torch, torchvision, torchaudio "
            f"and spandrel out: grep -vE '^(torch|torchvision|torchaudio|spandrel)([^a-zA-Z0-9_-]|$)' "
            f"{root}/requirements.txt > /tmp/comfyui-req.txt && {sys.executable} -m pip install -r /tmp/comfyui-req.txt")


def _stub_torchvision() -> None:
    """ComfyUI imports torchvision at module level but uses it lazily; CPU-only test envs lack it."""
    if importlib.util.find_spec("torchvision") is not None:
        return
    # transformers / diffusers record at import whether torchvision exists; let them see the truth
    # (absent), or the stub makes them import torchvision features (diffusers.training_utils fails)
    import diffusers.utils.import_utils  # noqa: F401
    import transformers.utils.import_utils  # noqa: F401

    stub = _session_tempdir("animekit-tvstub-")
    (stub / "torchvision" / "transforms").mkdir(parents=True)
    (stub / "torchvision" / "__init__.py").write_text("")
    (stub / "torchvision" / "transforms" / "__init__.py").write_text("")
    sys.path.append(str(stub))


def _session_tempdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def point_folders(base: Path) -> dict[str, Path]:
    """Point folder_paths' MODEL_FOLDERS and input/output/temp/user folders under `base` (created).

    Returns {kind: folder}; model kinds live in base/models/<kind>.
    """
    import folder_paths

    folders = {kind: base / "models" / kind for kind in MODEL_FOLDERS}
    folders.update({name: base / name for name in ("input", "output", "temp", "user")})
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for kind in MODEL_FOLDERS:
        extensions = folder_paths.folder_names_and_paths[kind][1]
        folder_paths.folder_names_and_paths[kind] = ([str(folders[kind])], extensions)
    folder_paths.set_input_directory(str(folders["input"]))
    folder_paths.set_output_directory(str(folders["output"]))
    folder_paths.set_temp_directory(str(folders["temp"]))
    folder_paths.set_user_directory(str(folders["user"]))
    folder_paths.filename_list_cache.clear()
    return folders


@dataclass
class ComfyHost:
    root: Path
    pack_module: str
    node_ids: list[str]
    sandbox: Path | None = None  # where ComfyUI's folders point outside a `comfy_folders` test

    @property
    def nodes(self):
        import nodes

        return nodes

    def node_class(self, node_id: str):
        return self.nodes.NODE_CLASS_MAPPINGS[node_id]


_HOST: ComfyHost | None = None


def import_comfy(root: Path) -> None:
    """Make ComfyUI at `root` importable (CPU unless CUDA is present) without loading any nodes.

    Enough for scripts that only need `comfy.*` (e.g. tests/support/make_key_layouts.py).
    """
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    _stub_torchvision()
    import torch
    import comfy.options

    comfy.options.enable_args_parsing(False)
    from comfy.cli_args import args

    if not torch.cuda.is_available():
        args.cpu = True
    import comfy.model_management  # noqa: F401  (reads args.cpu)

    # As main.py does: bind `utils` to ComfyUI's utils/ package before anything binds it to
    # comfy/utils.py, which would break `import server` and with it comfy_extras/nodes_images.py.
    import utils.install_util  # noqa: F401


def boot(root: Path) -> ComfyHost:
    """Import ComfyUI from `root` (CPU unless CUDA is present) and load this pack through it."""
    global _HOST
    if _HOST is not None:
        return _HOST
    import_comfy(root)
    import nodes

    sandbox = _session_tempdir("animekit-comfy-")
    point_folders(sandbox)

    asyncio.run(nodes.init_builtin_extra_nodes())
    before = set(nodes.NODE_CLASS_MAPPINGS)
    ok = asyncio.run(nodes.load_custom_node(str(PACK_ROOT)))
    if not ok:
        raise RuntimeError(f"ComfyUI failed to load the AnimeKit pack from {PACK_ROOT}; see the log above")
    added = sorted(set(nodes.NODE_CLASS_MAPPINGS) - before)
    module_name = str(PACK_ROOT).replace(".", "_x_")
    _HOST = ComfyHost(root=root, pack_module=module_name, node_ids=added, sandbox=sandbox)
    return _HOST
