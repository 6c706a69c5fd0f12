"""The autocomplete route on ComfyUI's real PromptServer, and the extension's JS served by it (host tier).

A PromptServer is built in-process the way main.py does (server first, then the pack's entry point,
then add_routes), and queried over HTTP with aiohttp's test client.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.host

PACK_ROOT = Path(__file__).resolve().parents[1]
CSV = 'long_hair,0,900,"longhair"\nlong_sleeves,0,500,\nganyu_(genshin_impact),4,300,\n'


@pytest.fixture(scope="module")
def served(comfy_host, tmp_path_factory):
    """(client, loop) for a PromptServer with the pack's routes; the user CSV in a temporary models folder."""
    import folder_paths
    import server
    from aiohttp.test_utils import TestClient, TestServer

    models = tmp_path_factory.mktemp("models")
    (models / "tags").mkdir()
    (models / "tags" / "danbooru.csv").write_text(CSV, encoding="utf-8")
    old_models_dir = folder_paths.models_dir
    folder_paths.models_dir = str(models)
    had_instance = "instance" in vars(server.PromptServer)
    old_instance = vars(server.PromptServer).get("instance")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        prompt_server = server.PromptServer(loop)
        pack = sys.modules[comfy_host.pack_module]
        loop.run_until_complete(pack.comfy_entrypoint())  # as at load time, with the server up
        loop.run_until_complete(pack.comfy_entrypoint())  # a second load must not add the route twice
        prompt_server.add_routes()
        client = TestClient(TestServer(prompt_server.app), loop=loop)
        loop.run_until_complete(client.start_server())
        yield client, loop
        loop.run_until_complete(client.close())
    finally:
        folder_paths.models_dir = old_models_dir
        if had_instance:
            server.PromptServer.instance = old_instance
        elif "instance" in vars(server.PromptServer):
            del server.PromptServer.instance
        asyncio.set_event_loop(None)
        loop.close()


def get(served, url):
    client, loop = served

    async def fetch():
        response = await client.get(url)
        return response.status, response.headers.get("Content-Type", ""), await response.read()

    return loop.run_until_complete(fetch())


def get_json(served, url, timeout: float = 300):
    """The route's answer once its index is built (until then it answers `building: true`)."""
    import json

    deadline = time.monotonic() + timeout
    while True:
        status, kind, body = get(served, url)
        assert kind.startswith("application/json"), (status, kind, body[:200])
        data = json.loads(body)
        if not (isinstance(data, dict) and data.get("building")):
            return status, data
        assert data["suggestions"] == [] and time.monotonic() < deadline
        time.sleep(0.5)


def test_route_answers_prefix_queries_from_the_full_index(served):
    status, data = get_json(served, "/api/animekit/autocomplete?q=gany&profile=animagine-xl-3.0&limit=3&underscores=0")
    assert status == 200
    assert (data["query"], data["profile"], data["building"]) == ("gany", "animagine-xl-3.0", False)
    first = data["suggestions"][0]
    assert first == {"tag": "ganyu (genshin impact)", "insert": "ganyu \\(genshin impact\\)", "category": "character",
                     "count": 300, "alias": None, "series": "genshin impact", "family": False, "unused": False}
    assert len(data["suggestions"]) == 3
    # tipo-kgen's names beyond the user's CSV
    assert data["suggestions"][1]["tag"] == "ganyu (twilight blossom) (genshin impact)"


def test_route_reads_the_users_csv_and_the_profile(served):
    status, data = get_json(served, "/animekit/autocomplete?q=longh&limit=5&underscores=1")  # without /api too
    assert status == 200 and data["profile"] == "none"
    found = [(s["tag"], s["alias"], s["insert"], s["count"]) for s in data["suggestions"]]
    assert found[0] == ("long hair", "longhair", "long_hair", 900)  # the CSV's alias, count, underscores
    assert ("longhorn alistar", None, "longhorn_alistar", None) in found[1:]  # tipo-kgen, no count
    _, pony = get_json(served, "/api/animekit/autocomplete?q=score&profile=pony-v6&limit=2")
    assert [(s["insert"], s["family"]) for s in pony["suggestions"]] == [("score_9", True), ("score_8_up", True)]


@pytest.mark.parametrize("query, message", [
    ("q=a&limit=abc", "limit must be a whole number from 1 to 100, got 'abc'"),
    ("q=a&limit=0", "limit must be a whole number from 1 to 100, got 0"),
    ("q=a&underscores=maybe", "underscores must be 0 or 1, got 'maybe'"),
    ("q=a&profile=sdxl", "unknown profile 'sdxl'; valid profiles: animagine-xl-3.0"),
])
def test_route_refuses_bad_parameters_by_name(served, query, message):
    status, data = get_json(served, f"/api/animekit/autocomplete?{query}")
    assert status == 400
    assert data["error"].startswith(message)


def test_extension_files_are_served(served):
    import nodes

    names = [name for name, folder in nodes.EXTENSION_WEB_DIRS.items() if Path(folder) == PACK_ROOT / "web"]
    assert len(names) == 1, nodes.EXTENSION_WEB_DIRS
    status, listed = get_json(served, "/api/extensions")
    assert status == 200
    script = f"/extensions/{names[0]}/js/autocomplete.js"
    assert script in listed
    status, kind, body = get(served, script)
    assert status == 200 and kind.startswith("application/javascript")
    assert body == (PACK_ROOT / "web" / "js" / "autocomplete.js").read_bytes()
    status, kind, body = get(served, f"/extensions/{names[0]}/js/autocomplete.css")
    assert status == 200 and kind.startswith("text/css")
    assert body == (PACK_ROOT / "web" / "js" / "autocomplete.css").read_bytes()


def test_route_reports_an_unreadable_user_csv(served, tmp_path, monkeypatch):
    import folder_paths

    (tmp_path / "tags").mkdir()
    (tmp_path / "tags" / "danbooru.csv").write_text("long_hair,0,900\nganyu,character,10\n", encoding="utf-8")
    monkeypatch.setattr(folder_paths, "models_dir", str(tmp_path))
    status, data = get_json(served, "/api/animekit/autocomplete?q=long")
    assert status == 500
    assert data["error"].startswith(f"tag index: {tmp_path / 'tags' / 'danbooru.csv'}:2: tag type must be a number")
