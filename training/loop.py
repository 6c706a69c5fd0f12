"""The training loop: micro-batches, accumulation, mixed precision, clipping, saves and resume.

One optimizer step = `schedule.accumulation_steps` micro-batches on every process. Accelerate
supplies the process group (DDP over the trained weights only, see train_step.py); on a single
CPU or GPU it is a no-op. Precision is explicit: torch.autocast in the chosen dtype, and a
GradScaler for fp16. Each step's loss is averaged over processes and checked: NaN or infinity
stops the run before the optimizer applies it, so the last save stays the last good one.

Randomness: noise and timesteps come from a dedicated generator per process, LoRA dropout from
torch's global RNG, captions and crops from the BatchSource's own per-draw streams; all of it is
in the resume state, so N steps + resume + N steps equals 2N steps exactly.
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from pathlib import Path

import torch

from .checkpointing import (
    SharedState,
    begin_state,
    capture_rng,
    check_resumable,
    finish_state,
    load_state,
    partial_folder,
    prune_states,
    restore_rng,
    write_rank_state,
)
from .config import TrainConfig
from .data.dataset import DatasetIndex
from .data.latent_cache import LatentCache, precompute_latents
from .data.loader import Batch, BatchSource
from .ema import Ema
from .finite import first_non_finite
from .hooks import Hooks, Progress, TrainingDiverged, TrainResult
from .metadata import RunFacts, modelspec_metadata, training_metadata
from .model_setup import AUTOCAST_DTYPES, PreparedModel, prepare_model
from .objective import Objective
from .optim import build_optimizer, build_schedule, current_rates
from .outputs import final_name, periodic_name, prune_periodic, write_checkpoint, write_lora
from .protocols import ModelBundle, SizeConditioning
from .run_log import RunLog
from .text_outputs import TextOutputCache
from .train_step import TrainStep
from .validation import ValidationSet, split_index


class Trainer:
    """Runs one training config over one model bundle and one scanned dataset."""

    def __init__(self, cfg: TrainConfig, bundle: ModelBundle, index: DatasetIndex, hooks: Hooks | None = None, accelerator=None):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        self.cfg, self.bundle, self.index = cfg, bundle, index
        self.hooks = hooks or Hooks()
        if accelerator is None:
            # SDXL and clip skip condition on a penultimate layer: the last text-encoder layer gets no gradient
            unused = cfg.network.train_text_encoder and (bundle.arch == "sdxl" or cfg.model.clip_skip > 1)
            ddp = DistributedDataParallelKwargs(broadcast_buffers=False, find_unused_parameters=unused)
            accelerator = Accelerator(kwargs_handlers=[ddp])
        self.acc = accelerator
        self.device = accelerator.device
        self.rank, self.world = accelerator.process_index, accelerator.num_processes
        self.output_dir = Path(cfg.save.output_dir)
        self.work_dir = Path(cfg.save.work_dir or cfg.save.output_dir)

    # ------------------------------------------------------------------------------- helpers
    def _progress(self, phase: str, done: int, total: int, epoch: int = 0, loss: float | None = None) -> None:
        if self.hooks.progress is not None and self.acc.is_main_process:
            self.hooks.progress(Progress(phase, done, total, epoch, loss))

    def _should_stop(self) -> bool:
        local = bool(self.hooks.should_stop and self.hooks.should_stop())
        if self.world == 1:
            return local
        flag = torch.tensor([1.0 if local else 0.0], device=self.device)
        return bool(self.acc.reduce(flag, reduction="sum").item() > 0)

    def _autocast(self):
        mixed = self.cfg.precision.mixed
        if mixed == "no":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AUTOCAST_DTYPES[mixed])

    # --------------------------------------------------------------------------------- setup
    def _setup(self) -> None:
        cfg, bundle = self.cfg, self.bundle
        if self.device.type == "cuda" and cfg.precision.allow_tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.objective = Objective(cfg.objective, bundle.noise_schedule, bundle.prediction_type)

        # identical initialisation on every process (LoRA init draws from torch's global RNG)
        torch.manual_seed(cfg.seed)
        self.model: PreparedModel = prepare_model(cfg, bundle, self.device)
        self.params = self.model.all_params()

        self.index, held_out = split_index(self.index, cfg.validation)
        self.validation = None
        if held_out:  # before the caches move the VAE and frozen text encoders off the accelerator
            self.validation = ValidationSet(
                held_out, cfg.validation, bundle, self.objective, self.device, self._encode_latents,
                encode_text=not cfg.network.train_text_encoder,
            )  # fmt: skip
        self.source = BatchSource(
            self.index, cfg.dataset, encode_latents=self._encode_latents, latent_cache=self._latent_cache(),
            rank=self.rank, world_size=self.world, prefetch=2,
        )  # fmt: skip
        self._precompute_latents()
        self.text_cache = self._text_cache()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()  # hand the caching phase's memory back before training starts

        accumulation = cfg.schedule.accumulation_steps
        self.batches_per_epoch = self.source.batches_in_epoch()
        if cfg.schedule.max_steps:
            self.max_steps = cfg.schedule.max_steps
        else:
            self.max_steps = math.ceil(cfg.schedule.epochs * self.batches_per_epoch / accumulation)

        self.step_module = TrainStep(bundle, self.model.network, self.model.trained_parts, cfg.network.train_text_encoder)
        self.wrapped = self.acc.prepare_model(self.step_module, device_placement=False) if self.world > 1 else self.step_module
        self.optimizer = build_optimizer(cfg.optimizer, self.model.params, self.device)
        self.scheduler = build_schedule(cfg.schedule, self.optimizer, self.max_steps)
        self.scaler = torch.amp.GradScaler(self.device.type) if cfg.precision.mixed == "fp16" else None
        if cfg.precision.fused_backward:
            if self.world > 1:
                raise ValueError("precision.fused_backward works on one GPU (DDP reduces gradients after the backward pass)")
            self._install_fused_backward()
        self.ema = Ema(cfg.ema, self.params) if cfg.ema.enabled else None

        # per-process randomness for noise and timesteps; torch's global RNG feeds LoRA dropout
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed * 1009 + self.rank)
        torch.manual_seed(cfg.seed * 1009 + self.rank)

        self.facts = RunFacts(
            arch=bundle.arch,
            prediction_type=bundle.prediction_type,
            base_model_name=bundle.name,
            base_model_hash=bundle.model_hash,
            session_id=uuid.uuid4().int % (2**31),
            num_train_images=sum(r.repeats for r in self.index.records),
            num_batches_per_epoch=self.batches_per_epoch * self.world,
            num_epochs=cfg.schedule.epochs or math.ceil(self.max_steps * accumulation / max(1, self.batches_per_epoch)),
            max_steps=self.max_steps,
            tag_frequency=self.index.tag_frequency(),
            dataset_dirs=_dataset_dirs(self.index),
            bucket_info={"buckets": {f"{w}x{h}": n for (w, h), n in self.index.bucket_counts().items()}},
            world_size=self.world,
        )

    def _encode_latents(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.bundle.vae is None:
            raise ValueError("this model bundle has no VAE and the dataset has no cached latents")
        return self.bundle.vae.encode(pixels.to(self.device))

    def _latent_cache(self) -> LatentCache | None:
        cache = self.cfg.cache
        if cache.latents == "none":
            return None
        folder = cache.latents_dir or str(self.work_dir / "latent_cache")
        identity = self.bundle.vae.identity if self.bundle.vae is not None else "none"
        return LatentCache(cache.latents, folder if cache.latents == "disk" else None, identity)

    def _precompute_latents(self) -> None:
        cache = self.source.latent_cache
        if cache is None:
            return
        shard = (self.rank, self.world) if cache.mode == "disk" else (0, 1)
        precompute_latents(
            self.index, self.cfg.dataset, cache, self._encode_latents, batch_size=self.cfg.cache.vae_batch_size,
            progress=lambda done, total: self._progress("cache_latents", done, total),
            rank=shard[0], world_size=shard[1],
        )  # fmt: skip
        self.acc.wait_for_everyone()
        if self.bundle.vae is not None and self.cfg.sample.every_n_steps == 0:
            self.bundle.vae.module.to("cpu")  # every latent is cached: free the accelerator
            self.source.encode_latents = self._encode_latents_on_cpu

    def _encode_latents_on_cpu(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.bundle.vae.encode(pixels).to(self.device)

    def _text_cache(self) -> TextOutputCache | None:
        if not self.cfg.cache.text_encoder_outputs:
            return None
        cache = TextOutputCache(
            self.bundle.text_encoders, self.index, self.cfg.cache.text_variants, self.cfg.seed, self.device,
            AUTOCAST_DTYPES[self.cfg.precision.mixed],
            progress=lambda done, total: self._progress("cache_text", done, total),
        )  # fmt: skip
        if self.cfg.sample.every_n_steps == 0:
            for part in self.bundle.text_encoders.parts:
                self.bundle.part_module(part).to("cpu")
        return cache

    # -------------------------------------------------------------------------------- resume
    def _resume(self, path: str) -> int:
        state = load_state(path, self.rank)
        check_resumable(state.config, self.cfg)
        if state.world_size != self.world:
            raise ValueError(f"the state was saved by {state.world_size} process(es); resume with the same number, not {self.world}")
        self.model.load_trainable_state(self.bundle, state.trainable)
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.training["scheduler"])
        if self.scaler is not None and state.training.get("scaler"):
            self.scaler.load_state_dict(state.training["scaler"])
        if self.ema is not None:
            if not state.training.get("ema"):
                raise ValueError("ema.enabled is on but the resume state has no EMA weights")
            self.ema.load_state_dict(state.training["ema"])
        self.source.load_state_dict(state.data)
        restore_rng(state.rng, self.generator)
        self.state_path = state.folder
        return state.step

    # ----------------------------------------------------------------------------- one step
    def _micro_step(self, batch: Batch) -> torch.Tensor:
        latents = batch.latents if batch.latents is not None else self._encode_latents(batch.pixels)
        latents = latents.to(self.device, torch.float32)
        noise = self.objective.sample_noise(latents, self.generator)
        timesteps = self.objective.sample_timesteps(latents.shape[0], self.generator, self.device)
        noisy = self.objective.add_noise(latents, noise, timesteps)
        target = self.objective.target(latents, noise, timesteps)
        text = None
        if self.text_cache is not None:
            text = self.text_cache.lookup(batch.paths, batch.captions, self.device)
        sizes = SizeConditioning(
            batch.original_size.to(self.device), batch.crop_top_left.to(self.device), batch.target_size.to(self.device)
        )
        with self._autocast():
            prediction = self.wrapped(noisy, timesteps, batch.captions, text, sizes)
        loss = self.objective.loss(prediction, target, timesteps)
        if self.cfg.precision.fused_backward and not math.isfinite(float(loss.detach())):
            return loss.detach()  # the backward pass would apply the update: _one_step stops on this loss first
        scaled = loss / self.cfg.schedule.accumulation_steps
        if self.scaler is not None:
            self.scaler.scale(scaled).backward()
        else:
            scaled.backward()
        return loss.detach()

    def _install_fused_backward(self) -> None:
        """Each trained weight is clipped (per weight, as kohya does) and stepped as soon as its gradient
        is complete, and the gradient is freed at once: the step never holds every gradient."""
        groups = {id(p): group for group in self.optimizer.param_groups for p in group["params"]}
        max_norm = self.cfg.optimizer.max_grad_norm

        def step_one(param: torch.nn.Parameter) -> None:
            if max_norm:
                torch.nn.utils.clip_grad_norm_([param], max_norm)
            group = groups[id(param)]
            params = group["params"]
            group["params"] = [param]
            try:
                self.optimizer.step()
            finally:
                group["params"] = params
            param.grad = None

        for param in self.params:
            param.register_post_accumulate_grad_hook(step_one)

    def _optimizer_step(self) -> float | None:
        grad_norm = None
        if self.cfg.precision.fused_backward:  # every weight was updated during the backward pass
            self.scheduler.step()
            if self.ema is not None:
                self.ema.step()
            return None
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.cfg.optimizer.max_grad_norm:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.cfg.optimizer.max_grad_norm))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.step()
        return grad_norm

    def _validation_loss(self) -> float:
        network = self.model.network
        if network is not None:
            network.eval()  # no LoRA dropout while scoring
        try:
            return self.validation.loss(self.step_module, self._autocast)
        finally:
            if network is not None:
                network.train()

    # -------------------------------------------------------------------------------- saving
    def _metadata(self, step: int, epoch: int, title: str) -> dict[str, str]:
        lora = self.model.network is not None
        return {
            **training_metadata(self.cfg, self.facts, step=step, epoch=epoch, lora=lora),
            **modelspec_metadata(self.cfg, self.facts, lora=lora, title=title),
        }

    def _require_finite_weights(self, step: int) -> None:
        """No saved LoRA, checkpoint or state may hold inf / NaN: stop, naming the last good save."""
        bad = first_non_finite(self.model.trainable_state(self.bundle))
        if bad is None and self.ema is not None:
            bad = first_non_finite(self.ema.state_dict())
        if bad is not None:
            saves = [path.name for path in self.saved] + ([self.state_path.name] if self.state_path else [])
            last = ", ".join(saves[-2:]) if saves else "nothing (no save yet)"
            raise TrainingDiverged(
                f"the trained weights became non-finite ({bad}) by step {step}; nothing was written for that "
                f"step. The last good saves: {last}. Lower the learning rate, use bf16 instead of fp16, or check the data."
            )

    def _save_model(self, file_name: str, step: int, epoch: int) -> Path | None:
        self._require_finite_weights(step)
        if not self.acc.is_main_process:
            return None
        title = file_name.removesuffix(".safetensors")
        with self.ema.averaged_weights() if self.ema is not None else contextlib.nullcontext():
            metadata = self._metadata(step, epoch, title)
            if self.model.network is not None:
                path = write_lora(self.model.network, self.output_dir, file_name, metadata, self.cfg.save.precision)
            else:
                if self.bundle.export_checkpoint is None:
                    raise ValueError("this model host cannot export a full checkpoint")
                path = write_checkpoint(
                    self.bundle.export_checkpoint(), self.output_dir, file_name, metadata, self.cfg.save.precision,
                    base_file=self.cfg.model.checkpoint or None,
                )  # fmt: skip
        self.saved.append(path)
        if self.hooks.on_save is not None:
            self.hooks.on_save(path)
        return path

    def _save_state(self, step: int, epoch: int) -> Path | None:
        self._require_finite_weights(step)
        tmp = partial_folder(self.work_dir, step)
        if self.acc.is_main_process:
            begin_state(self.work_dir, step)
        self.acc.wait_for_everyone()
        write_rank_state(tmp, self.rank, capture_rng(self.generator), self.source.state_dict())
        self.acc.wait_for_everyone()
        final = None
        if self.acc.is_main_process:
            shared = SharedState(
                step=step, epoch=epoch, world_size=self.world, config=self.cfg.to_dict(),
                trainable=self.model.trainable_state(self.bundle),
                optimizer=self.optimizer.state_dict(),
                training={
                    "scheduler": self.scheduler.state_dict(),
                    "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                    "ema": self.ema.state_dict() if self.ema is not None else None,
                },
            )  # fmt: skip
            final = finish_state(self.work_dir, tmp, shared)
            prune_states(self.work_dir, self.cfg.save.keep_last)
        self.acc.wait_for_everyone()
        self.state_path = final or self.work_dir / tmp.name.removeprefix(".").removesuffix(".partial")
        return final

    def _periodic_save(self, step: int, epoch: int, by_epoch: bool) -> None:
        name = periodic_name(self.cfg.save.name, epoch=epoch) if by_epoch else periodic_name(self.cfg.save.name, step=step)
        self._save_model(name, step, epoch)
        if self.acc.is_main_process:
            prune_periodic(self.output_dir, self.cfg.save.name, self.cfg.save.keep_last)
        if self.cfg.save.save_state:
            self._save_state(step, epoch)

    # ---------------------------------------------------------------------------------- run
    def _one_step(self, batches, step: int) -> tuple[float, dict[str, float], float | None, int]:
        """Accumulate micro-batches, check the loss, apply the update: (loss, rates used, grad norm, images)."""
        accumulation = self.cfg.schedule.accumulation_steps
        losses, images = [], 0
        for micro in range(accumulation):
            batch = next(batches)
            sync = micro == accumulation - 1 or self.world == 1
            with contextlib.nullcontext() if sync else self.acc.no_sync(self.wrapped):
                losses.append(self._micro_step(batch))
            images += len(batch.paths)
        loss = torch.stack(losses).mean()
        if self.world > 1:
            loss = self.acc.reduce(loss, reduction="mean")
        value = float(loss)
        if not math.isfinite(value):
            last = self.state_path.name if self.state_path else "the start"
            raise TrainingDiverged(
                f"the loss became {value} at step {step + 1}; training stopped and nothing was saved after {last}. "
                "Lower the learning rate, use bf16 instead of fp16, or check the data."
            )
        rates = current_rates(self.optimizer)  # the rates this step applies
        return value, rates, self._optimizer_step(), images

    def _completed_epochs(self) -> int:
        return self.source.epoch - (0 if self.source.end_of_epoch else 1)

    def run(self, resume: str | None = None) -> TrainResult:
        """Train to the end (or until should_stop); saves and states as configured."""
        self._tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        self.saved: list[Path] = []
        self.state_path: Path | None = None
        self._log: RunLog | None = None
        self._batches = None
        try:
            return self._run(resume)
        finally:
            if self._batches is not None:
                self._batches.close()  # stops the loader's prefetch threads
            if self._log is not None:
                self._log.close()
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self._tf32  # the host's settings

    def _run(self, resume: str | None) -> TrainResult:
        cfg = self.cfg
        self._setup()
        step = self._resume(resume) if resume else 0
        if self.acc.is_main_process:
            self._log = RunLog(self.work_dir, tensorboard=cfg.logging.tensorboard, resume_step=step if resume else None)
        completed_epochs = self._completed_epochs()
        last_loss, stopped, output = None, False, None
        self._batches = batches = iter(self.source)
        started, images_done = time.perf_counter(), 0
        self._progress("train", step, self.max_steps, self.source.epoch)
        while step < self.max_steps:
            if self._should_stop():
                stopped = True
                break
            last_loss, rates, grad_norm, images = self._one_step(batches, step)
            step += 1
            images_done += images
            epoch = self.source.epoch
            if self._log is not None and (step % cfg.logging.every_n_steps == 0 or step == self.max_steps):
                elapsed = time.perf_counter() - started
                self._log.write(step, epoch, last_loss, rates, grad_norm, images_done * self.world / elapsed if elapsed else None)
            if self.validation is not None and step % cfg.validation.every_n_steps == 0 and self._log is not None:
                self._log.write_validation(step, self._validation_loss())
            if self.hooks.on_step is not None and self.acc.is_main_process:
                self.hooks.on_step(step, last_loss, rates)
            self._progress("train", step, self.max_steps, epoch, last_loss)
            if cfg.sample.every_n_steps and step % cfg.sample.every_n_steps == 0 and self.hooks.on_sample is not None:
                if self.acc.is_main_process:
                    self._sample(step)
                self.acc.wait_for_everyone()
            epoch_done = self._completed_epochs() > completed_epochs
            completed_epochs = self._completed_epochs()
            if step == self.max_steps:
                break  # the final save follows
            if cfg.save.every_n_steps and step % cfg.save.every_n_steps == 0:
                self._periodic_save(step, epoch, by_epoch=False)
            elif epoch_done and cfg.save.every_n_epochs and completed_epochs % cfg.save.every_n_epochs == 0:
                self._periodic_save(step, completed_epochs, by_epoch=True)
        if stopped:
            if step > 0:
                self._save_state(step, self.source.epoch)  # stopping always leaves a way to resume
        else:
            output = self._save_model(final_name(cfg.save.name), step, self.source.epoch)
            if cfg.save.save_state:
                self._save_state(step, self.source.epoch)
        return TrainResult(
            output=output if self.acc.is_main_process else None,
            steps=step,
            epoch=self.source.epoch,
            stopped=stopped,
            state=self.state_path,
            last_loss=last_loss,
            saved=list(self.saved),
            network=self.model.network,
        )

    def _sample(self, step: int) -> None:
        modules = [self.bundle.denoiser.module, *(self.bundle.part_module(p) for p in self.bundle.text_encoders.parts)]
        modes = [m.training for m in modules]
        network = self.model.network
        for m in modules:
            m.eval()
        if network is not None:
            network.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        try:  # sampling must not move the training RNG, or resumed runs would differ
            with torch.no_grad(), torch.random.fork_rng(devices=devices, device_type=self.device.type):
                self.hooks.on_sample(step, self.bundle)
        finally:
            for m, mode in zip(modules, modes):
                m.train(mode)
            if network is not None:
                network.train()


def _dataset_dirs(index: DatasetIndex) -> dict:
    dirs: dict[str, dict] = {}
    for record in index.records:
        entry = dirs.setdefault(Path(record.folder).name, {"n_repeats": record.repeats, "img_count": 0})
        entry["img_count"] += 1
    return dirs
