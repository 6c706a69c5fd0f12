"""Regenerate workflows/*.json and workflows/README.md from tools/workflows/specs.py against a live ComfyUI.

    COMFYUI_PATH=/path/to/ComfyUI python tools/workflows/make.py          # write the files
    COMFYUI_PATH=/path/to/ComfyUI python tools/workflows/make.py --check  # exit 1 if any differ

Widget order, defaults, output slots and types come from the node definitions of the booted
ComfyUI and this pack, so regenerate whenever a node's inputs change. ComfyUI is booted the way
the host tier does it (tests/support/host.py). Thumbnails (same-name .jpg) come from the browser
check's screenshots: `python tools/workflows/thumbnails.py`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[2]
for folder in (PACK_ROOT / "tools", PACK_ROOT / "tests"):  # run as a script: `workflows` and `support` importable
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from support.host import boot, find_comfyui  # noqa: E402
from workflows import WORKFLOWS_DIR  # noqa: E402
from workflows.builder import WorkflowBuilder  # noqa: E402
from workflows.nodeinfo import LiveCatalog  # noqa: E402
from workflows.specs import WORKFLOWS, WorkflowSpec  # noqa: E402


def render(spec: WorkflowSpec, catalog) -> str:
    """The file text for one workflow (stable: same inputs give the same bytes)."""
    builder = WorkflowBuilder(catalog, spec.name)
    spec.build(builder)
    return dumps(builder.build()) + "\n"


def dumps(value, indent: str = "") -> str:
    """JSON indented by two spaces, with lists of plain values (positions, sizes, links) on one line."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(key)}: {dumps(item, inner)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and value:
        if all(not isinstance(item, (dict, list)) for item in value):
            return json.dumps(value, ensure_ascii=False)
        return "[\n" + ",\n".join(inner + dumps(item, inner) for item in value) + "\n" + indent + "]"
    return json.dumps(value, ensure_ascii=False)


README_INTRO = """# AnimeKit workflows

Ready-made graphs for the AnimeKit nodes, set up the way the seed model cards recommend. In ComfyUI
they are listed under **Workflow -> Browse Templates -> comfyui-animekit**; you can also drag a
`.json` file onto the canvas. Each one carries a note that explains its knobs.

Model files named in the loaders are placeholders: pick your own in each loader's list.
"""


def render_readme() -> str:
    """workflows/README.md: each workflow linked with its one-line summary and thumbnail."""
    parts = [README_INTRO]
    for spec in WORKFLOWS:
        parts.append(f"## [{spec.title}]({spec.name}.json)\n\n{spec.summary}\n\n"
                     f"[![{spec.title}]({spec.name}.jpg)]({spec.name}.json)\n")
    parts.append(MAINTAINERS)
    return "\n".join(parts)


MAINTAINERS = """## For maintainers

The `.json` files are generated; do not edit them by hand. Change `tools/workflows/specs.py` (sampler
settings come from the prompt profiles, `prompting/profiles/*.profile.json`), then:

```bash
COMFYUI_PATH=/path/to/ComfyUI python tools/workflows/make.py                 # rewrite workflows/*.json and this README
ANIMEKIT_SLOW=1 COMFYUI_PATH=/path/to/ComfyUI python -m pytest tests/test_workflows_browser.py
python tools/workflows/thumbnails.py                                        # screenshots -> workflows/*.jpg
```

`tests/test_workflows_*.py` keep them working: file structure (pure tier), the live node definitions and
ComfyUI's validation (host tier), an end-to-end CPU run and the real frontend in headless Chromium (slow tier).
Nodes carry `properties.cnr_id`: `comfyui-animekit` on AnimeKit nodes, `comfy-core` on ComfyUI's own.
"""


def rendered_workflows(host) -> dict[str, str]:
    """File name -> text for every generated file in workflows/ (the JSON files and README.md)."""
    catalog = LiveCatalog(host)
    files = {f"{spec.name}.json": render(spec, catalog) for spec in WORKFLOWS}
    files["README.md"] = render_readme()
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare with the committed files")
    args = parser.parse_args(argv)
    root, reason = find_comfyui()
    if root is None:
        print(f"make.py: {reason}", file=sys.stderr)
        return 2
    files = rendered_workflows(boot(root))
    stale = []
    for name, text in files.items():
        path = WORKFLOWS_DIR / name
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(name)
        if not args.check:
            WORKFLOWS_DIR.mkdir(exist_ok=True)
            path.write_text(text, encoding="utf-8")
    verb = "differ from the specs" if args.check else "written"
    print(f"{len(stale)} of {len(files)} file(s) {verb}: {', '.join(stale) or '-'}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
