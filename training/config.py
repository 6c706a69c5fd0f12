"""Training settings: one frozen dataclass per concern, assembled in `TrainConfig`.

Every class validates its own values in `__post_init__` with messages that name the TOML key
(`network.rank must be ...`), so the same message reaches a CLI user, a ComfyUI user and a test.
Settings that contradict each other are refused by `TrainConfig` before any work starts.
`config_toml.load_config` builds these from a TOML file; the ComfyUI nodes build them directly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from .data.dataset import DatasetConfig

# The choices of each setting, named once: the checks below, the TOML reader and the hosts' option
# lists (training/options.py) all read them from these types.
Arch = Literal["auto", "sd15", "sdxl"]
Prediction = Literal["auto", "epsilon", "v_prediction"]
TokenLength = Literal[75, 150, 225]
NetworkType = Literal["lora", "full"]
OptimizerType = Literal["adamw", "adamw8bit", "adafactor", "prodigy"]
SchedulerName = Literal["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"]
MixedPrecision = Literal["no", "fp16", "bf16"]
VaeDtype = Literal["float32", "float16", "bfloat16"]
LatentCache = Literal["memory", "disk", "none"]
SavePrecision = Literal["fp16", "bf16", "fp32"]


def _positive_int(key: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")


def _non_negative_int(key: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{key} must be a non-negative integer, got {value!r}")


def _non_negative(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{key} must be a number >= 0, got {value!r}")
    if value == float("inf"):
        raise ValueError(f"{key} must be a finite number, got {value!r}")


def _probability(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{key} must be a number in [0, 1), got {value!r}")


def _choice(key: str, value: Any, kind: Any) -> None:
    """`value` must be one of the Literal type `kind`'s arguments."""
    choices = get_args(kind)
    if value not in choices:
        raise ValueError(f"{key} must be one of {', '.join(map(repr, choices))}, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Which base model to train and how to read it."""

    path: str = ""  # single-file .safetensors checkpoint (A1111 / ComfyUI layout) or a diffusers-format folder
    arch: Arch = "auto"  # auto: from the file's keys (or the folder's text_encoder_2/); a mismatch is refused
    checkpoint: str = ""  # with a diffusers folder: single-file .safetensors whose weights replace the folder's
    prediction: Prediction = "auto"  # auto: the file's v_pred marker key, or the folder's scheduler config
    clip_skip: int = 1  # SD1.5 only: 2 = penultimate CLIP layer (SDXL always uses the penultimate)
    max_token_length: TokenLength = 75  # captions are encoded in 75-token chunks
    name: str = ""  # base-model name written to the metadata; default: the folder or checkpoint name
    tokenizer: str = ""  # single files: folder with CLIP vocab.json + merges.txt; default: ComfyUI's comfy/sd1_tokenizer

    def __post_init__(self):
        _choice("model.arch", self.arch, Arch)
        _choice("model.prediction", self.prediction, Prediction)
        if self.max_token_length not in get_args(TokenLength):
            raise ValueError(f"model.max_token_length must be 75, 150 or 225, got {self.max_token_length!r}")
        if self.clip_skip not in (1, 2):
            raise ValueError(f"model.clip_skip must be 1 or 2, got {self.clip_skip!r}")


@dataclass(frozen=True)
class NetworkConfig:
    """What trains: a LoRA beside the frozen model, or the model's own weights (full fine-tune)."""

    type: NetworkType = "lora"
    rank: int = 16
    alpha: float = 8.0  # scale = alpha / rank
    conv_rank: int = 0  # > 0 also puts LoRA on the 3x3 convolutions of resnets / up- / downsamplers (LoCon)
    conv_alpha: float = 1.0
    dropout: float = 0.0  # on the LoRA's down projection output, training only
    train_unet: bool = True
    train_text_encoder: bool = False  # SD1.5's encoder, or both SDXL encoders (see train_te2)
    train_te2: bool = True  # SDXL: with train_text_encoder, also train OpenCLIP-G
    init_weights: str = ""  # LoRA .safetensors to continue from (its rank / alpha per module are kept)

    def __post_init__(self):
        _choice("network.type", self.type, NetworkType)
        _positive_int("network.rank", self.rank)
        _non_negative_int("network.conv_rank", self.conv_rank)
        for key in ("alpha", "conv_alpha"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"network.{key} must be a number > 0, got {value!r}")
        _probability("network.dropout", self.dropout)
        if not self.train_unet and not self.train_text_encoder:
            raise ValueError("nothing to train: network.train_unet and network.train_text_encoder are both false")
        if self.type == "full":
            if self.init_weights:
                raise ValueError(
                    "network.init_weights continues a LoRA; a full fine-tune continues from a checkpoint: set model.checkpoint"
                )
            if self.dropout or self.conv_rank:
                raise ValueError("network.dropout and network.conv_rank apply to LoRA only; remove them for network.type = 'full'")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


@dataclass(frozen=True)
class ObjectiveConfig:
    """Noise, timesteps and the loss weighting (loss is always taken in the model's target space)."""

    noise_offset: float = 0.0  # noise += offset * randn(B, C, 1, 1)
    adaptive_noise_scale: float = 0.0  # offset += scale * |channel mean of the latent| (needs noise_offset)
    multires_iterations: int = 0  # pyramid noise levels; 0 = off
    multires_discount: float = 0.3
    min_snr_gamma: float = 0.0  # 0 = off; 5 is the paper's value
    debiased_estimation: bool = False
    scale_v_pred_loss_like_noise_pred: bool = False  # v-pred: weight by SNR / (SNR + 1), as an eps loss would be
    zero_terminal_snr: bool = False  # rescale the betas so the last timestep is pure noise (v-prediction models)
    timestep_min: int = 0
    timestep_max: int = 1000  # exclusive

    def __post_init__(self):
        for key in ("noise_offset", "adaptive_noise_scale", "min_snr_gamma"):
            _non_negative(f"objective.{key}", getattr(self, key))
        _non_negative_int("objective.multires_iterations", self.multires_iterations)
        if isinstance(self.multires_discount, bool) or not 0.0 < self.multires_discount <= 1.0:
            raise ValueError(f"objective.multires_discount must be in (0, 1], got {self.multires_discount!r}")
        _non_negative_int("objective.timestep_min", self.timestep_min)
        _positive_int("objective.timestep_max", self.timestep_max)
        if not self.timestep_min < self.timestep_max:
            raise ValueError(
                f"objective.timestep_min ({self.timestep_min}) must be below objective.timestep_max ({self.timestep_max}, exclusive)"
            )
        if self.adaptive_noise_scale and not self.noise_offset:
            raise ValueError("objective.adaptive_noise_scale adds to the noise offset: set objective.noise_offset too (kohya's rule)")
        if self.min_snr_gamma and self.debiased_estimation:
            raise ValueError("objective.min_snr_gamma and objective.debiased_estimation are two loss weightings; choose one")


@dataclass(frozen=True)
class OptimizerConfig:
    type: OptimizerType = "adamw"
    lr: float = 1e-4  # UNet
    lr_te1: float | None = None  # text encoder (SDXL: CLIP-L); unset: same as lr
    lr_te2: float | None = None  # SDXL OpenCLIP-G; unset: same as lr_te1
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    max_grad_norm: float = 1.0  # 0 = no clipping
    args: dict = field(default_factory=dict)  # extra keyword arguments for the optimizer's constructor

    def __post_init__(self):
        _choice("optimizer.type", self.type, OptimizerType)
        _non_negative("optimizer.lr", self.lr)
        for key in ("lr_te1", "lr_te2"):
            if getattr(self, key) is not None:
                _non_negative(f"optimizer.{key}", getattr(self, key))
        _non_negative("optimizer.weight_decay", self.weight_decay)
        _non_negative("optimizer.max_grad_norm", self.max_grad_norm)
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"optimizer.betas must be two numbers in [0, 1), got {self.betas!r}")
        if not self.eps > 0:
            raise ValueError(f"optimizer.eps must be > 0, got {self.eps!r}")
        for key, value in self.args.items():
            if not isinstance(value, (bool, int, float, str)) and not (
                isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value)
            ):
                raise ValueError(f"optimizer.args.{key} must be a number, string, boolean or list of numbers, got {value!r}")

    @property
    def te1_lr(self) -> float:
        return self.lr if self.lr_te1 is None else self.lr_te1

    @property
    def te2_lr(self) -> float:
        return self.te1_lr if self.lr_te2 is None else self.lr_te2


