"""AnimeKit: a ComfyUI pack and the `animekit` Python package.

ComfyUI imports this folder as a custom-node pack and calls `comfy_entrypoint`; nodes are imported
only then, so `import animekit` works without ComfyUI (CLI, tests, scripts).
"""

__version__ = "0.1.0"


async def comfy_entrypoint():
    from .nodes import AnimeKitExtension

    return AnimeKitExtension()
