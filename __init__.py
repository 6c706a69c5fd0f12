"""AnimeKit: a ComfyUI pack and the `animekit` Python package.

ComfyUI imports this folder as a custom-node pack and calls `comfy_entrypoint`; nodes are imported
only then, so `import animekit` works without ComfyUI (CLI, tests, scripts).
"""

__version__ = "0.1.0"
WEB_DIRECTORY = "./web"  # the editor's extensions (tag autocomplete), served at /extensions/<pack folder>/


async def comfy_entrypoint():
    from .nodes import AnimeKitExtension
    from .nodes.autocomplete_route import register_route

    register_route()
    return AnimeKitExtension()