@dataclass(frozen=True)
class ScheduleConfig:
    """How long to train and the learning-rate curve (diffusers' schedules)."""

    name: SchedulerName = "constant_with_warmup"
    warmup_steps: int = 0
    max_steps: int = 0  # optimizer steps; 0: use epochs
    epochs: int = 0
    accumulation_steps: int = 1
    num_cycles: int = 1  # cosine_with_restarts
    power: float = 1.0  # polynomial

    def __post_init__(self):
        _choice("schedule.name", self.name, SchedulerName)
        for key in ("warmup_steps", "max_steps", "epochs"):
            _non_negative_int(f"schedule.{key}", getattr(self, key))
        _positive_int("schedule.accumulation_steps", self.accumulation_steps)
        _positive_int("schedule.num_cycles", self.num_cycles)
        if bool(self.max_steps) == bool(self.epochs):
            raise ValueError("set exactly one of schedule.max_steps and schedule.epochs")


@dataclass(frozen=True)
class PrecisionConfig:
    mixed: MixedPrecision = "no"  # autocast dtype; fp16 also scales the loss
    full_bf16: bool = False  # keep the trained weights themselves in bf16 (kohya --full_bf16); needs mixed = "bf16"
    gradient_checkpointing: bool = False
    vae_dtype: VaeDtype = "float32"  # SDXL's VAE gives NaN in float16
    allow_tf32: bool = True  # CUDA matmuls in TF32 where the GPU has it
    fused_backward: bool = False  # full fine-tune: update each weight as its gradient is ready, then free it (kohya --fused_backward_pass)

    def __post_init__(self):
        _choice("precision.mixed", self.mixed, MixedPrecision)
        _choice("precision.vae_dtype", self.vae_dtype, VaeDtype)
        if self.full_bf16 and self.mixed != "bf16":
            raise ValueError(f"precision.full_bf16 needs precision.mixed = 'bf16', got {self.mixed!r}")


