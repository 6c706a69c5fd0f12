"""AnimeKitMergeGrid: compare merges before saving (SuperMerger's XY plot) in the graph.

Each cell is a lazy block merge (the Block Merge Model node's own patches, merge/ core) sampled with
ComfyUI's own KSampler code (nodes.common_ksampler) on the same seed, then decoded; one merged model
is alive at a time. Output: the labelled grid and the cells as a batch. The text encoder is not
merged per cell: the positive / negative conditioning is the same for every cell.
"""

from __future__ import annotations

import comfy.model_management
import comfy.samplers
import comfy.utils
import nodes as comfy_nodes
import numpy as np
import torch
from comfy_api.latest import io
from PIL import Image

from ..merge.grid import AXIS_KINDS, CellSettings, draw_grid, grid_cells, parse_axis
from ..merge.methods import METHODS, WEIGHTED_SUM
from .merge_nodes import CATEGORY, CUSTOM, AnimeKitBlockMergeModel, preset_names

AXIS_HELP = ("preset: names; weights: block-weight lists; alpha: one weight for every block; method: method names; "
             "density / beta: numbers. Separate values with ';' or new lines (numbers also with commas).")


def _to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray((image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy())


def _to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)


class AnimeKitMergeGrid(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AnimeKitMergeGrid",
            display_name="Merge Compare Grid (XY)",
            category=CATEGORY,
            description="Sample a grid of block merges of A and B (presets, weight lists, alphas, methods, densities on "
            "one or two axes) on the same seed, to compare before saving. Weights are the fraction of model B.",
            inputs=[
                io.Model.Input("model_a", tooltip="Model A (kept where a block weight is 0)."),
                io.Model.Input("model_b", tooltip="Model B (taken where a block weight is 1)."),
                io.Conditioning.Input("positive", tooltip="The same positive conditioning for every cell."),
                io.Conditioning.Input("negative", tooltip="The same negative conditioning for every cell."),
                io.Latent.Input("latent_image", tooltip="The latent every cell starts from (its size is the cell size)."),
                io.Vae.Input("vae", tooltip="Decodes each cell."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, tooltip="The same seed for every cell."),
                io.Int.Input("steps", default=20, min=1, max=10000, tooltip="Sampling steps per cell."),
                io.Float.Input("cfg", default=7.0, min=0.0, max=100.0, step=0.1, round=0.01, tooltip="Classifier-free guidance scale."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, tooltip="ComfyUI sampler, as in KSampler."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, tooltip="ComfyUI scheduler, as in KSampler."),
                io.Combo.Input("preset", options=[CUSTOM, *preset_names()], default="HIGHRES_REPLACE",
                               tooltip="Base block weights for cells whose axes do not set them."),
                io.String.Input("weights", default="", tooltip="With preset 'custom': base weights (26 / 20, or one for all)."),
                io.Combo.Input("method", options=list(METHODS), default=WEIGHTED_SUM, tooltip="Base merge method."),
                io.Float.Input("density", default=0.5, min=0.01, max=1.0, step=0.01, tooltip="Base TIES / DARE density."),
                io.Combo.Input("x_type", options=[k for k in AXIS_KINDS if k != "none"], default="preset", tooltip="What changes along X (columns)."),
                io.String.Input("x_values", default="HIGHRES_REPLACE; LOWRES_REPLACE", multiline=True, tooltip=AXIS_HELP),
                io.Combo.Input("y_type", options=list(AXIS_KINDS), default="none", tooltip="What changes along Y (rows); none for one row."),
                io.String.Input("y_values", default="", multiline=True, tooltip=AXIS_HELP),
                io.Model.Input("model_c", optional=True, tooltip="Model C for the methods that need it."),
                io.Float.Input("beta", default=0.0, min=-2.0, max=3.0, step=0.01, optional=True,
                               tooltip="Base weight of C for triple-sum / sum-twice."),
            ],
            outputs=[
                io.Image.Output("grid", tooltip="The labelled grid."),
                io.Image.Output("cells", tooltip="Every cell, row by row, as a batch."),
                io.String.Output("labels", tooltip="One line per cell: its X and Y values."),
            ],
        )

    @classmethod
    def execute(cls, model_a, model_b, positive, negative, latent_image, vae, seed, steps, cfg, sampler_name, scheduler,
                preset, weights, method, density, x_type, x_values, y_type, y_values, model_c=None, beta=0.0) -> io.NodeOutput:
        x = parse_axis(x_type, x_values, name="x axis")
        y = parse_axis(y_type, y_values, name="y axis")
        base = CellSettings(preset, weights, method, density, 0, beta)
        cells = grid_cells(base, x, y)
        for _, _, settings in cells:  # every cell's settings checked before the first sample
            settings.merge_method()
        bar = comfy.utils.ProgressBar(len(cells))
        images, labels = [], []
        for index, (r, c, s) in enumerate(cells):
            comfy.model_management.throw_exception_if_processing_interrupted()
            merged = AnimeKitBlockMergeModel.execute(model_a, model_b, s.preset, s.weights, s.method, s.density, s.seed,
                                                     model_c, s.beta).result[0]
            samples = comfy_nodes.common_ksampler(merged, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                                                  latent_image)[0]["samples"]
            del merged  # one merged model alive at a time
            decoded = vae.decode(samples)
            images.append(decoded.reshape(-1, *decoded.shape[-3:])[0])
            labels.append(" | ".join(t for t in (x.label(x.values[c]), y.label(y.values[r])) if t))
            bar.update_absolute(index + 1, len(cells))
        grid = draw_grid([_to_pil(i) for i in images], x, y)
        return io.NodeOutput(_to_tensor(grid)[None], torch.stack(images), "\n".join(labels))
