"""Optimizers and learning-rate schedules, from the packages that maintain them.

AdamW is torch's, Adafactor transformers', Prodigy prodigyopt's and 8-bit AdamW bitsandbytes'
(CUDA only); schedules are diffusers.optimization.get_scheduler. One parameter group per trained
part ("unet", "te1", "te2") carries that part's learning rate.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from .config import OptimizerConfig, ScheduleConfig

PART_ORDER = ("unet", "te1", "te2")


def part_learning_rates(cfg: OptimizerConfig) -> dict[str, float]:
    return {"unet": cfg.lr, "te1": cfg.te1_lr, "te2": cfg.te2_lr}


def param_groups(cfg: OptimizerConfig, parts: dict[str, Iterable[nn.Parameter]]) -> list[dict]:
    rates = part_learning_rates(cfg)
    groups = []
    for part in PART_ORDER:
        params = [p for p in parts.get(part, ()) if p.requires_grad]
        if params:
            groups.append({"params": params, "lr": rates[part], "name": part})
    if not groups:
        raise ValueError("no trainable parameters: check network.train_unet / network.train_text_encoder")
    return groups


def build_optimizer(cfg: OptimizerConfig, parts: dict[str, Iterable[nn.Parameter]], device: torch.device):
    groups = param_groups(cfg, parts)
    extra = dict(cfg.args)
    if cfg.type == "adamw":
        factory, kwargs = torch.optim.AdamW, dict(lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
        if device.type == "cuda" and "foreach" not in extra:
            kwargs["fused"] = True  # one kernel per step and no foreach temporaries (the memory plan assumes none)
    elif cfg.type == "adamw8bit":
        if device.type != "cuda":
            raise ValueError("optimizer.type = 'adamw8bit' needs a CUDA GPU (bitsandbytes); use 'adamw' or 'adafactor' here")
        try:
            import bitsandbytes
        except ImportError:
            raise ValueError("optimizer.type = 'adamw8bit' needs the bitsandbytes package: pip install bitsandbytes") from None
        factory = bitsandbytes.optim.AdamW8bit
        kwargs = dict(lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    elif cfg.type == "adafactor":
        from transformers.optimization import Adafactor

        factory = Adafactor
        # kohya's recommended fixed-lr setup; optimizer.args may override any of these
        kwargs = dict(lr=cfg.lr, weight_decay=cfg.weight_decay, scale_parameter=False, relative_step=False, warmup_init=False)
    elif cfg.type == "prodigy":
        try:
            from prodigyopt import Prodigy
        except ImportError:
            raise ValueError("optimizer.type = 'prodigy' needs the prodigyopt package: pip install prodigyopt") from None
        factory = Prodigy
        kwargs = dict(lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    else:  # config validation makes this unreachable
        raise ValueError(f"unknown optimizer.type {cfg.type!r}")
    kwargs.update({k: tuple(v) if isinstance(v, list) else v for k, v in extra.items()})
    if cfg.type == "adafactor" and kwargs.get("relative_step"):
        kwargs["lr"] = None  # Adafactor's own relative-step schedule replaces the learning rate
    try:
        return factory(groups, **kwargs)
    except TypeError as exc:
        raise ValueError(f"optimizer.args does not fit {factory.__name__}: {exc}") from None


def build_schedule(cfg: ScheduleConfig, optimizer, total_steps: int):
    from diffusers.optimization import get_scheduler

    if cfg.name == "constant_with_warmup" and cfg.warmup_steps == 0:
        name = "constant"
    else:
        name = cfg.name
    return get_scheduler(
        name,
        optimizer,
        num_warmup_steps=cfg.warmup_steps,
        num_training_steps=total_steps,
        num_cycles=cfg.num_cycles,
        power=cfg.power,
    )


def current_rates(optimizer) -> dict[str, float]:
    """Learning rate per part now (Prodigy's effective rate is d * lr)."""
    rates = {}
    for group in optimizer.param_groups:
        lr = float(group["lr"])
        if "d" in group:  # Prodigy
            lr *= float(group["d"])
        rates[group.get("name", f"group{len(rates)}")] = lr
    return rates