@dataclass(frozen=True)
class CacheConfig:
    latents: LatentCache = "none"
    latents_dir: str = ""  # for latents = "disk"; default <save.output_dir>/latent_cache
    text_encoder_outputs: bool = False  # precompute encoder outputs (frozen encoders only)
    text_variants: int = 4  # shuffled / dropped caption variants cached per image when captions are randomised
    vae_batch_size: int = 1  # images per VAE call while caching latents (more is faster, needs more memory)

    def __post_init__(self):
        _choice("cache.latents", self.latents, LatentCache)
        _positive_int("cache.text_variants", self.text_variants)
        _positive_int("cache.vae_batch_size", self.vae_batch_size)
        if self.latents_dir and self.latents != "disk":
            raise ValueError("cache.latents_dir is only used with cache.latents = 'disk'")


@dataclass(frozen=True)
class EmaConfig:
    enabled: bool = False
    decay: float = 0.9999
    update_after_step: int = 0

    def __post_init__(self):
        if isinstance(self.decay, bool) or not 0.0 < self.decay < 1.0:
            raise ValueError(f"ema.decay must be in (0, 1), got {self.decay!r}")
        _non_negative_int("ema.update_after_step", self.update_after_step)


@dataclass(frozen=True)
class SaveConfig:
    output_dir: str = ""  # where the model files go
    name: str = "animekit"  # file name stem: <name>.safetensors, <name>-step00000100.safetensors
    work_dir: str = ""  # resume states, log.csv, tensorboard/, samples/, latent_cache/; default: output_dir
    every_n_steps: int = 0
    every_n_epochs: int = 0
    keep_last: int = 0  # periodic saves (and resume states) kept; 0 = all
    save_state: bool = True  # write a resume folder state-<step>/ with each periodic and the final save (a stop always writes one)
    precision: SavePrecision = "fp16"

    def __post_init__(self):
        if not self.output_dir:
            raise ValueError("save.output_dir is required: the folder the trained files go to")
        if not self.name or any(c in self.name for c in "/\\") or self.name in (".", ".."):
            raise ValueError(f"save.name must be a plain file name stem, got {self.name!r}")
        for key in ("every_n_steps", "every_n_epochs", "keep_last"):
            _non_negative_int(f"save.{key}", getattr(self, key))
        _choice("save.precision", self.precision, SavePrecision)


@dataclass(frozen=True)
class SampleConfig:
    """Sample images every N steps; the host (CLI or ComfyUI) renders them through Hooks.on_sample."""

    every_n_steps: int = 0
    prompts: tuple[str, ...] = ()
    negative_prompt: str = ""
    width: int = 0  # 0: the model's native size (512 SD1.5, 1024 SDXL)
    height: int = 0
    steps: int = 20
    cfg_scale: float = 7.0
    seed: int = 0

    def __post_init__(self):
        for key in ("every_n_steps", "width", "height", "seed"):
            _non_negative_int(f"sample.{key}", getattr(self, key))
        _positive_int("sample.steps", self.steps)
        if self.every_n_steps and not self.prompts:
            raise ValueError("sample.every_n_steps is set but sample.prompts is empty")
        for key in ("width", "height"):
            if getattr(self, key) % 8:
                raise ValueError(f"sample.{key} must be a multiple of 8, got {getattr(self, key)}")


