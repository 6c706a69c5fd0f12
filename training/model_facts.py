"""What `model.path` holds, read from safetensors headers alone (no tensor, no torch).

`model.path` is either a single-file checkpoint (`.safetensors`, A1111 / ComfyUI layout, any float
dtype) or a local diffusers folder. Both tell the architecture (from key names and shapes:
checkpoints.detect), the prediction type (v-prediction files such as NoobAI's carry a `v_pred`
marker key, zero-terminal-SNR ones also `ztsnr`, as ComfyUI reads them; a folder's scheduler config
says it), and the parameter count of each part, which the memory plan needs. `animekit train
--check` prints this; loading uses it to pick the converter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..checkpoints.detect import detect_architecture
from ..checkpoints.keys import TEXT_ENCODER_PREFIXES, UNET_PREFIX, VAE_PREFIX
from ..files.safetensors_header import read_safetensors_header
from .config import ModelConfig

V_PRED_KEY = "v_pred"  # ComfyUI / NoobAI marker: the UNet predicts velocity
ZTSNR_KEY = "ztsnr"  # marker: trained with zero terminal SNR
EDM_KEYS = ("edm_vpred.sigma_max", "edm_mean")
DIFFUSERS_PARTS = {"unet": "unet", "te1": "text_encoder", "te2": "text_encoder_2", "vae": "vae"}


@dataclass(frozen=True)
class ModelFacts:
    path: str
    kind: str  # "single-file" | "diffusers"
    arch: str  # "sd15" | "sdxl"
    prediction: str  # what the model says: "epsilon" | "v_prediction"
    prediction_source: str  # why: "v_pred key", "modelspec metadata", "scheduler config", "no marker"
    zero_terminal_snr: bool  # the file is marked `ztsnr`
    dtype: str  # the UNet weights' dtype code in the file ("F16", "BF16", "F32")
    params: dict = field(default_factory=dict)  # part ("unet", "te1", ["te2",] "vae") -> parameter count

    def describe(self) -> str:
        counts = ", ".join(f"{part} {count / 1e6:.0f}M" for part, count in self.params.items())
        ztsnr = ", zero terminal SNR" if self.zero_terminal_snr else ""
        label = {"sd15": "SD1.5", "sdxl": "SDXL"}[self.arch]
        return (
            f"{label} {self.kind} ({self.dtype}), {self.prediction} ({self.prediction_source}){ztsnr}; parameters: {counts}"
        )


def is_single_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".safetensors" or Path(path).is_file()


def inspect_model(cfg: ModelConfig) -> ModelFacts:
    """Facts about `cfg.path`; FileNotFoundError / ValueError naming model.path and what was expected."""
    if not cfg.path:
        raise ValueError("model.path is required: a single-file .safetensors checkpoint or a local diffusers model folder")
    path = Path(cfg.path)
    if not path.exists():
        raise FileNotFoundError(
            f"model.path {str(path)!r} does not exist; expected an SD1.5 / SDXL single-file .safetensors checkpoint "
            "or a diffusers model folder"
        )
    facts = _inspect_file(path) if path.is_file() else _inspect_folder(path)
    if cfg.arch != "auto" and cfg.arch != facts.arch:
        raise ValueError(f"model.arch = {cfg.arch!r} but model.path {str(path)!r} holds an {facts.arch} model")
    return facts


def _inspect_file(path: Path) -> ModelFacts:
    label = f"model.path {path.name!r}"
    if path.suffix.lower() != ".safetensors":
        raise ValueError(
            f"{label} must be a .safetensors checkpoint or a diffusers folder (pickled .ckpt / .pt files are not loaded)"
        )
    header = read_safetensors_header(path, label=label)
    shapes = {key: info.shape for key, info in header.tensors.items()}
    arch = detect_architecture(shapes, name=label).name
    keys = header.tensors.keys()
    if any(k in keys for k in EDM_KEYS):
        raise ValueError(f"{label} is an EDM-schedule model (Playground v2.5 / EDM v-prediction); not supported for training")
    meta_prediction = header.metadata.get("modelspec.prediction_type", "").lower()
    if V_PRED_KEY in keys:
        prediction, source = "v_prediction", "v_pred key"
    elif meta_prediction in ("v", "v_prediction", "v-prediction"):
        prediction, source = "v_prediction", "modelspec metadata"
    else:
        prediction, source = "epsilon", "no v-prediction marker"
    prefixes = {"unet": UNET_PREFIX, **TEXT_ENCODER_PREFIXES[arch], "vae": VAE_PREFIX}
    params = {
        part: sum(i.numel for k, i in header.tensors.items() if k.startswith(p) and i.is_float) for part, p in prefixes.items()
    }
    unet_dtypes = [i.dtype for k, i in header.tensors.items() if k.startswith(UNET_PREFIX) and i.is_float]
    dtype = max(set(unet_dtypes), key=unet_dtypes.count)
    return ModelFacts(str(path), "single-file", arch, prediction, source, ZTSNR_KEY in keys, dtype, params)


def _inspect_folder(folder: Path) -> ModelFacts:
    label = f"model.path {str(folder)!r}"
    if not (folder / "unet").is_dir():
        raise FileNotFoundError(
            f"{label} is a folder but not a diffusers model (no unet/); expected unet/, text_encoder/, tokenizer/, vae/ "
            "(+ text_encoder_2/, tokenizer_2/ for SDXL), or give a single-file .safetensors checkpoint"
        )
    arch = "sdxl" if (folder / "text_encoder_2").is_dir() else "sd15"
    params, dtype = {}, "F32"
    for part, sub in DIFFUSERS_PARTS.items():
        if part == "te2" and arch != "sdxl":
            continue
        files = sorted((folder / sub).glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"{label}: {sub}/ holds no .safetensors weights (pickled .bin weights are not loaded)")
        infos = [i for f in files for i in read_safetensors_header(f, label=f"{label} {sub}").tensors.values()]
        params[part] = sum(i.numel for i in infos)
        if part == "unet":
            codes = [i.dtype for i in infos if i.is_float]
            dtype = max(set(codes), key=codes.count)
    scheduler = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(scheduler.read_text(encoding="utf-8")) if scheduler.is_file() else {}
    prediction = config.get("prediction_type", "epsilon")
    source = "scheduler config" if "prediction_type" in config else "no scheduler config"
    ztsnr = bool(config.get("rescale_betas_zero_snr", False))
    return ModelFacts(str(folder), "diffusers", arch, prediction, source, ztsnr, dtype, params)
