"""The bundled workflow files and the checks that need no ComfyUI (structure, links, node types)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from support.workflow_ui_to_api import FRONTEND_ONLY_TYPES, WorkflowFormatError, normalized_links, widget_inputs
from workflows import PACK_ROOT, WORKFLOWS_DIR
from workflows.builder import CORE_CNR_ID, PACK_CNR_ID
SUPPORTED_VERSIONS = (0.4, 1)

# Built-in ComfyUI node types the bundled workflows may use. Kept short and explicit on purpose:
# a type outside this list and outside the pack is most likely a third-party node that users
# would not have. The host tier checks that each of these really is a built-in of ComfyUI.
CORE_NODE_TYPES = frozenset({
    "CheckpointLoaderSimple",
    "CLIPSetLastLayer",
    "CLIPTextEncode",
    "ImageStitch",
    "KSampler",
    "LatentUpscale",
    "PreviewAny",
    "PreviewImage",
    "PrimitiveInt",
    "SaveImage",
    "VAEDecode",
})

_NODE_ID = re.compile(r"""node_id\s*=\s*["'](AnimeKit\w+)["']""")


def workflow_paths() -> list[Path]:
    return sorted(WORKFLOWS_DIR.glob("*.json"))


def load(path: Path) -> dict:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def pack_node_ids() -> set[str]:
    """AnimeKit node ids declared in nodes/**/*.py (read as text: no ComfyUI needed)."""
    found: set[str] = set()
    for source in (PACK_ROOT / "nodes").rglob("*.py"):
        found.update(_NODE_ID.findall(source.read_text(encoding="utf-8")))
    return found


def structure_problems(workflow: dict) -> list[str]:
    """Everything wrong with the file's shape and its links, checked both ways; [] when sound."""
    problems: list[str] = []
    if workflow.get("version") not in SUPPORTED_VERSIONS:
        problems.append(f"version {workflow.get('version')!r} is not one of {SUPPORTED_VERSIONS}")
    nodes = workflow.get("nodes")
    if not isinstance(nodes, list) or not nodes:
        return problems + ["no nodes"]
    by_id: dict[int, dict] = {}
    for node in nodes:
        if node.get("id") in by_id:
            problems.append(f"node id {node.get('id')} is used twice")
        by_id[node.get("id")] = node
        for key in ("type", "pos", "size", "mode"):
            if key not in node:
                problems.append(f"node {node.get('id')} has no {key!r}")
    try:
        links = normalized_links(workflow)
    except (WorkflowFormatError, KeyError, TypeError) as error:
        return problems + [f"links: {error}"]
    if workflow.get("last_node_id", 0) < max(by_id, default=0):
        problems.append("last_node_id is below the highest node id")
    if links and workflow.get("last_link_id", 0) < max(links):
        problems.append("last_link_id is below the highest link id")

    for link_id, (origin_id, origin_slot, target_id, target_slot, link_type) in links.items():
        origin, target = by_id.get(origin_id), by_id.get(target_id)
        if origin is None or target is None:
            problems.append(f"link {link_id} joins missing node(s) {origin_id} -> {target_id}")
            continue
        outputs, inputs = origin.get("outputs") or [], target.get("inputs") or []
        if origin_slot >= len(outputs):
            problems.append(f"link {link_id} leaves node {origin_id} from missing output {origin_slot}")
        else:
            output = outputs[origin_slot]
            if link_id not in (output.get("links") or []):
                problems.append(f"link {link_id} is not listed on node {origin_id} output {origin_slot}")
            if output.get("type") != link_type:
                problems.append(f"link {link_id} is {link_type} but node {origin_id} output {origin_slot} is {output.get('type')}")
        if target_slot >= len(inputs):
            problems.append(f"link {link_id} enters node {target_id} at missing input {target_slot}")
        else:
            socket = inputs[target_slot]
            if socket.get("link") != link_id:
                problems.append(f"link {link_id} is not the link of node {target_id} input {target_slot}")
            if socket.get("type") not in (link_type, "*") and link_type != "*":
                problems.append(f"link {link_id} is {link_type} but node {target_id} input {socket.get('name')} is {socket.get('type')}")

    for node in nodes:
        for slot, socket in enumerate(node.get("inputs") or []):
            link_id = socket.get("link")
            if link_id is not None and (link_id not in links or links[link_id][2:4] != (node["id"], slot)):
                problems.append(f"node {node['id']} input {socket.get('name')} names link {link_id}, which does not end there")
        for slot, output in enumerate(node.get("outputs") or []):
            for link_id in output.get("links") or []:
                if link_id not in links or links[link_id][0:2] != (node["id"], slot):
                    problems.append(f"node {node['id']} output {slot} lists link {link_id}, which does not start there")
    for group in workflow.get("groups") or []:
        bounding = group.get("bounding")
        if not (isinstance(bounding, list) and len(bounding) == 4 and bounding[2] > 0 and bounding[3] > 0):
            problems.append(f"group {group.get('title')!r} has a bad bounding box {bounding!r}")
    return problems


def node_type_problems(workflow: dict, pack_ids: set[str]) -> list[str]:
    """Node types outside ComfyUI's core allowlist and this pack, and missing/wrong cnr_id."""
    problems = []
    for node in workflow["nodes"]:
        kind, properties = node["type"], node.get("properties") or {}
        if kind in FRONTEND_ONLY_TYPES:
            continue
        if kind in pack_ids:
            expected = PACK_CNR_ID
        elif kind in CORE_NODE_TYPES:
            expected = CORE_CNR_ID
        else:
            problems.append(f"node {node['id']} has type {kind!r}: neither an AnimeKit node nor an allowed core node")
            continue
        if properties.get("cnr_id") != expected:
            problems.append(f"node {node['id']} ({kind}) has cnr_id {properties.get('cnr_id')!r}, expected {expected!r}")
        if properties.get("Node name for S&R") != kind:
            problems.append(f"node {node['id']} ({kind}) has 'Node name for S&R' {properties.get('Node name for S&R')!r}")
    return problems


# Widget inputs whose value is a file in one of ComfyUI's model folders.
MODEL_FILE_WIDGETS = {"ckpt_name": "checkpoints", "lora_name": "loras", "vae_name": "vae"}


def model_files(workflow: dict, catalog) -> set[tuple[str, str]]:
    """(model folder, file name) for every model file the workflow's widgets name."""
    found = set()
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY_TYPES or node["type"] not in catalog:
            continue
        for name, value in widget_inputs(node, catalog[node["type"]]).items():
            if name in MODEL_FILE_WIDGETS and isinstance(value, str) and value:
                found.add((MODEL_FILE_WIDGETS[name], value))
    return found
