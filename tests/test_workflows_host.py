"""The bundled workflows against the live node definitions of a real ComfyUI (host tier).

Every node exists; its sockets and widget values match the node's declared inputs (count, order,
the control value after seed-like inputs); numbers are in range and combo values are valid
(checked here because ComfyUI 0.3.x's validation skips V3 combos); the API-format conversion
passes ComfyUI's own `execution.validate_prompt`; the files equal what the generator writes from
the specs; and ComfyUI's templates route lists them.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from support.executor import configure_folders, validate
from support.workflow_browser import PACK_FOLDER_NAME
from support.workflow_checks import node_problems
from support.workflow_files import CORE_NODE_TYPES, PACK_ROOT, WORKFLOWS_DIR, load, model_files, pack_node_ids, workflow_paths
from support.workflow_ui_to_api import FRONTEND_ONLY_TYPES, ui_to_api
from workflows.make import rendered_workflows
from workflows.nodeinfo import LiveCatalog

pytestmark = pytest.mark.host

PATHS = workflow_paths()
IDS = [path.stem for path in PATHS]


@pytest.fixture(scope="module")
def catalog(comfy_host, tmp_path_factory):
    """Live node definitions, with stand-in files for the models the workflows name.

    Model combos (ckpt_name, lora_name) list the files in ComfyUI's model folders; the stand-ins
    (empty files of those names in temporary folders) make the workflows' choices valid there.
    """
    with configure_folders(tmp_path_factory.mktemp("comfy")) as folders:
        layout = LiveCatalog(comfy_host)
        for path in PATHS:
            for folder, filename in model_files(load(path), layout):
                target = folders.models(folder) / filename
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
        yield LiveCatalog(comfy_host)  # built after the files exist, so the combos list them


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_nodes_match_their_live_definitions(path, catalog):
    assert node_problems(load(path), catalog) == []


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_api_conversion_passes_comfyui_validation(path, catalog, comfy_host):
    workflow = load(path)
    prompt = ui_to_api(workflow, catalog)
    real_nodes = [node for node in workflow["nodes"] if node["type"] not in FRONTEND_ONLY_TYPES]
    assert sorted(prompt) == sorted(str(node["id"]) for node in real_nodes)
    ok, error, node_errors = validate(comfy_host, prompt)
    assert ok, f"{error}\n{json.dumps(node_errors, indent=1)}"
    assert node_errors == {}


def test_files_equal_the_generator_output(comfy_host):
    """workflows/*.json are generated: edit tools/workflows/specs.py and run tools/workflows/make.py."""
    expected = rendered_workflows(comfy_host)
    for name, text in expected.items():
        assert (WORKFLOWS_DIR / name).read_text(encoding="utf-8") == text, f"{name} is stale: run tools/workflows/make.py"


def test_core_allowlist_holds_only_builtin_nodes(comfy_host, catalog):
    for node_type in sorted(CORE_NODE_TYPES):
        assert node_type in catalog, f"{node_type} is not a node of this ComfyUI"
        module = catalog[node_type]["python_module"]
        assert module == "nodes" or module.startswith("comfy_extras."), f"{node_type} comes from {module}"


def test_pack_node_ids_found_in_source_are_the_loaded_ones(comfy_host):
    assert pack_node_ids() == set(comfy_host.node_ids)


def test_templates_route_lists_the_workflows(comfy_host, tmp_path):
    """ComfyUI's GET /workflow_templates handler, run on a custom_nodes folder holding this pack."""
    import folder_paths
    from aiohttp import web
    from app.custom_node_manager import CustomNodeManager

    custom_nodes = tmp_path / "custom_nodes"
    custom_nodes.mkdir()
    (custom_nodes / PACK_FOLDER_NAME).symlink_to(PACK_ROOT, target_is_directory=True)
    saved = folder_paths.folder_names_and_paths["custom_nodes"]
    folder_paths.folder_names_and_paths["custom_nodes"] = ([str(custom_nodes)], set())
    try:
        routes, webapp = web.RouteTableDef(), web.Application()
        CustomNodeManager().add_routes(routes, webapp, [(PACK_FOLDER_NAME, str(custom_nodes / PACK_FOLDER_NAME))])
        handler = next(route.handler for route in routes if getattr(route, "path", None) == "/workflow_templates")
        listing = json.loads(asyncio.run(handler(None)).text)
    finally:
        folder_paths.folder_names_and_paths["custom_nodes"] = saved
    assert sorted(listing[PACK_FOLDER_NAME]) == sorted(IDS)
    served = {resource.canonical for resource in webapp.router.resources()}
    assert f"/api/workflow_templates/{PACK_FOLDER_NAME}" in served
