"""Browser check: ComfyUI's real frontend opens every bundled workflow cleanly (slow host tier).

A real `main.py --cpu` server (pack linked into a temporary custom_nodes) serves the frontend from
`comfyui-frontend-package`; headless Chromium opens each workflow the way the templates browser
does (fetched from /api/workflow_templates/<pack>/<name>.json, then app.loadGraphData) and the test
asserts: no dialog (missing nodes, missing models, validation), no error toast, no JS error, every
node type registered, the frontend re-serializes the same widget values, and the prompt it would
queue equals support.workflow_ui_to_api's conversion. Screenshots go to test-artifacts/workflows/
(the thumbnails are made from them by tools/workflows/thumbnails.py).

Needs: COMFYUI_PATH, ANIMEKIT_SLOW=1, Debian's `chromium` (apt-get install chromium).
"""

from __future__ import annotations

import importlib.util
import json
import time
import urllib.request
from pathlib import Path

import pytest

from support.host import find_comfyui
from support.workflow_browser import PACK_FOLDER_NAME, Browser, ComfyServer, find_chromium
from support.workflow_files import PACK_ROOT, load, model_files, workflow_paths
from support.workflow_ui_to_api import ui_to_api

pytestmark = [pytest.mark.host, pytest.mark.slow]

ARTIFACTS = PACK_ROOT / "test-artifacts" / "workflows"
SETTLE_SECONDS = 2.0  # dialogs and toasts appear asynchronously after loadGraphData resolves
FRONTEND_SETTINGS = {
    "Comfy.TutorialCompleted": True,  # else the first page load opens the templates dialog
    "Comfy.Minimap.Visible": False,
    "LiteGraph.Canvas.MinFontSizeForLOD": 0,  # full detail at any zoom, for readable screenshots
    "Comfy.Graph.CanvasInfo": False,
    "Comfy.Workflow.ShowMissingNodesWarning": True,
    "Comfy.Workflow.ShowMissingModelsWarning": True,
    "Comfy.Validation.Workflows": True,
}
APP_READY = "!!(window.app && app.vueAppReady && app.graph && window.LiteGraph && LiteGraph.registered_node_types['KSampler'])"
PAGE_STATE = """(() => {
  const shown = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  const graph = app.graph.serialize();
  return {
    dialogs: [...document.querySelectorAll('.p-dialog')].filter(shown).map((e) => e.innerText.trim().slice(0, 400)),
    toasts: [...document.querySelectorAll('.p-toast-message')].filter(shown).map((e) => e.innerText.trim().slice(0, 400)),
    unregistered: app.graph.nodes.filter((n) => !LiteGraph.registered_node_types[n.type] || n.has_errors).map((n) => n.type),
    nodes: graph.nodes.map((n) => ({id: n.id, type: n.type, widgets_values: n.widgets_values ?? []})),
    links: graph.links,
  };
})()"""

# [left, top, width, height] of every node (with its title bar) and group, in graph coordinates.
GRAPH_BOUNDS = """(() => {
  const boxes = app.graph.nodes.map((n) => [n.pos[0], n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT, n.size[0], n.size[1] + LiteGraph.NODE_TITLE_HEIGHT]);
  for (const g of app.graph.groups ?? []) boxes.push(Array.from(g._bounding ?? g.bounding));
  const left = Math.min(...boxes.map((b) => b[0])), top = Math.min(...boxes.map((b) => b[1]));
  const right = Math.max(...boxes.map((b) => b[0] + b[2])), bottom = Math.max(...boxes.map((b) => b[1] + b[3]));
  return [left, top, right - left, bottom - top];
})()"""
SHOT_WIDTH, SHOT_MARGIN = 1920, 24
# Focus mode leaves one button (leave focus mode) in the top-right corner: keep it out of the shot.
HIDE_CORNER_BUTTON = """(() => {
  const button = document.elementFromPoint(innerWidth - 18, 18)?.closest('button');
  if (button) button.style.visibility = 'hidden';
  return !!button;
})()"""

# Inputs a frontend extension adds to a node's queued prompt beyond its declared inputs (the server
# ignores them): PreviewAny's read-only "preview" text box.
FRONTEND_EXTRA_INPUTS = {"PreviewAny": {"preview"}}

WORKFLOW_NAMES = [path.stem for path in workflow_paths()]


