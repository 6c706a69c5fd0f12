"""ComfyUI V3 nodes: thin adapters from MODEL/CLIP/VAE/IMAGE to AnimeKit's pure core.

Imported only by ComfyUI (through `comfy_entrypoint`). Node ids and input names are a public API:
bundled and shared workflows bind to them, so never rename, reorder or remove an input.
"""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .lora_bake_node import AnimeKitBakeLora
from .lora_block_nodes import AnimeKitLoraBlockWeight
from .merge_grid_node import AnimeKitMergeGrid
from .merge_nodes import AnimeKitBlockMergeCheckpoint, AnimeKitBlockMergeClip, AnimeKitBlockMergeModel
from .prompt_nodes import AnimeKitPromptBuilder, AnimeKitPromptEncode, AnimeKitTagFormatter
from .resolution_nodes import AnimeKitAspectPreset, AnimeKitNearestBucket
from .training.nodes import AnimeKitDataset, AnimeKitTrainCheckpoint, AnimeKitTrainLora
from .datasets.nodes import AnimeKitDatasetStats, AnimeKitFormatCaptions, AnimeKitScoreImages, AnimeKitTagImages


def all_nodes() -> list[type[io.ComfyNode]]:
    return [
        AnimeKitPromptBuilder,
        AnimeKitPromptEncode,
        AnimeKitTagFormatter,
        AnimeKitAspectPreset,
        AnimeKitNearestBucket,
        AnimeKitBlockMergeModel,
        AnimeKitBlockMergeClip,
        AnimeKitBlockMergeCheckpoint,
        AnimeKitLoraBlockWeight,
        AnimeKitMergeGrid,
        AnimeKitBakeLora,
        AnimeKitTagImages,
        AnimeKitFormatCaptions,
        AnimeKitScoreImages,
        AnimeKitDatasetStats,
        AnimeKitDataset,
        AnimeKitTrainLora,
        AnimeKitTrainCheckpoint,
    ]


class AnimeKitExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return all_nodes()
