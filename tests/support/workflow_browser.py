"""A real ComfyUI server and its real frontend in headless Chromium, for the workflow browser check.

`ComfyServer` runs `main.py --cpu` from a ComfyUI checkout with every writable folder (models,
custom_nodes, input, output, temp, user, database) inside a temporary base directory; the pack is
symlinked into that base's custom_nodes, so the checkout itself is never written to.
`Browser` starts Debian's `chromium` headless and drives one page over the Chrome DevTools
Protocol with a small aiohttp websocket client (no extra packages).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

# aiohttp comes with ComfyUI's requirements; imported where used so the pure tier collects without it.

PACK_FOLDER_NAME = "comfyui-animekit"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _wait_for(predicate, timeout: float, what: str, poll: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


class ComfyServer:
    """`main.py --cpu` on a free port, pack linked in, everything writable under `base`."""

    def __init__(self, comfyui_root: Path, pack_root: Path, base: Path):
        self.root, self.pack_root, self.base = comfyui_root, pack_root, base
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "server.log"
        self.process: subprocess.Popen | None = None

    @property
    def checkpoints_dir(self) -> Path:
        return self.base / "models" / "checkpoints"

    def folder(self, name: str) -> Path:
        return self.base / "models" / name

    def prepare(self) -> None:
        (self.base / "custom_nodes").mkdir(parents=True, exist_ok=True)
        link = self.base / "custom_nodes" / PACK_FOLDER_NAME
        if not link.exists():
            link.symlink_to(self.pack_root, target_is_directory=True)
        for name in ("input", "output", "temp", "user", "models/checkpoints", "models/loras"):
            (self.base / name).mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 180) -> None:
        self.prepare()
        env = dict(os.environ)
        stub = self._stub_path()
        if stub:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(stub)]))
        command = [
            sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
            "--base-directory", str(self.base), "--database-url", "sqlite:///:memory:",
            "--disable-auto-launch",
        ]
        log = self.log_path.open("w")
        self.process = subprocess.Popen(command, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for(self._ready, timeout, f"ComfyUI to answer on {self.url} (log: {self.log_path})", poll=0.5)
        except Exception:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with {self.process.returncode}; log:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(self.url + "/system_stats", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def _stub_path(self) -> Path | None:
        """Empty stand-ins for torchvision and spandrel when the venv lacks them.

        ComfyUI imports torchvision at module level but uses it lazily. spandrel is only needed
        for upscale models, but frontend 1.27 assumes the UpscaleModelLoader node exists: without
        it, building any `ckpt_name` / `lora_name` combo widget throws in the page.
        """
        stub = self.base / "stubs"
        stubs = {
            "torchvision": "",
            "torchvision.transforms": "",
            "spandrel": (
                "class ModelLoader:\n"
                "    def __init__(self, *args, **kwargs):\n"
                "        raise RuntimeError('spandrel is a test stub here: upscale models cannot load')\n"
                "class ImageModelDescriptor:\n"
                "    pass\n"
            ),
        }
        written = False
        for module, text in stubs.items():
            top = module.split(".")[0]
            probe = f"import importlib.util,sys; sys.exit(importlib.util.find_spec({top!r}) is not None)"
            if subprocess.run([sys.executable, "-c", probe]).returncode == 0:
                package = stub.joinpath(*module.split("."))
                package.mkdir(parents=True, exist_ok=True)
                (package / "__init__.py").write_text(text)
                written = True
        return stub if written else None

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as answer:
            return json.load(answer)

    def post_json(self, path: str, payload: Any) -> Any:
        request = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Browser:
    """Headless Chromium with one page, driven over CDP. Collects console errors and exceptions."""

    def __init__(self, executable: str, width: int = 1600, height: int = 1000):
        self.executable, self.width, self.height = executable, width, height
        self.profile = Path(tempfile.mkdtemp(prefix="animekit-chromium-"))
        self.loop = asyncio.new_event_loop()
        self.process: subprocess.Popen | None = None
        self.session = None  # aiohttp.ClientSession once started
        self.socket = None
        self.ids = itertools.count(1)
        self.console_errors: list[str] = []
        self._reader: asyncio.Task | None = None
        self._pending: dict[int, asyncio.Future] = {}

    def start(self, timeout: float = 60) -> None:
        command = [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
                   "--remote-debugging-port=0", f"--window-size={self.width},{self.height}", "about:blank"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = self.profile / "DevToolsActivePort"
        _wait_for(lambda: port_file.exists() and port_file.read_text().strip(), timeout, "Chromium's DevTools port")
        port = int(port_file.read_text().splitlines()[0])
        targets = _wait_for(lambda: self._page_targets(port), timeout, "a Chromium page target")
        self.loop.run_until_complete(self._connect(targets[0]["webSocketDebuggerUrl"]))
        for domain in ("Page.enable", "Runtime.enable"):
            self.call(domain)
        self.resize(self.width, self.height)

    def resize(self, width: int, height: int) -> None:
        """Set the page's viewport (CSS pixels, device scale 1)."""
        self.width, self.height = width, height
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    @staticmethod
    def _page_targets(port: int) -> list[dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as answer:
                return [t for t in json.load(answer) if t.get("type") == "page"]
        except OSError:
            return []

    async def _connect(self, ws_url: str) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession()
        self.socket = await self.session.ws_connect(ws_url, max_msg_size=0)
        self._reader = self.loop.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.socket:
            data = json.loads(message.data)
            if "id" in data and data["id"] in self._pending:
                self._pending.pop(data["id"]).set_result(data)
            elif data.get("method") == "Runtime.exceptionThrown":
                details = data["params"]["exceptionDetails"]
                self.console_errors.append(details.get("exception", {}).get("description") or details.get("text", ""))
            elif data.get("method") == "Runtime.consoleAPICalled" and data["params"]["type"] == "error":
                args = data["params"].get("args", [])
                self.console_errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))

    async def _call(self, method: str, timeout: float, params: dict) -> dict:
        message_id = next(self.ids)
        future = self.loop.create_future()
        self._pending[message_id] = future
        await self.socket.send_str(json.dumps({"id": message_id, "method": method, "params": params}))
        answer = await asyncio.wait_for(future, timeout)
        if "error" in answer:
            raise RuntimeError(f"CDP {method} failed: {answer['error']}")
        return answer.get("result", {})

    def call(self, method: str, timeout: float = 60, **params) -> dict:
        return self.loop.run_until_complete(self._call(method, timeout, params))

    def evaluate(self, expression: str, timeout: float = 60) -> Any:
        """Evaluate JS in the page (promises awaited) and return its JSON value; JS errors raise."""
        result = self.call("Runtime.evaluate", timeout=timeout, expression=expression, awaitPromise=True,
                           returnByValue=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise RuntimeError(f"JS error: {details.get('exception', {}).get('description') or details.get('text')}")
        return result["result"].get("value")

    def wait_for_js(self, expression: str, timeout: float, what: str) -> Any:
        return _wait_for(lambda: self.evaluate(expression), timeout, what, poll=0.5)

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def screenshot(self, path: Path, clip: dict | None = None) -> Path:
        """A PNG of the viewport, or of `clip` ({x, y, width, height, scale}) within it."""
        params = {"format": "png"} | ({"clip": clip} if clip else {})
        data = self.call("Page.captureScreenshot", **params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def stop(self) -> None:
        try:
            if self.socket is not None:
                self.loop.run_until_complete(self.socket.close())
            if self.session is not None:
                self.loop.run_until_complete(self.session.close())
            if self._reader is not None:
                self._reader.cancel()
                try:
                    self.loop.run_until_complete(self._reader)
                except (asyncio.CancelledError, Exception):
                    pass
        finally:
            if self.process and self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.loop.close()
            shutil.rmtree(self.profile, ignore_errors=True)
