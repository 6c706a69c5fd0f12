"""Checks of a workflow's nodes against node definitions (`/object_info` entries).

What ComfyUI's own `validate_prompt` does not cover for a saved UI workflow: the positional widget
values (count, order, the control value after seed-like inputs), numbers against min/max, combo
values against their options (0.3.x skips this for V3 combos), and the socket lists against the
node's declared inputs and outputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from support.workflow_ui_to_api import FRONTEND_ONLY_TYPES, WorkflowFormatError, normalized_links, widget_inputs
from workflows.nodeinfo import CONTROL_VALUES, InputSpec, socket_specs, widget_specs


def value_problem(spec: InputSpec, value) -> str | None:
    """Why `value` is not acceptable for the widget `spec`, or None."""
    options = spec.options
    if spec.type == "COMBO":
        return None if value in spec.choices else f"{value!r} is not one of its options {list(spec.choices)[:12]}"
    if spec.type == "BOOLEAN":
        return None if isinstance(value, bool) else f"{value!r} is not a boolean"
    if spec.type == "STRING":
        return None if isinstance(value, str) else f"{value!r} is not a string"
    if spec.type in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{value!r} is not a number"
        if spec.type == "INT" and not float(value).is_integer():
            return f"{value!r} is not an integer"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{value!r} is not finite"
        if "min" in options and value < options["min"]:
            return f"{value!r} is below its minimum {options['min']}"
        if "max" in options and value > options["max"]:
            return f"{value!r} is above its maximum {options['max']}"
        return None
    return None  # other widget kinds are not used by the bundled workflows


def widget_problems(node: dict, info: dict) -> list[str]:
    label = f"node {node['id']} ({node['type']})"
    specs = widget_specs(info)
    values = list(node.get("widgets_values") or [])
    expected = sum(2 if spec.has_control else 1 for spec in specs)
    if len(values) != expected:
        return [f"{label} has {len(values)} widget values; its widgets "
                f"{[s.name + ('+control' if s.has_control else '') for s in specs]} need {expected}"]
    problems, index = [], 0
    for spec in specs:
        problem = value_problem(spec, values[index])
        if problem:
            problems.append(f"{label} widget {spec.name}: {problem}")
        if spec.has_control and values[index + 1] not in CONTROL_VALUES:
            problems.append(f"{label} widget {spec.name}: control value {values[index + 1]!r} is not one of {CONTROL_VALUES}")
        index += 2 if spec.has_control else 1
    return problems


def socket_problems(node: dict, info: dict) -> list[str]:
    """Input sockets: the declared plain sockets, then one per widget (as frontend 1.16+ saves them);
    outputs: the declared names and types in order."""
    label = f"node {node['id']} ({node['type']})"
    declared_inputs = [(s.name, s.type) for s in socket_specs(info) + widget_specs(info)]
    found_inputs = [(s.get("name"), s.get("type")) for s in node.get("inputs") or []]
    problems = []
    if found_inputs != declared_inputs:
        problems.append(f"{label} inputs {found_inputs} do not match the declared {declared_inputs}")
    declared_outputs = [(name, kind) for name, kind in zip(info["output_name"], info["output"])]
    found_outputs = [(o.get("name"), o.get("type")) for o in node.get("outputs") or []]
    if found_outputs != declared_outputs:
        problems.append(f"{label} outputs {found_outputs} do not match the declared {declared_outputs}")
    return problems


def primitive_problems(workflow: dict, primitive: dict, catalog: Mapping[str, dict]) -> list[str]:
    """A PrimitiveNode's value must equal the widget value of every node it drives.

    The frontend writes the primitive's value into the targets when it queues; a converter that
    reads the targets (ours, or anyone's reading the saved file) must then see the same values.
    """
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links = normalized_links(workflow)
    value = (primitive.get("widgets_values") or [None])[0]
    problems = []
    for link_id in (primitive.get("outputs") or [{}])[0].get("links") or []:
        _origin, _slot, target_id, target_slot, _type = links[link_id]
        target = nodes[target_id]
        widget = (target["inputs"][target_slot].get("widget") or {}).get("name")
        if widget is None or target["type"] not in catalog:
            problems.append(f"primitive {primitive['id']} drives node {target_id} input {target_slot}, which is no widget")
            continue
        try:
            target_value = widget_inputs(target, catalog[target["type"]]).get(widget)
        except WorkflowFormatError:
            continue  # a wrong widget count is reported by widget_problems
        if target_value != value:
            problems.append(f"primitive {primitive['id']} holds {value!r} but node {target['id']} widget {widget} "
                            f"holds {target_value!r}")
    return problems


def node_problems(workflow: dict, catalog: Mapping[str, dict]) -> list[str]:
    """Every node against its live definition: exists, sockets, widget values; primitives agree."""
    problems = []
    for node in workflow["nodes"]:
        if node["type"] == "PrimitiveNode":
            problems += primitive_problems(workflow, node, catalog)
        if node["type"] in FRONTEND_ONLY_TYPES:
            continue
        if node["type"] not in catalog:
            problems.append(f"node {node['id']} has type {node['type']!r}, which this ComfyUI does not have")
            continue
        info = catalog[node["type"]]
        problems += socket_problems(node, info) + widget_problems(node, info)
    return problems
