"""Builds the bundled workflows (workflows/*.json, their README and thumbnails) from compact specs.

Build tooling, not part of the pack (kept out of the published archive by .comfyignore):

- specs.py: the workflows, described by input name; sampler settings come from the prompt profiles.
- builder.py: turns a spec into a UI-format workflow against the live node definitions.
- nodeinfo.py: which inputs are widgets, in the frontend's order (shared with the tests' checks).
- make.py: boots ComfyUI with the pack and (re)writes workflows/*.json and workflows/README.md.
- thumbnails.py: workflows/*.jpg from the browser check's screenshots.

The tests import these modules (pytest's pythonpath holds tools/); the scripts run as
`python tools/workflows/make.py` and `python tools/workflows/thumbnails.py`.
"""

from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS_DIR = PACK_ROOT / "workflows"
