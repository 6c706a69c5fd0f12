"""`animekit train CONFIG --check`: everything that can be known before a weight is read.

The model is checked from its safetensors headers (exists, is a supported SD1.5 / SDXL checkpoint
or diffusers folder, its architecture and prediction type), the settings against it, the dataset
is scanned, and the memory plan is computed from the real architecture built on the meta device
(no memory) with the header's parameter counts: the same plan the trainer nodes show.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .config import TrainConfig
from .memory_estimate import GIB, MemoryEstimate, advice
from .memory_planning import RunMemory, plan_run_memory
from .model_facts import ModelFacts, inspect_model

SMALLER_CARDS = 6  # advice lines shown


def check_model(cfg: TrainConfig, facts: ModelFacts) -> list[str]:
    """What the settings make of this model; ValueError where they contradict it."""
    prediction = cfg.model.prediction if cfg.model.prediction != "auto" else facts.prediction
    lines = []
    if cfg.model.prediction != "auto" and prediction != facts.prediction:
        lines.append(f"prediction: {prediction} (model.prediction overrides the model's {facts.prediction})")
    if cfg.objective.zero_terminal_snr and prediction != "v_prediction":
        raise ValueError(
            "objective.zero_terminal_snr needs a v-prediction model (this one predicts noise); "
            "set model.prediction = 'v_prediction' if it really is one"
        )
    if facts.zero_terminal_snr and not cfg.objective.zero_terminal_snr:
        lines.append("note: the model is marked zero-terminal-SNR (ztsnr); set objective.zero_terminal_snr = true to train it so")
    if facts.arch == "sdxl" and cfg.model.clip_skip != 1:
        raise ValueError("model.clip_skip applies to SD1.5 only: SDXL always conditions on the penultimate layer")
    return lines


def plan_memory(cfg: TrainConfig, facts: ModelFacts) -> RunMemory:
    """The run's memory plan over the real architecture on the meta device, with the model's own counts."""
    from .adapters.diffusers_models import make_bundle
    from .adapters.reference_models import build_reference_models

    unet, texts, vae = build_reference_models(facts.arch, "meta")
    memory = plan_run_memory(cfg, make_bundle(facts.arch, unet, texts, [None] * len(texts), vae))
    plan = memory.plan
    params = {part: facts.params.get(part, count) for part, count in plan.params.items()}
    trained = sum(params[p] for p in plan.trained_parts) if plan.full else plan.trained_params
    return RunMemory(dataclasses.replace(plan, params=params, trained_params=trained), memory.lora_params)


def check_run(cfg: TrainConfig, config_path: str | Path) -> list[str]:
    """The lines `--check` prints; raises FileNotFoundError / ValueError naming what is wrong."""
    from .data.dataset import scan_dataset

    facts = inspect_model(cfg.model)
    lines = [f"model: {facts.path}", f"  {facts.describe()}"]
    lines += [f"  {line}" for line in check_model(cfg, facts)]
    index = scan_dataset(cfg.dataset)
    images = sum(r.repeats for r in index.records)
    lines.append(
        f"dataset: {len(index.records)} images ({images} per epoch with repeats), {len(index.skipped)} skipped, "
        f"{len(index.bucket_counts())} buckets"
    )
    memory = plan_memory(cfg, facts)
    found: MemoryEstimate = memory.estimate()
    lines += found.lines()
    tips = advice(memory.plan, 0, memory.lora_params if memory.plan.full else None)
    if tips:
        lines.append("for a smaller card: " + "; ".join(tips[:SMALLER_CARDS]))
    lines.append(f"{config_path}: settings valid")
    return lines
