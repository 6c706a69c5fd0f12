"""Run API-format prompts through ComfyUI's real executor in-process, for host tests.

`run_prompt(host, prompt)` does what the server does for `POST /prompt` + its queue worker:
`execution.validate_prompt`, then `execution.PromptExecutor.execute` on the validated outputs,
with a stub server that records every message instead of sending it over a websocket. A
progress hook like the one `main.py` installs is set for the run, so `comfy.utils.ProgressBar`
updates arrive as "progress" messages and a node can be cancelled with
`nodes.interrupt_processing()` exactly as in the app. `server.PromptServer.instance` is the stub
during the run, so nodes that send their own messages through it work and are recorded.

Tiny models inside a prompt: ComfyUI's checkpoint loaders detect SD1.5/SDXL from tensor shapes,
so tiny checkpoint files would not load as those models. Instead the harness registers a
test-only node, `AnimeKitTest_TinyModels` (inputs `arch` = "sd15" | "sdxl", `seed`; outputs
MODEL, CLIP, VAE from support.comfy_models), into `nodes.NODE_CLASS_MAPPINGS` — only when a test
calls `register_tiny_models_node()` (run_prompt, execute_prompt and validate do), never in the pack.
`tiny_txt2img_prompt()` builds the standard CLIPTextEncode -> KSampler -> VAEDecode graph on it.

`configure_folders(tmp_path)` points folder_paths' model, input, output and temp folders at a
temporary directory for one test (and restores them). Outside it they point at the session
sandbox that support.host.boot sets up, never into the ComfyUI tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

TINY_MODELS_NODE = "AnimeKitTest_TinyModels"
TEST_CLIENT_ID = "animekit-tests"


class StubServer:
    """The parts of server.PromptServer that the executor and progress reporting touch."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata: dict = {}
        self.messages: list[tuple[str, Any]] = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def queue_updated(self):
        pass


@dataclass
class RunResult:
    """What one execution produced.

    ui: per node id, the UI dict an output node returned (the history's "outputs", e.g.
        {"images": [{"filename", "subfolder", "type"}]}).
    outputs: per executed node id, ComfyUI's raw output data: one list per output slot (one item
        per list-mapped call, usually exactly one).
    messages: every (event, data) the executor sent, in order.
    error: the "execution_error" / "execution_interrupted" message data, or None on success.
    """

    prompt_id: str
    success: bool
    ui: dict[str, dict] = field(default_factory=dict)
    outputs: dict[str, list] = field(default_factory=dict)
    messages: list[tuple[str, Any]] = field(default_factory=list)
    error: dict | None = None

    def output(self, node_id: str, slot: int = 0):
        """The single value a node produced on `slot` (asserts it was not list-mapped)."""
        if node_id not in self.outputs:
            raise AssertionError(f"node {node_id!r} produced no cached output; executed: {sorted(self.outputs)}")
        values = self.outputs[node_id][slot]
        assert len(values) == 1, f"node {node_id!r} slot {slot} produced {len(values)} values; use .outputs"
        return values[0]

    @property
    def progress(self) -> list[dict]:
        return [data for event, data in self.messages if event == "progress"]


def validate(host, prompt: dict) -> tuple[bool, dict | None, dict]:
    """ComfyUI's own `execution.validate_prompt` (async in 0.3.64) -> (ok, error, node_errors)."""
    import execution

    register_tiny_models_node()
    ok, error, _outputs, node_errors = asyncio.run(execution.validate_prompt(_new_id(), prompt, None))
    return ok, error, node_errors


def execute_prompt(host, prompt: dict, *, extra_data: dict | None = None) -> RunResult:
    """Validate and execute `prompt`; never raises for a failing node (see RunResult.error)."""
    import execution

    register_tiny_models_node()
    prompt_id = _new_id()
    ok, error, outputs, node_errors = asyncio.run(execution.validate_prompt(prompt_id, prompt, None))
    if not ok:
        raise AssertionError(f"prompt failed validation: {error}\nnode errors: {node_errors}")
    server = StubServer()
    server.last_prompt_id = prompt_id
    executor = execution.PromptExecutor(server, cache_type=execution.CacheType.CLASSIC)
    with _progress_hook(server), _server_instance(server):
        # a client id makes the executor send every message (as to a connected frontend)
        executor.execute(prompt, prompt_id, {"client_id": TEST_CLIENT_ID, **(extra_data or {})}, outputs)
    failure = next((data for event, data in executor.status_messages if event in ("execution_error", "execution_interrupted")), None)
    node_outputs = {}
    for node_id in executor.caches.outputs.all_node_ids():
        data = executor.caches.outputs.get(node_id)
        if data is not None:
            node_outputs[node_id] = data
    return RunResult(
        prompt_id=prompt_id,
        success=executor.success and failure is None,
        ui=executor.history_result.get("outputs", {}),
        outputs=node_outputs,
        messages=server.messages,
        error=failure,
    )


def run_prompt(host, prompt: dict, *, extra_data: dict | None = None) -> RunResult:
    """Execute `prompt` through ComfyUI's PromptExecutor; AssertionError with ComfyUI's details if it fails."""
    result = execute_prompt(host, prompt, extra_data=extra_data)
    if not result.success:
        err = result.error or {}
        trace = "".join(err.get("traceback", []))
        raise AssertionError(
            f"node {err.get('node_id')} ({err.get('node_type')}) failed: "
            f"{err.get('exception_type')}: {err.get('exception_message')}\n{trace}"
        )
    return result