class Frontend:
    def __init__(self, server: ComfyServer, browser: Browser, catalog: dict):
        self.server, self.browser, self.catalog = server, browser, catalog

    def open_page(self) -> None:
        self.browser.evaluate("window.__animekitStalePage = true")  # so the old page is never taken for the new
        self.browser.navigate(self.server.url + "/")
        self.browser.wait_for_js(f"!window.__animekitStalePage && {APP_READY}", 120, "the ComfyUI frontend to finish loading")

    def open_template(self, name: str) -> dict:
        """Fresh page, the workflow opened as the templates browser does; the page's state after."""
        self.browser.resize(SHOT_WIDTH, 1080)
        self.open_page()
        self.browser.console_errors.clear()
        url = f"/api/workflow_templates/{PACK_FOLDER_NAME}/{name}.json"
        self.browser.evaluate(
            f"fetch({json.dumps(url)}).then((r) => r.json()).then((w) => app.loadGraphData(w, true, true, {json.dumps(name)}))"
            ".then(() => true)",
            timeout=120,
        )
        time.sleep(SETTLE_SECONDS)
        state = self.browser.evaluate(PAGE_STATE)
        state["prompt"] = self.browser.evaluate("app.graphToPrompt().then((p) => p.output)")
        state["console_errors"] = list(self.browser.console_errors)
        return state

    def screenshot(self, name: str) -> Path:
        """The whole graph at up to 100% zoom, menus hidden (focus mode), cropped to the graph."""
        left, top, width, height = self.browser.evaluate(GRAPH_BOUNDS)
        scale = min(1.0, (SHOT_WIDTH - 2 * SHOT_MARGIN) / width)
        shot_height = int(height * scale) + 2 * SHOT_MARGIN
        self.browser.resize(SHOT_WIDTH, shot_height + 120)  # room below for the canvas toolbar
        self.browser.evaluate("app.extensionManager.command.execute('Workspace.ToggleFocusMode').then(() => true)")
        self.browser.evaluate(HIDE_CORNER_BUTTON)
        self.browser.evaluate(
            f"(() => {{ const ds = app.canvas.ds; ds.scale = {scale}; "
            f"ds.offset[0] = {SHOT_MARGIN} / {scale} - {left}; ds.offset[1] = {SHOT_MARGIN} / {scale} - {top}; "
            "app.canvas.setDirty(true, true); return true; })()"
        )
        time.sleep(1.0)  # DOM widgets (text boxes) follow the canvas on the next frames
        clip = {"x": 0, "y": 0, "width": SHOT_WIDTH, "height": shot_height, "scale": 1}
        return self.browser.screenshot(ARTIFACTS / f"{name}.png", clip=clip)


def _without_frontend_extras(entry: dict) -> dict:
    extras = FRONTEND_EXTRA_INPUTS.get(entry["class_type"], set())
    return {name: value for name, value in entry["inputs"].items() if name not in extras}


@pytest.fixture(scope="module")
def frontend(tmp_path_factory):
    root, reason = find_comfyui()
    if root is None:
        pytest.skip(reason)
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium: install Debian's `chromium` package for the browser check")
    if importlib.util.find_spec("comfyui_frontend_package") is None:
        pytest.skip("comfyui-frontend-package is not installed (ComfyUI's requirements.txt)")
    server = ComfyServer(root, PACK_ROOT, tmp_path_factory.mktemp("comfy-server"))
    server.start()
    browser = Browser(chromium)
    try:
        catalog = server.get_json("/object_info")
        for path in workflow_paths():  # the models the workflows name, as empty stand-ins
            for folder, filename in model_files(load(path), catalog):
                target = server.folder(folder) / filename
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
        catalog = server.get_json("/object_info")
        for setting, value in FRONTEND_SETTINGS.items():
            server.post_json(f"/settings/{setting}", value)
        browser.start()
        yield Frontend(server, browser, catalog)
    finally:
        browser.stop()
        server.stop()


def test_templates_route_lists_every_workflow_with_its_thumbnail(frontend):
    listed = frontend.server.get_json("/workflow_templates")
    assert sorted(listed.get(PACK_FOLDER_NAME, [])) == sorted(WORKFLOW_NAMES)
    for name in WORKFLOW_NAMES:
        url = f"{frontend.server.url}/api/workflow_templates/{PACK_FOLDER_NAME}/{name}.jpg"
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.status == 200
            assert answer.headers["Content-Type"] == "image/jpeg"
            assert answer.read(3) == b"\xff\xd8\xff"


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_workflow_opens_cleanly_in_the_frontend(frontend, name):
    workflow = load(PACK_ROOT / "workflows" / f"{name}.json")
    state = frontend.open_template(name)
    shot = frontend.screenshot(name)
    context = f"(screenshot: {shot})"

    assert state["dialogs"] == [], f"dialog(s) after loading {name} {context}"
    assert state["toasts"] == [], f"toast(s) after loading {name} {context}"
    assert state["unregistered"] == [], f"missing or broken node types {context}"
    assert state["console_errors"] == [], f"JS errors while loading {name} {context}"

    in_page = {node["id"]: node for node in state["nodes"]}
    assert sorted(in_page) == sorted(node["id"] for node in workflow["nodes"])
    for node in workflow["nodes"]:
        assert in_page[node["id"]]["widgets_values"] == node.get("widgets_values", []), (
            f"the frontend re-laid node {node['id']} ({node['type']})'s widget values"
        )
    assert sorted(map(tuple, state["links"])) == sorted(map(tuple, workflow["links"]))

    expected = ui_to_api(workflow, frontend.catalog)
    queued = {node_id: {"class_type": entry["class_type"], "inputs": _without_frontend_extras(entry)}
              for node_id, entry in state["prompt"].items()}
    assert queued == {node_id: {"class_type": entry["class_type"], "inputs": entry["inputs"]}
                      for node_id, entry in expected.items()}