@dataclass(frozen=True)
class LogConfig:
    every_n_steps: int = 1
    tensorboard: bool = True  # also write TensorBoard events when the tensorboard package is installed

    def __post_init__(self):
        _positive_int("logging.every_n_steps", self.every_n_steps)


@dataclass(frozen=True)
class ValidationConfig:
    """Held-out images scored with fixed timesteps and noise every N steps (see validation.py)."""

    split: float = 0.0  # share of the images held out of training; 0 = no validation
    every_n_steps: int = 0
    timesteps: tuple[int, ...] = (100, 300, 500, 700, 900)
    seed: int = 0  # which images are held out, and their noise

    def __post_init__(self):
        if isinstance(self.split, bool) or not isinstance(self.split, (int, float)) or not 0.0 <= self.split <= 0.5:
            raise ValueError(f"validation.split must be a number in [0, 0.5], got {self.split!r}")
        _non_negative_int("validation.every_n_steps", self.every_n_steps)
        _non_negative_int("validation.seed", self.seed)
        if bool(self.split) != bool(self.every_n_steps):
            raise ValueError("validation.split and validation.every_n_steps go together: set both (or neither)")
        if not self.timesteps or not all(isinstance(t, int) and 0 <= t < 1000 for t in self.timesteps):
            raise ValueError(f"validation.timesteps must be integers in [0, 1000), got {list(self.timesteps)!r}")


# Keys that may change between a run and its resume; any other change breaks exact resume.
RESUMABLE_CHANGES = (
    "schedule.max_steps", "schedule.epochs", "save.", "sample.", "logging.", "cache.vae_batch_size", "cache.latents_dir",
    "validation.every_n_steps",
)  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig
    dataset: DatasetConfig
    save: SaveConfig
    network: NetworkConfig = NetworkConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig(max_steps=1000)
    precision: PrecisionConfig = PrecisionConfig()
    cache: CacheConfig = CacheConfig()
    ema: EmaConfig = EmaConfig()
    sample: SampleConfig = SampleConfig()
    logging: LogConfig = LogConfig()
    validation: ValidationConfig = ValidationConfig()
    seed: int = 42

    def __post_init__(self):
        _non_negative_int("seed", self.seed)
        if self.cache.text_encoder_outputs and self.network.train_text_encoder:
            raise ValueError(
                "cache.text_encoder_outputs caches the outputs of frozen text encoders, but "
                "network.train_text_encoder is true; turn one of them off"
            )
        if self.cache.latents != "none" and self.dataset.random_crop:
            raise ValueError(
                "cache.latents with dataset.random_crop would freeze one crop per image; "
                "turn off random_crop or set cache.latents = 'none'"
            )
        if self.precision.fused_backward:
            if self.network.type != "full":
                raise ValueError("precision.fused_backward applies to full fine-tunes (network.type = 'full'): a LoRA's gradients are small")
            if self.schedule.accumulation_steps != 1:
                raise ValueError("precision.fused_backward updates during the backward pass: set schedule.accumulation_steps = 1")
            if self.precision.mixed == "fp16":
                raise ValueError("precision.fused_backward cannot unscale fp16 gradients first: use precision.mixed = 'bf16'")
            if self.optimizer.type == "prodigy":
                raise ValueError("precision.fused_backward steps one weight at a time, which Prodigy's global estimate does not allow")
        if self.precision.full_bf16 and self.ema.enabled:
            raise ValueError("ema needs float32 weights to average; turn off precision.full_bf16 or ema.enabled")

    def to_dict(self) -> dict:
        """Plain JSON-able settings (tuples as lists), for metadata and resume checks."""
        return _plain(dataclasses.asdict(self))

    def changed_keys(self, other: "TrainConfig | dict") -> list[str]:
        """Dotted keys whose values differ between this and `other` (a TrainConfig or its to_dict())."""
        mine = _flatten(self.to_dict())
        theirs = _flatten(other.to_dict() if isinstance(other, TrainConfig) else other)
        return sorted(k for k in mine.keys() | theirs.keys() if mine.get(k, _MISSING) != theirs.get(k, _MISSING))


_MISSING = object()


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
