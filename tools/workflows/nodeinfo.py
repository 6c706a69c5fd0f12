"""A node's widgets as ComfyUI's frontend lays them out, read from its `/object_info` description.

Workflow files store widget values positionally (`widgets_values`), so the builder, the API
conversion and the live checks must all agree with the frontend on which inputs are widgets, in
which order, and where the extra "control after generate" value goes. This module is that one rule.
The description dict is what `GET /object_info` serves; `object_info()` builds it in-process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Input types the frontend (comfyui-frontend-package 1.27) draws as widgets. Only the first five
# are used by AnimeKit's workflows; the others are listed so they are not taken for sockets.
PRIMITIVE_WIDGET_TYPES = ("INT", "FLOAT", "BOOLEAN", "STRING", "COMBO")
OTHER_WIDGET_TYPES = (
    "MARKDOWN", "IMAGEUPLOAD", "FILEUPLOAD", "COLOR", "IMAGECOMPARE", "TREESELECT",
    "MULTISELECT", "CHART", "GALLERIA", "SELECTBUTTON", "TEXTAREA",
)
# Legacy convention: an INT input with one of these names gets a control widget even without
# `control_after_generate` in its options.
SEED_INPUT_NAMES = ("seed", "noise_seed")
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")


@dataclass(frozen=True)
class InputSpec:
    """One declared input of a node, in the frontend's order (required, then optional)."""

    name: str
    type: str  # "COMBO" for both V1 list combos and V3 io.Combo
    options: dict[str, Any]
    choices: tuple[Any, ...] | None  # combo options
    optional: bool

    @property
    def is_widget(self) -> bool:
        widget_type = self.options.get("widgetType", self.type)
        known = widget_type in PRIMITIVE_WIDGET_TYPES or widget_type in OTHER_WIDGET_TYPES
        return known and not self.options.get("forceInput", False)

    @property
    def has_control(self) -> bool:
        """Whether the saved widget value is followed by a control value ("fixed", "randomize" ...)."""
        if not self.is_widget:
            return False
        declared = self.options.get("control_after_generate")
        if self.type == "INT":  # the frontend's rule: `control_after_generate ?? name in (seed, noise_seed)`
            return bool(declared) if declared is not None else self.name in SEED_INPUT_NAMES
        return self.type == "COMBO" and bool(declared)


def input_specs(info: dict) -> list[InputSpec]:
    """Every required and optional input of a node description, in the frontend's order."""
    declared = info.get("input", {})
    order = info.get("input_order") or {key: list(value) for key, value in declared.items()}
    specs = []
    for section in ("required", "optional"):
        for name in order.get(section, []):
            raw = declared.get(section, {}).get(name)
            if raw is None:
                continue
            specs.append(_parse_input(name, raw, optional=section == "optional"))
    return specs


def widget_specs(info: dict) -> list[InputSpec]:
    return [spec for spec in input_specs(info) if spec.is_widget]


def socket_specs(info: dict) -> list[InputSpec]:
    """Inputs that are only sockets (no widget), in order: these come first in a node's `inputs`."""
    return [spec for spec in input_specs(info) if not spec.is_widget]


def widget_value_count(info: dict) -> int:
    return sum(2 if spec.has_control else 1 for spec in widget_specs(info))


def _parse_input(name: str, raw: Any, optional: bool) -> InputSpec:
    kind = raw[0]
    options = dict(raw[1]) if len(raw) > 1 and isinstance(raw[1], dict) else {}
    if isinstance(kind, (list, tuple)):
        return InputSpec(name, "COMBO", options, tuple(kind), optional)
    if kind == "COMBO":
        return InputSpec(name, "COMBO", options, tuple(options.get("options", ())), optional)
    return InputSpec(name, str(kind), options, None, optional)


def object_info(node_class: type, node_id: str, display_name: str | None = None) -> dict:
    """The `/object_info` entry for one node class, as ComfyUI's server builds it.

    V3 nodes (comfy_api io.ComfyNode) describe themselves; V1 nodes are described from their
    INPUT_TYPES / RETURN_TYPES attributes the same way server.py does.
    """
    if hasattr(node_class, "GET_NODE_INFO_V1"):
        return node_class.GET_NODE_INFO_V1()
    declared = node_class.INPUT_TYPES()
    outputs = list(node_class.RETURN_TYPES)
    return {
        "input": declared,
        "input_order": {key: list(value) for key, value in declared.items()},
        "output": outputs,
        "output_is_list": list(getattr(node_class, "OUTPUT_IS_LIST", [False] * len(outputs))),
        "output_name": list(getattr(node_class, "RETURN_NAMES", outputs)),
        "name": node_id,
        "display_name": display_name or node_id,
        "category": getattr(node_class, "CATEGORY", "sd"),
        "output_node": bool(getattr(node_class, "OUTPUT_NODE", False)),
        "python_module": getattr(node_class, "RELATIVE_PYTHON_MODULE", "nodes"),
    }


class LiveCatalog(Mapping):
    """Node id -> `/object_info` entry for a booted ComfyUI host, built on first use of each id."""

    def __init__(self, host):
        self._nodes = host.nodes
        self._cache: dict[str, dict] = {}

    def __getitem__(self, node_id: str) -> dict:
        if node_id not in self._cache:
            node_class = self._nodes.NODE_CLASS_MAPPINGS[node_id]
            display = self._nodes.NODE_DISPLAY_NAME_MAPPINGS.get(node_id)
            self._cache[node_id] = object_info(node_class, node_id, display)
        return self._cache[node_id]

    def __iter__(self):
        return iter(self._nodes.NODE_CLASS_MAPPINGS)

    def __len__(self) -> int:
        return len(self._nodes.NODE_CLASS_MAPPINGS)
