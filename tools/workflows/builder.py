"""Write ComfyUI UI-format workflows (version 0.4) from a compact description.

Widget values are given BY INPUT NAME and placed where the frontend expects them, using the live
node descriptions (`/object_info` entries from workflows.nodeinfo), so a bundled workflow
cannot drift from the nodes it was generated against. Positions come from a simple grid: nodes go
into columns left to right, stacked top to bottom inside horizontal bands.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from workflows.nodeinfo import socket_specs, widget_specs

PACK_CNR_ID = "comfyui-animekit"  # pyproject [project] name: what ComfyUI-Manager looks up
CORE_CNR_ID = "comfy-core"  # what ComfyUI's own frontend writes for built-in nodes
NOTE_TYPES = ("MarkdownNote", "Note")
PRIMITIVE_TYPE = "PrimitiveNode"  # the frontend's widget-value node: no server class

COLUMN_GAP = 70
ROW_GAP = 70  # room for the next node's title bar (drawn above `pos`)
BAND_GAP = 110  # room for a group's title between bands
TITLE_HEIGHT = 30
SOCKET_ROW = 22
WIDGET_ROW = 26
MULTILINE_HEIGHT = 120
NOTE_COLOR = ("#432", "#653")  # the brown the frontend gives notes


@dataclass
class Node:
    id: int
    type: str
    values: dict[str, Any]
    controls: dict[str, str]
    column: int
    band: int
    title: str | None = None
    width: int = 320
    height: int | None = None
    colors: tuple[str, str] | None = None
    pos: tuple[int, int] = (0, 0)


@dataclass
class Link:
    id: int
    source: Node
    output: int
    target: Node
    input_name: str


@dataclass
class Group:
    title: str
    members: list[Node]
    color: str


@dataclass
class WorkflowBuilder:
    """Collects nodes, links, notes and groups; `build()` returns the workflow dict."""

    catalog: Mapping[str, dict]
    name: str
    nodes: list[Node] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    band: int = 0

    def add(
        self,
        node_type: str,
        values: Mapping[str, Any] | None = None,
        *,
        column: int,
        title: str | None = None,
        controls: Mapping[str, str] | None = None,
        width: int = 320,
        colors: tuple[str, str] | None = None,
        band: int | None = None,
    ) -> Node:
        """Add a node; `values` are widget values by input name, the rest keep their defaults.

        It goes to the bottom of `column` in the current band (or in `band`, an earlier one).
        """
        if node_type not in self.catalog:
            raise KeyError(f"{self.name}: node type {node_type!r} is not known to this ComfyUI")
        names = {spec.name for spec in widget_specs(self.catalog[node_type])}
        unknown = set(values or {}) - names
        if unknown:
            raise KeyError(f"{self.name}: {node_type} has no widget input(s) {sorted(unknown)}; widgets: {sorted(names)}")
        node = Node(len(self.nodes) + 1, node_type, dict(values or {}), dict(controls or {}), column,
                    self.band if band is None else band, title, width, colors=colors)
        self.nodes.append(node)
        return node

    def note(self, markdown: str, *, column: int, width: int = 420, title: str | None = None) -> Node:
        """A MarkdownNote (frontend-only: never sent to the server)."""
        node = Node(len(self.nodes) + 1, "MarkdownNote", {"text": markdown.strip()}, {}, column, self.band,
                    title, width, _note_height(markdown, width), NOTE_COLOR)
        self.nodes.append(node)
        return node

    def primitive(self, targets: list[tuple[Node, str]], *, column: int, title: str, width: int = 300,
                  band: int | None = None) -> Node:
        """A frontend PrimitiveNode driving the same widget on several nodes (one value, set once).

        The targets' widgets must already hold the same value: the file stays consistent whether
        a reader takes the primitive's value (the frontend, at queue time) or the targets' (the API).
        """
        values = {self._widget_value(node, name) for node, name in targets}
        kinds = {self._input_type(node, name) for node, name in targets}
        if len(values) != 1 or len(kinds) != 1:
            raise ValueError(f"{self.name}: primitive {title!r} targets differ: values {values}, types {kinds}")
        node = Node(len(self.nodes) + 1, PRIMITIVE_TYPE, {"value": values.pop(), "kind": kinds.pop(),
                    "widget": targets[0][1]}, {}, column, self.band if band is None else band, title, width)
        self.nodes.append(node)
        for target, input_name in targets:
            if any(link.target is target and link.input_name == input_name for link in self.links):
                raise ValueError(f"{self.name}: {target.type}.{input_name} is linked twice")
            self.links.append(Link(len(self.links) + 1, node, 0, target, input_name))
        return node

    def link(self, source: Node, output: str | int, target: Node, input_name: str) -> Link:
        """Connect `source`'s output (by index, name or type) to `target`'s input (by name)."""
        slot = self._output_slot(source, output)
        out_type = self.catalog[source.type]["output"][slot]
        in_type = self._input_type(target, input_name)
        if not _types_match(out_type, in_type):
            raise TypeError(f"{self.name}: {source.type}.{output} is {out_type}, {target.type}.{input_name} wants {in_type}")
        if any(link.target is target and link.input_name == input_name for link in self.links):
            raise ValueError(f"{self.name}: {target.type}.{input_name} is linked twice")
        link = Link(len(self.links) + 1, source, slot, target, input_name)
        self.links.append(link)
        return link

    def group(self, title: str, members: list[Node], color: str = "#3f789e") -> Group:
        group = Group(title, list(members), color)
        self.groups.append(group)
        return group

    def next_band(self) -> None:
        """Start a new row of columns below everything placed so far."""
        self.band += 1

    # ---- building -------------------------------------------------------------------------

    def build(self) -> dict:
        self._layout()
        order = self._execution_order()
        nodes = [self._node_json(node, order[node.id]) for node in self.nodes]
        links = [
            [link.id, link.source.id, link.output, link.target.id, self._input_slot(link.target, link.input_name),
             self._link_type(link)]
            for link in self.links
        ]
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-animekit/workflows/{self.name}")),
            "revision": 0,
            "last_node_id": len(self.nodes),
            "last_link_id": len(self.links),
            "nodes": nodes,
            "links": links,
            "groups": [self._group_json(index, group) for index, group in enumerate(self.groups, start=1)],
            "config": {},
            "extra": {"ds": {"scale": 0.75, "offset": [60, 60]}},
            "version": 0.4,
        }

    def _node_json(self, node: Node, order: int) -> dict:
        data: dict[str, Any] = {
            "id": node.id,
            "type": node.type,
            "pos": list(node.pos),
            "size": [node.width, self._height(node)],
            "flags": {},
            "order": order,
            "mode": 0,
            "inputs": [],
            "outputs": [],
            "properties": {},
            "widgets_values": [],
        }
        if node.title:
            data["title"] = node.title
        if node.colors:
            data["color"], data["bgcolor"] = node.colors
        if node.type in NOTE_TYPES:
            data["widgets_values"] = [node.values["text"]]
            return data
        if node.type == PRIMITIVE_TYPE:
            return self._primitive_json(node, data)
        data["widgets_values"] = self._widget_values(node)
        info = self.catalog[node.type]
        incoming = {link.input_name: link.id for link in self.links if link.target is node}
        for spec in socket_specs(info):
            socket = {"name": spec.name, "type": spec.type, "link": incoming.get(spec.name)}
            if spec.optional:
                socket["shape"] = 7  # the frontend's hollow circle for optional inputs
            data["inputs"].append(socket)
        for spec in widget_specs(info):
            data["inputs"].append({"name": spec.name, "type": spec.type, "widget": {"name": spec.name},
                                   "link": incoming.get(spec.name)})
        for slot, (out_type, out_name) in enumerate(zip(info["output"], info["output_name"])):
            targets = [link.id for link in self.links if link.source is node and link.output == slot]
            data["outputs"].append({"name": out_name, "type": out_type, "slot_index": slot, "links": targets})
        cnr_id = PACK_CNR_ID if node.type.startswith("AnimeKit") else CORE_CNR_ID
        # No "ver": the frontend adds it on save; recording one would tie the file to a release.
        data["properties"] = {"cnr_id": cnr_id, "Node name for S&R": node.type}
        return data

    def _primitive_json(self, node: Node, data: dict) -> dict:
        kind = node.values["kind"]
        data["outputs"] = [{"name": kind, "type": kind, "slot_index": 0, "widget": {"name": node.values["widget"]},
                            "links": [link.id for link in self.links if link.source is node]}]
        data["properties"] = {"Run widget replace on values": False}
        value = node.values["value"]
        # the frontend adds a control widget to number and combo primitives, and a filter box to combos
        data["widgets_values"] = {"INT": [value, "fixed"], "FLOAT": [value, "fixed"],
                                  "COMBO": [value, "fixed", ""]}.get(kind, [value])
        return data

    def _link_type(self, link: Link) -> str:
        if link.source.type == PRIMITIVE_TYPE:
            return link.source.values["kind"]
        return self.catalog[link.source.type]["output"][link.output]

    def _widget_value(self, node: Node, input_name: str):
        for spec in widget_specs(self.catalog[node.type]):
            if spec.name == input_name:
                if input_name not in node.values:
                    raise ValueError(f"{self.name}: give {node.type}.{input_name} a value before sharing it")
                return node.values[input_name]
        raise KeyError(f"{self.name}: {node.type} has no widget input {input_name!r}")

    def _widget_values(self, node: Node) -> list:
        values = []
        for spec in widget_specs(self.catalog[node.type]):
            if spec.name in node.values:
                value = node.values[spec.name]
            elif "default" in spec.options:
                value = spec.options["default"]
            elif spec.choices:
                value = spec.choices[0]
            else:
                value = {"INT": 0, "FLOAT": 0.0, "BOOLEAN": False}.get(spec.type, "")
            values.append(value)
            if spec.has_control:
                values.append(node.controls.get(spec.name, "fixed"))
        return values

    def _output_slot(self, node: Node, output: str | int) -> int:
        info = self.catalog[node.type]
        if isinstance(output, int):
            if not 0 <= output < len(info["output"]):
                raise IndexError(f"{self.name}: {node.type} has no output {output}")
            return output
        for names in (info["output_name"], info["output"]):
            if output in names:
                return list(names).index(output)
        raise KeyError(f"{self.name}: {node.type} has no output {output!r}; outputs: {info['output_name']}")

    def _inputs_in_order(self, node: Node) -> list:
        info = self.catalog[node.type]
        return socket_specs(info) + widget_specs(info)

    def _input_slot(self, node: Node, input_name: str) -> int:
        names = [spec.name for spec in self._inputs_in_order(node)]
        return names.index(input_name)

    def _input_type(self, node: Node, input_name: str) -> str:
        for spec in self._inputs_in_order(node):
            if spec.name == input_name:
                return spec.type
        raise KeyError(f"{self.name}: {node.type} has no input {input_name!r}")

    def _height(self, node: Node) -> int:
        if node.height is not None:
            return node.height
        if node.type == PRIMITIVE_TYPE:
            return 34 + WIDGET_ROW * {"INT": 2, "FLOAT": 2, "COMBO": 3}.get(node.values["kind"], 1)
        info = self.catalog[node.type]
        sockets = max(len(socket_specs(info)), len(info["output"]))
        height = TITLE_HEIGHT // 2 + sockets * SOCKET_ROW
        for spec in widget_specs(info):
            multiline = spec.type == "STRING" and spec.options.get("multiline")
            height += MULTILINE_HEIGHT if multiline else WIDGET_ROW
            height += WIDGET_ROW if spec.has_control else 0
        if node.type in ("SaveImage", "PreviewImage"):
            height += 200  # room for the image preview
        return max(height + 10, 60)

    def _layout(self) -> None:
        """Columns left to right (each as wide as its widest node), nodes stacked within bands."""
        columns = sorted({node.column for node in self.nodes})
        widths = {col: max(n.width for n in self.nodes if n.column == col) for col in columns}
        x_of, x = {}, 0
        for col in columns:
            x_of[col] = x
            x += widths[col] + COLUMN_GAP
        y = TITLE_HEIGHT + 50
        for band in sorted({node.band for node in self.nodes}):
            bottom = y
            for col in columns:
                cursor = y
                for node in (n for n in self.nodes if n.band == band and n.column == col):
                    node.pos = (x_of[col], cursor)
                    cursor += self._height(node) + ROW_GAP
                    bottom = max(bottom, cursor)
            y = bottom + BAND_GAP

    def _group_json(self, index: int, group: Group) -> dict:
        left = min(n.pos[0] for n in group.members) - 15
        top = min(n.pos[1] for n in group.members) - TITLE_HEIGHT - 50
        right = max(n.pos[0] + n.width for n in group.members) + 15
        bottom = max(n.pos[1] + self._height(n) for n in group.members) + 15
        return {"id": index, "title": group.title, "bounding": [left, top, right - left, bottom - top],
                "color": group.color, "font_size": 24, "flags": {}}

    def _execution_order(self) -> dict[int, int]:
        """Topological order (notes first), like the frontend's `order` field."""
        pending = {node.id: {l.source.id for l in self.links if l.target is node} for node in self.nodes}
        order, done = {}, set()
        while pending:
            ready = sorted(node_id for node_id, deps in pending.items() if deps <= done)
            if not ready:
                raise ValueError(f"{self.name}: the graph has a cycle")
            for node_id in ready:
                order[node_id] = len(order)
                done.add(node_id)
                del pending[node_id]
        return order


def _types_match(out_type: str, in_type: str) -> bool:
    if "*" in (out_type, in_type):
        return True
    return bool(set(out_type.split(",")) & set(in_type.split(",")))


def _note_height(markdown: str, width: int) -> int:
    """Roughly the rendered height of the note's markdown at the frontend's note font (13 px text)."""
    text_width = width - 30
    height = 36
    for paragraph in markdown.strip().split("\n\n"):
        for line in paragraph.replace("\n- ", "\n\n- ").split("\n\n"):  # list items start new lines
            visible = " ".join(line.replace("*", "").replace("`", "").split())
            if visible.startswith("# "):
                height += 30 * math.ceil(len(visible) * 12 / text_width)
            else:
                height += 16 * max(1, math.ceil(len(visible) * 5.6 / text_width))
        height += 10
    return height
