"""ComfyUI V3 nodes: thin adapters from MODEL/CLIP/VAE/IMAGE to AnimeKit's pure core.

Imported only by ComfyUI (through `comfy_entrypoint`). Node ids and input names are a public API:
bundled and shared workflows bind to them, so never rename, reorder or remove an input.
"""

from __future__ import annotations

import importlib

from comfy_api.latest import ComfyExtension, io

# One module per capability; each exposes NODES, a list of io.ComfyNode classes.
NODE_MODULES = (
    "prompt_nodes",
    "resolution_nodes",
    "merge_nodes",
    "train_nodes",
)


def all_nodes() -> list[type[io.ComfyNode]]:
    found: list[type[io.ComfyNode]] = []
    for name in NODE_MODULES:
        module = importlib.import_module(f".{name}", __name__)
        found.extend(module.NODES)
    return found


class AnimeKitExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return all_nodes()
