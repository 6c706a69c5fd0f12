"""`GET /animekit/autocomplete` on ComfyUI's server: prefix queries for the editor's tag autocomplete
(web/js/autocomplete.js), answered from the pure core's index.

    /animekit/autocomplete?q=gany&profile=animagine-xl-3.0&limit=20&underscores=0
    -> {"query": "gany", "profile": "animagine-xl-3.0", "suggestions": [{"tag": ..., "insert": ...}]}

The index is built on the first query (seconds, in a background thread; until it is ready the
route answers `building: true` and no suggestions, and the editor asks again)
from tipo-kgen's lists, the families' tags and, when present, the user's tagcomplete CSV at
`<ComfyUI>/models/tags/danbooru.csv` (general tags, counts, aliases). Nothing is downloaded.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Mapping

from ..prompting.autocomplete import CompletionSettings, ready_index, suggest
from ..prompting.autocomplete.suggestions import MAX_LIMIT, NO_PROFILE

ROUTE = "/animekit/autocomplete"
USER_CSV = Path("tags") / "danbooru.csv"  # under ComfyUI's models folder, as a1111 tagcomplete names it
_registered_on: set[int] = set()


def user_tags_csv() -> Path | None:
    """The user's tagcomplete CSV in ComfyUI's models folder, when there is one."""
    try:
        import folder_paths
    except ImportError:
        return None
    path = Path(folder_paths.models_dir) / USER_CSV
    return path if path.is_file() else None


def parse_query(query: Mapping[str, str]) -> tuple[str, CompletionSettings]:
    """The request's parameters, checked; ValueError names the parameter and what it takes."""
    text = query.get("q", "")
    limit_text = query.get("limit", "20").strip()
    if not limit_text.isdigit():
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {limit_text!r}")
    underscores = query.get("underscores", "0").strip().lower()
    if underscores not in ("0", "1", "true", "false"):
        raise ValueError(f"underscores must be 0 or 1, got {underscores!r}")
    profile = query.get("profile", "").strip() or NO_PROFILE
    settings = CompletionSettings(limit=int(limit_text), profile=profile, underscores=underscores in ("1", "true"))
    return text, settings


def answer(text: str, settings: CompletionSettings) -> dict:
    """The suggestions, or none with `building: true` while the index is still being built (the
    editor asks again); a query takes well under a millisecond, so it runs on the server's loop."""
    index = ready_index(user_tags_csv())
    suggestions = [] if index is None else [s.to_json() for s in suggest(index, text, settings)]
    return {"query": text, "profile": settings.profile, "building": index is None, "suggestions": suggestions}


async def handle_autocomplete(request):
    from aiohttp import web

    try:
        text, settings = parse_query(request.query)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    try:
        return web.json_response(answer(text, settings))
    except ValueError as exc:  # the user's CSV is unreadable: say which line, as the CLI does
        return web.json_response({"error": f"tag index: {exc}"}, status=500)


def register_route() -> bool:
    """Add the route to ComfyUI's running PromptServer (before it starts serving, as packs do at load);
    False when there is none (tests that load the pack without a server, scripts)."""
    server = sys.modules.get("server")  # ComfyUI's server.py, imported by main.py before packs load
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None:
        return False
    if id(instance) not in _registered_on:  # a second load of the pack must not add it twice
        instance.routes.get(ROUTE)(handle_autocomplete)
        _registered_on.add(id(instance))
    return True
