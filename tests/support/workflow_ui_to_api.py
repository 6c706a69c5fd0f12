"""Convert a UI-format workflow into the API prompt that the frontend would queue (`POST /prompt`).

The same rules as the frontend's graphToPrompt for the features bundled workflows may use:
positional `widgets_values` mapped to input names (skipping the control value after seed-like
inputs), links as `[source_id, output_index]` (a link replaces a widget's value), frontend-only
nodes dropped (notes, Reroute, PrimitiveNode: its value already sits in the target's widget),
muted nodes (mode 2) dropped and bypassed nodes (mode 4) passed through by matching type.
Subgraphs and group nodes are refused rather than converted wrongly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workflows.nodeinfo import widget_specs

FRONTEND_ONLY_TYPES = ("MarkdownNote", "Note", "Reroute", "PrimitiveNode")
MODE_ALWAYS, MODE_NEVER, MODE_BYPASS = 0, 2, 4


class WorkflowFormatError(ValueError):
    """The workflow cannot be converted (bad structure, or a feature this converter refuses)."""


def normalized_links(workflow: dict) -> dict[int, tuple[int, int, int, int, str]]:
    """link id -> (origin node, origin slot, target node, target slot, type) for version 0.4 and 1."""
    links = {}
    for raw in workflow.get("links") or []:
        if isinstance(raw, dict):  # version 1
            entry = (raw["origin_id"], raw["origin_slot"], raw["target_id"], raw["target_slot"], raw["type"])
            link_id = raw["id"]
        else:
            if len(raw) != 6:
                raise WorkflowFormatError(f"link {raw!r} is not [id, from, from_slot, to, to_slot, type]")
            link_id, *rest = raw
            entry = tuple(rest)
        if link_id in links:
            raise WorkflowFormatError(f"link id {link_id} is used twice")
        links[link_id] = entry
    return links


def widget_inputs(node: dict, info: dict) -> dict[str, Any]:
    """A node's widget values by input name; the count must match what the node declares."""
    specs = widget_specs(info)
    values = list(node.get("widgets_values") or [])
    expected = sum(2 if spec.has_control else 1 for spec in specs)
    if len(values) != expected:
        names = [spec.name + (" +control" if spec.has_control else "") for spec in specs]
        raise WorkflowFormatError(
            f"node {node['id']} ({node['type']}) has {len(values)} widget values, its widgets need {expected}: {names}"
        )
    out, index = {}, 0
    for spec in specs:
        out[spec.name] = values[index]
        index += 2 if spec.has_control else 1
    return out


def ui_to_api(workflow: dict, catalog: Mapping[str, dict]) -> dict[str, dict]:
    """The API-format prompt for `workflow`, node descriptions taken from `catalog` (/object_info)."""
    if workflow.get("definitions", {}).get("subgraphs"):
        raise WorkflowFormatError("subgraphs are not supported by this converter")
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links = normalized_links(workflow)

    def source_of(link_id: int, seen: frozenset = frozenset()) -> list | None:
        """[origin id, slot] of the real node feeding `link_id`, or None when nothing does."""
        if link_id in seen:
            raise WorkflowFormatError(f"link {link_id} loops through bypassed or reroute nodes")
        origin_id, origin_slot, _target, _slot, link_type = links[link_id]
        origin = nodes.get(origin_id)
        if origin is None:
            raise WorkflowFormatError(f"link {link_id} comes from missing node {origin_id}")
        kind, mode = origin["type"], origin.get("mode", MODE_ALWAYS)
        if kind == "PrimitiveNode":
            return None  # the target widget holds the value
        if kind == "Reroute" or mode == MODE_BYPASS:
            upstream = _pass_through_input(origin, origin_slot, link_type)
            return None if upstream is None else source_of(upstream, seen | {link_id})
        if mode == MODE_NEVER:
            return None
        if kind in FRONTEND_ONLY_TYPES:
            raise WorkflowFormatError(f"link {link_id} comes from frontend-only node {origin_id} ({kind})")
        return [str(origin_id), origin_slot]

    prompt: dict[str, dict] = {}
    for node in workflow["nodes"]:
        kind, mode = node["type"], node.get("mode", MODE_ALWAYS)
        if kind in FRONTEND_ONLY_TYPES or mode in (MODE_NEVER, MODE_BYPASS):
            continue
        if mode != MODE_ALWAYS:
            raise WorkflowFormatError(f"node {node['id']} ({kind}) has unsupported mode {mode}")
        if kind not in catalog:
            raise WorkflowFormatError(f"node {node['id']} has unknown type {kind!r}")
        inputs = widget_inputs(node, catalog[kind])
        for socket in node.get("inputs") or []:
            if socket.get("link") is None:
                continue
            source = source_of(socket["link"])
            if source is not None:
                inputs[socket["name"]] = source
        entry = {"class_type": kind, "inputs": inputs}
        if node.get("title"):
            entry["_meta"] = {"title": node["title"]}
        prompt[str(node["id"])] = entry
    return prompt


def _pass_through_input(node: dict, output_slot: int, link_type: str) -> int | None:
    """The input link a bypassed/reroute node forwards to `output_slot` (same slot first, then by type)."""
    sockets = node.get("inputs") or []
    if node["type"] == "Reroute":
        return sockets[0].get("link") if sockets else None
    candidates = ([sockets[output_slot]] if output_slot < len(sockets) else []) + sockets
    for socket in candidates:
        if socket.get("link") is not None and socket.get("type") in (link_type, "*"):
            return socket["link"]
    return None
