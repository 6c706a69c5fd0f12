"""Make workflows/<name>.jpg from the browser check's screenshots (test-artifacts/workflows/<name>.png).

    ANIMEKIT_SLOW=1 COMFYUI_PATH=/path/to/ComfyUI python -m pytest tests/test_workflows_browser.py
    python tools/workflows/thumbnails.py

The templates browser shows the same-name .jpg beside each workflow; 512 px wide keeps it sharp
at the browser's card size and small in the repository (< 100 KB, checked by the pure tier).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from PIL import Image

PACK_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = PACK_ROOT / "test-artifacts" / "workflows"
WORKFLOWS = PACK_ROOT / "workflows"
WIDTH = 512
MAX_BYTES = 95_000
MAX_HEIGHT = 512  # a very tall graph is cropped from the top rather than squashed


def thumbnail_bytes(screenshot: Path) -> bytes:
    with Image.open(screenshot) as image:
        image = image.convert("RGB")
        height = round(image.height * WIDTH / image.width)
        image = image.resize((WIDTH, height), Image.LANCZOS)
        if height > MAX_HEIGHT:
            image = image.crop((0, 0, WIDTH, MAX_HEIGHT))
    for quality in (90, 85, 80, 75, 70, 60, 50):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality, optimize=True, progressive=True)
        if buffer.tell() <= MAX_BYTES:
            return buffer.getvalue()
    raise ValueError(f"{screenshot.name}: no JPEG quality brings it under {MAX_BYTES} bytes")


def main() -> int:
    workflows = sorted(WORKFLOWS.glob("*.json"))
    missing = [w.stem for w in workflows if not (SCREENSHOTS / f"{w.stem}.png").is_file()]
    if missing:
        print(f"thumbnails: no screenshot for {', '.join(missing)}; run the browser check first", file=sys.stderr)
        return 2
    for workflow in workflows:
        data = thumbnail_bytes(SCREENSHOTS / f"{workflow.stem}.png")
        workflow.with_suffix(".jpg").write_bytes(data)
        print(f"{workflow.stem}.jpg: {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
