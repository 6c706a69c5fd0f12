"""Browser check of the tag autocomplete in ComfyUI's real frontend (slow host tier).

A real `main.py --cpu` serves the frontend with the pack linked in; headless Chromium types into the
default graph's CLIPTextEncode with real key events (CDP Input.dispatchKeyEvent) and the test reads
the suggestion list and the text box back. Screenshots go to test-artifacts/autocomplete/.

Needs: COMFYUI_PATH, ANIMEKIT_SLOW=1, Debian's `chromium`, tipo-kgen (for `ganyu (genshin impact)`).
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

from support.host import find_comfyui
from support.workflow_browser import Browser, ComfyServer, find_chromium

pytestmark = [pytest.mark.host, pytest.mark.slow]

PACK_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = PACK_ROOT / "test-artifacts" / "autocomplete"
FRONTEND_SETTINGS = {
    "Comfy.TutorialCompleted": True,  # else the first page load opens the templates dialog
    "Comfy.Minimap.Visible": False,
    "LiteGraph.Canvas.MinFontSizeForLOD": 0,
}
APP_READY = "!!(window.app && app.vueAppReady && app.graph && window.animekitAutocomplete && LiteGraph.registered_node_types['CLIPTextEncode'])"
# The positive prompt's node, kept by reference: selecting a node moves it within app.graph.nodes.
PICK_NODE = "(() => { window.__animekitNode = app.graph.nodes.filter((n) => n.type === 'CLIPTextEncode').sort((a, b) => a.id - b.id)[0]; return true; })()"
TEXTAREA = "window.__animekitNode.widgets.find((w) => w.name === 'text').inputEl"
POPUP_ROWS = """(() => {
  const popup = document.querySelector('.animekit-autocomplete');
  if (!popup || popup.hidden) return null;
  return [...popup.querySelectorAll('.animekit-ac-row')].map((row) => ({
    name: row.querySelector('.animekit-ac-name').textContent,
    series: row.querySelector('.animekit-ac-series')?.textContent ?? null,
    classes: row.className,
    selected: row.classList.contains('animekit-ac-selected'),
  }));
})()"""
KEYS = {  # key -> (code, windowsVirtualKeyCode)
    "Tab": ("Tab", 9), "Enter": ("Enter", 13), "Escape": ("Escape", 27), "ArrowDown": ("ArrowDown", 40),
}


class Editor:
    def __init__(self, browser: Browser):
        self.browser = browser
        self.textarea = TEXTAREA  # JS for the text box being typed in

    def clear_text(self) -> None:
        self.browser.evaluate(f"(() => {{ const t = {self.textarea}; t.value = ''; t.focus(); return true; }})()")
        self.browser.evaluate("(() => { window.animekitAutocomplete.close(); return true; })()")

    def type(self, text: str) -> None:
        for char in text:
            self.browser.call("Input.dispatchKeyEvent", type="keyDown", text=char, key=char, unmodifiedText=char)
            self.browser.call("Input.dispatchKeyEvent", type="keyUp", key=char)

    def press(self, key: str) -> None:
        code, number = KEYS[key]
        for kind in ("rawKeyDown", "keyUp"):
            self.browser.call("Input.dispatchKeyEvent", type=kind, key=key, code=code, windowsVirtualKeyCode=number)

    def value(self) -> str:
        return self.browser.evaluate(f"{self.textarea}.value")

    def rows(self, timeout: float = 120) -> list[dict]:
        """The suggestion list once shown (the first query may wait for the index to be built)."""
        return self.browser.wait_for_js(POPUP_ROWS, timeout, "the autocomplete list")

    def popup_open(self) -> bool:
        return self.browser.evaluate(POPUP_ROWS) is not None

    def screenshot(self, name: str) -> Path:
        """The text box and the list below it."""
        box = self.browser.evaluate(
            f"(() => {{ const a = {self.textarea}.getBoundingClientRect();"
            " const p = document.querySelector('.animekit-autocomplete').getBoundingClientRect();"
            " return [Math.min(a.left, p.left), Math.min(a.top, p.top), Math.max(a.right, p.right), Math.max(a.bottom, p.bottom)]; })()"
        )
        left, top, right, bottom = (max(0, box[0] - 12), max(0, box[1] - 12), box[2] + 12, box[3] + 12)
        clip = {"x": left, "y": top, "width": right - left, "height": bottom - top, "scale": 1}
        return self.browser.screenshot(ARTIFACTS / f"{name}.png", clip=clip)


@pytest.fixture(scope="module")
def editor(tmp_path_factory):
    root, reason = find_comfyui()
    if root is None:
        pytest.skip(reason)
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium: install Debian's `chromium` package for the browser check")
    for module in ("comfyui_frontend_package", "kgen"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    server = ComfyServer(root, PACK_ROOT, tmp_path_factory.mktemp("comfy-server"))
    server.start()
    browser = Browser(chromium, width=1280, height=900)
    try:
        for setting, value in FRONTEND_SETTINGS.items():
            server.post_json(f"/settings/{setting}", value)
        browser.start()
        browser.navigate(server.url + "/")
        browser.wait_for_js(APP_READY, 120, "the ComfyUI frontend and the AnimeKit extension to load")
        browser.evaluate("app.loadGraphData().then(() => true)")  # the default graph: two CLIPTextEncode
        browser.evaluate(PICK_NODE)
        browser.evaluate(  # the positive prompt's node near the top left, at 100% zoom
            "(() => { const n = window.__animekitNode; const ds = app.canvas.ds;"
            " ds.scale = 1; ds.offset[0] = 40 - n.pos[0]; ds.offset[1] = 80 - n.pos[1]; app.canvas.setDirty(true, true); return true; })()"
        )
        time.sleep(1.0)  # DOM widgets follow the canvas on the next frames
        browser.console_errors.clear()
        yield Editor(browser)
        assert browser.console_errors == [], f"JS errors in the page: {browser.console_errors}"
    finally:
        browser.stop()
        server.stop()


def test_typing_gany_suggests_ganyu_and_tab_inserts_it_escaped(editor):
    editor.clear_text()
    editor.type("gany")
    rows = editor.rows()
    names = [row["name"] for row in rows]
    assert "ganyu (genshin impact)" in names[:3], names
    ganyu = rows[names.index("ganyu (genshin impact)")]
    assert ganyu["series"] == "genshin impact"
    assert "animekit-ac-cat-character" in ganyu["classes"].split()
    assert rows[0]["selected"]
    shot = editor.screenshot("gany")
    assert shot.stat().st_size > 1000

    while not editor.browser.evaluate(POPUP_ROWS)[names.index("ganyu (genshin impact)")]["selected"]:
        editor.press("ArrowDown")
    editor.press("Tab")
    assert editor.value() == "ganyu \\(genshin impact\\), "
    assert not editor.popup_open()


def test_escape_closes_the_list_and_keeps_the_text(editor):
    editor.clear_text()
    editor.type("gany")
    editor.rows()
    editor.press("Escape")
    assert not editor.popup_open()
    assert editor.value() == "gany"


def test_enter_and_mouse_insert_and_weights_stay(editor):
    editor.clear_text()
    editor.browser.evaluate(f"(() => {{ const t = {TEXTAREA}; t.value = 'smile, (:1.2)'; t.setSelectionRange(8, 8); t.focus(); return true; }})()")
    editor.type("gany")  # inside the weight group
    first = editor.rows()[0]["name"]
    assert first == "ganyu (genshin impact)"
    editor.press("Enter")
    assert editor.value() == "smile, (ganyu \\(genshin impact\\):1.2)"
    assert not editor.popup_open()

    editor.clear_text()
    editor.type("lumi")
    rows = editor.rows()
    target = next(i for i, row in enumerate(rows) if row["name"] == "lumine (genshin impact)")
    x, y = editor.browser.evaluate(
        f"(() => {{ const r = document.querySelectorAll('.animekit-ac-row')[{target}].getBoundingClientRect();"
        " return [r.left + 10, r.top + r.height / 2]; })()"
    )
    for kind in ("mousePressed", "mouseReleased"):
        editor.browser.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
    assert editor.value() == "lumine \\(genshin impact\\), "


def test_profile_setting_puts_its_tags_first_in_plain_text_boxes(editor):
    editor.browser.evaluate("app.extensionManager.setting.set('AnimeKit.Autocomplete.Profile', 'pony-v6').then(() => true)")
    try:
        editor.clear_text()
        editor.type("sc")
        rows = editor.rows()
        assert [row["name"] for row in rows[:3]] == ["score_9", "score_8_up", "score_7_up"]
        assert all("animekit-ac-family" in row["classes"].split() for row in rows[:3])
        editor.screenshot("pony-score")
        editor.press("Escape")
    finally:
        editor.browser.evaluate(f"app.extensionManager.setting.set('AnimeKit.Autocomplete.Profile', {json.dumps('none')}).then(() => true)")


def test_a_profile_chosen_on_an_animekit_node_is_used_for_its_text_box(editor):
    editor.browser.evaluate(
        "(() => { const n = LiteGraph.createNode('AnimeKitTagFormatter'); const p = window.__animekitNode.pos;"
        " n.pos = [p[0] + 460, p[1]]; app.graph.add(n); n.widgets.find((w) => w.name === 'profile').value = 'animagine-xl-4.0';"
        " window.__animekitFormatter = n; app.canvas.setDirty(true, true); return true; })()"
    )
    editor.textarea = "window.__animekitFormatter.widgets.find((w) => w.name === 'tags').inputEl"
    editor.browser.wait_for_js(f"{editor.textarea}.isConnected", 30, "the formatter's text box")
    time.sleep(0.5)
    try:
        editor.clear_text()
        editor.type("year 20")
        rows = editor.rows()
        assert [row["name"] for row in rows[:3]] == ["year 2025", "year 2024", "year 2023"]
        assert all("animekit-ac-family" in row["classes"].split() for row in rows[:3])
        editor.press("Escape")
        editor.clear_text()
        editor.type("very aes")  # Animagine 3.1's aesthetic tag: not 4.0's
        rows = editor.rows()
        marked = {row["name"]: "animekit-ac-unused" in row["classes"].split() for row in rows}
        assert marked["very aesthetic"] is True
        editor.screenshot("animagine-4-very-aesthetic")
        editor.press("Tab")
        assert editor.value().startswith(rows[0]["name"].replace("(", "\\(").replace(")", "\\)"))
    finally:
        editor.textarea = TEXTAREA


def set_setting(editor, setting_id: str, value) -> None:
    editor.browser.evaluate(f"app.extensionManager.setting.set({json.dumps(setting_id)}, {json.dumps(value)}).then(() => true)")


def test_settings_defaults_underscores_and_widget_choice(editor):
    defaults = editor.browser.evaluate(
        "['Enabled', 'Limit', 'Underscores', 'Widgets', 'Profile'].map((n) => app.extensionManager.setting.get('AnimeKit.Autocomplete.' + n))"
    )
    assert defaults == [True, 20, False, "All text boxes", "none"]
    try:
        set_setting(editor, "AnimeKit.Autocomplete.Underscores", True)
        set_setting(editor, "AnimeKit.Autocomplete.Limit", 5)
        editor.clear_text()
        editor.type("gany")
        assert len(editor.rows()) == 5
        editor.press("Tab")
        assert editor.value() == "ganyu_\\(genshin_impact\\), "

        set_setting(editor, "AnimeKit.Autocomplete.Widgets", "AnimeKit nodes only")
        editor.clear_text()
        editor.type("gany")
        time.sleep(1.5)  # well past the debounce and a query
        assert not editor.popup_open()
        set_setting(editor, "AnimeKit.Autocomplete.Widgets", "All text boxes")
        set_setting(editor, "AnimeKit.Autocomplete.Enabled", False)
        editor.clear_text()
        editor.type("gany")
        time.sleep(1.5)
        assert not editor.popup_open()
    finally:
        for name, value in (("Underscores", False), ("Limit", 20), ("Widgets", "All text boxes"), ("Enabled", True)):
            set_setting(editor, f"AnimeKit.Autocomplete.{name}", value)