def _new_id() -> str:
    return str(uuid.uuid4())


@contextlib.contextmanager
def _progress_hook(server: StubServer) -> Iterator[None]:
    """What main.hijack_progress installs: progress -> messages, and interrupt checks at each update."""
    import comfy.model_management
    import comfy.utils
    from comfy_execution.progress import get_progress_state
    from comfy_execution.utils import get_executing_context

    def hook(value, total, preview_image, prompt_id=None, node_id=None):
        context = get_executing_context()
        if context is not None:
            prompt_id = prompt_id or context.prompt_id
            node_id = node_id or context.node_id
        comfy.model_management.throw_exception_if_processing_interrupted()
        prompt_id = prompt_id or server.last_prompt_id
        node_id = node_id or server.last_node_id
        get_progress_state().update_progress(node_id, value, total, preview_image)
        server.send_sync("progress", {"value": value, "max": total, "prompt_id": prompt_id, "node": node_id}, server.client_id)

    previous = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(hook)
    try:
        yield
    finally:
        comfy.utils.set_progress_bar_global_hook(previous)


@contextlib.contextmanager
def _server_instance(server: StubServer) -> Iterator[None]:
    """Nodes may report through `server.PromptServer.instance.send_sync`; route that to the stub."""
    from server import PromptServer

    missing = object()
    previous = getattr(PromptServer, "instance", missing)
    PromptServer.instance = server
    try:
        yield
    finally:
        if previous is missing:
            del PromptServer.instance
        else:
            PromptServer.instance = previous


class TinyModelsNode:
    """Test-only loader: the tiny SD1.5 / SDXL MODEL, CLIP and VAE of support.comfy_models."""

    CATEGORY = "AnimeKit/testing"
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "arch": (["sd15", "sdxl"], {"tooltip": "Tiny SD1.5-style or SDXL-style models."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "tooltip": "Seed of the random weights."}),
            }
        }

    def load(self, arch, seed):
        from support.comfy_models import tiny_models

        return tiny_models(arch, seed).as_tuple()


def register_tiny_models_node() -> str:
    """Add `AnimeKitTest_TinyModels` to ComfyUI's node mappings (idempotent); returns its id."""
    import nodes

    nodes.NODE_CLASS_MAPPINGS.setdefault(TINY_MODELS_NODE, TinyModelsNode)
    nodes.NODE_DISPLAY_NAME_MAPPINGS.setdefault(TINY_MODELS_NODE, "AnimeKit Test: Tiny Models")
    return TINY_MODELS_NODE


def tiny_txt2img_prompt(
    arch: str = "sd15",
    *,
    positive: str = "1girl, solo, smile",
    negative: str = "lowres, bad anatomy",
    width: int = 64,
    height: int = 64,
    steps: int = 2,
    seed: int = 0,
    model_seed: int = 0,
) -> dict:
    """CLIPTextEncode -> KSampler -> VAEDecode -> PreviewImage on the tiny models.

    Node ids: "models", "positive", "negative", "latent", "sampler", "decode", "preview"; add or
    rewire nodes to put a node under test into the graph (e.g. prompt["sampler"]["inputs"]["model"]).
    """
    return {
        "models": {"class_type": TINY_MODELS_NODE, "inputs": {"arch": arch, "seed": model_seed}},
        "positive": {"class_type": "CLIPTextEncode", "inputs": {"text": positive, "clip": ["models", 1]}},
        "negative": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": ["models", 1]}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": 1}},
        "sampler": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["models", 0],
                "seed": seed,
                "steps": steps,
                "cfg": 5.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "positive": ["positive", 0],
                "negative": ["negative", 0],
                "latent_image": ["latent", 0],
            },
        },
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sampler", 0], "vae": ["models", 2]}},
        "preview": {"class_type": "PreviewImage", "inputs": {"images": ["decode", 0]}},
    }


@dataclass
class Folders:
    """The temporary folders a test runs against (each exists)."""

    root: Path
    checkpoints: Path
    loras: Path
    input: Path
    output: Path
    temp: Path

    def models(self, kind: str) -> Path:
        return self.root / "models" / kind


@contextlib.contextmanager
def configure_folders(tmp_path) -> Iterator[Folders]:
    """Point folder_paths' model folders (support.host.MODEL_FOLDERS) and input/output/temp at `tmp_path`; restore after."""
    import folder_paths

    from support.host import MODEL_FOLDERS, point_folders

    saved_models = {kind: folder_paths.folder_names_and_paths[kind] for kind in MODEL_FOLDERS}
    saved_dirs = (
        folder_paths.get_input_directory(),
        folder_paths.get_output_directory(),
        folder_paths.get_temp_directory(),
        folder_paths.get_user_directory(),
    )
    saved_cache = dict(folder_paths.filename_list_cache)
    root = Path(tmp_path)
    folders = point_folders(root)
    try:
        yield Folders(
            root=root,
            checkpoints=folders["checkpoints"],
            loras=folders["loras"],
            input=folders["input"],
            output=folders["output"],
            temp=folders["temp"],
        )
    finally:
        folder_paths.folder_names_and_paths.update(saved_models)
        folder_paths.set_input_directory(saved_dirs[0])
        folder_paths.set_output_directory(saved_dirs[1])
        folder_paths.set_temp_directory(saved_dirs[2])
        folder_paths.set_user_directory(saved_dirs[3])
        folder_paths.filename_list_cache.clear()
        folder_paths.filename_list_cache.update(saved_cache)
