"""The trainer nodes' inputs: a public API (workflows bind to them), never renamed or reordered.

Both trainer nodes share one input list; the LoRA node adds the network's rank inputs. Defaults
follow the seed cards: Animagine XL 3.0's stage-2 learning rate and noise offset 0.0357 for SDXL,
AnimeDiffusion's noise offset 0.05 for SD1.5 (noise_offset -1 picks per model), min-SNR 5.
The choice lists are the config's own (training/options.py); every rule is checked once, by the
trainer's config, whose errors training/flat_settings.py rewords with these inputs' names.
"""

from __future__ import annotations

from dataclasses import dataclass

from comfy_api.latest import io

from ...training.config import NetworkConfig
from ...training.options import AUTO_NOISE_OFFSET, LATENT_CACHES, LR_SCHEDULERS, MIXED_PRECISIONS, OPTIMIZERS

DatasetType = io.Custom("ANIMEKIT_DATASET")


@dataclass(frozen=True)
class Defaults:
    filename: str
    unet_lr: float
    text_encoder_lr: float
    optimizer: str
    target: str  # where the file goes, for tooltips


LORA = Defaults("animekit_lora", 1e-4, 5e-5, "adamw", "models/loras")
CHECKPOINT = Defaults("animekit_checkpoint", 2e-6, 1e-6, "adafactor", "output/checkpoints")


def lr_input(name: str, default: float, tooltip: str) -> io.Float.Input:
    return io.Float.Input(name, default=default, min=0.0, max=1.0, step=1e-7, round=1e-9, tooltip=tooltip)


def head_inputs(defaults: Defaults, lora: bool) -> list:
    """Sockets, file name and the schedule (inputs 1-11 of both nodes)."""
    te_tooltip = (
        "Also train the text encoder(s) (SD1.5's CLIP-L; SDXL's CLIP-L and CLIP-G) with their own learning rate. "
        + ("Off for most character / style LoRAs." if lora else "Animagine XL 3.0 stage 1 trained them; stage 2 froze them.")
    )
    return [
        io.Model.Input("model", tooltip="The model to train (SD1.5 or SDXL family: Animagine, Pony, NoobAI, Illustrious ...). "
                       "Left unchanged: the trained one comes out of the `model` output."),
        io.Clip.Input("clip", tooltip="The model's CLIP. Its clip skip (CLIPSetLastLayer) is used while training, "
                      "so train with the same one you will prompt with."),
        io.Vae.Input("vae", tooltip="The VAE that encodes the training images into latents (and decodes sample images)."),
        DatasetType.Input("dataset", tooltip="Images and caption settings from an AnimeKit Dataset node."),
        io.String.Input("filename", default=defaults.filename,
                        tooltip=f"File name (no extension; subfolders allowed) in {defaults.target}. Resume states, log.csv "
                        "and the latent cache go to output/animekit_training/ under the same name."),
        io.Int.Input("steps", default=1000, min=1, max=1_000_000,
                     tooltip="Optimizer steps to train (each uses batch_size x gradient_accumulation images)."),
        io.Int.Input("batch_size", default=1, min=1, max=256,
                     tooltip="Images per forward pass (all from one aspect-ratio bucket). Memory grows with it."),
        io.Int.Input("gradient_accumulation", default=1, min=1, max=1024,
                     tooltip="Forward passes per optimizer step: the effective batch is batch_size x this, at batch_size's memory."),
        lr_input("unet_lr", defaults.unet_lr, "Learning rate of the UNet" + (" LoRA. kohya's usual 1e-4." if lora else
                 ". Animagine XL 3.0: 7.5e-6 (stage 1), 2e-6 (stage 2).")),
        io.Boolean.Input("train_text_encoder", default=False, tooltip=te_tooltip),
        lr_input("text_encoder_lr", defaults.text_encoder_lr, "Learning rate of the text encoder(s), used when "
                 "train_text_encoder is on" + (". Often half the UNet's." if lora else ". Animagine XL 3.0 stage 1: 3.75e-6.")),
    ]


def network_inputs() -> list:
    """The LoRA node's network shape (inputs 12-15)."""
    return [
        io.Int.Input("rank", default=NetworkConfig.rank, min=1, max=1024, tooltip="LoRA rank (network dim): capacity and file size."),
        io.Float.Input("alpha", default=NetworkConfig.alpha, min=0.01, max=1024.0, step=0.01,
                       tooltip="LoRA alpha: the update is scaled by alpha / rank (kohya's network_alpha)."),
        io.Int.Input("conv_rank", default=NetworkConfig.conv_rank, min=0, max=1024,
                     tooltip="Rank for the 3x3 convolutions of the ResNet / up / down blocks (LoCon); 0 = attention layers only."),
        io.Float.Input("conv_alpha", default=NetworkConfig.conv_alpha, min=0.01, max=1024.0, step=0.01, tooltip="Alpha of the convolution LoRA (conv_rank)."),
    ]


def tail_inputs(defaults: Defaults, lora: bool, continue_options: list[str]) -> list:
    """Objective, optimizer, precision, caching, saving, samples and resume (shared tail)."""
    continue_tooltip = (
        "Start from an existing LoRA's weights (same layers; its rank / alpha are kept) instead of a fresh one. "
        "none: a new LoRA." if lora else
        "none: fine-tune the model / clip inputs as they are (e.g. stage 1's outputs). Or a checkpoint whose UNet "
        "and text encoders replace them (`output/...` = this node's earlier results)."
    )
    return [
        io.Float.Input("noise_offset", default=-1.0, min=-1.0, max=1.0, step=0.0001,
                       tooltip="Noise offset (darker darks, brighter brights). -1 = auto: "
                       f"{AUTO_NOISE_OFFSET['sd15']} for SD1.5 (AnimeDiffusion), {AUTO_NOISE_OFFSET['sdxl']} for SDXL "
                       "(Animagine XL 3.0), 0 for zero-terminal-SNR v-prediction models."),
        io.Float.Input("min_snr_gamma", default=5.0, min=0.0, max=100.0, step=0.1,
                       tooltip="Min-SNR-gamma loss weighting (5 is the paper's); 0 = off. The loss is always taken in the "
                       "model's own space (noise or velocity), not ComfyUI TrainLoraNode's x0 space."),
        io.Combo.Input("optimizer", options=list(OPTIMIZERS), default=defaults.optimizer,
                       tooltip="adamw (torch); adamw8bit (bitsandbytes, CUDA; less memory); adafactor (least memory, "
                       "kohya's choice for SDXL fine-tunes); prodigy (prodigyopt; set the learning rates to 1)."),
        io.Combo.Input("lr_scheduler", options=list(LR_SCHEDULERS), default="constant_with_warmup",
                       tooltip="Learning-rate curve over the steps (diffusers' schedules)."),
        io.Int.Input("warmup_steps", default=0, min=0, max=1_000_000, tooltip="Steps to ramp the learning rate up from 0."),
        io.Combo.Input("mixed_precision", options=list(MIXED_PRECISIONS), default="auto",
                       tooltip="Autocast dtype. auto: the dtype ComfyUI loaded the model in on a GPU (fp16 / bf16), "
                       "float32 (no) on the CPU. fp16 scales the loss; bf16 needs an Ampere or newer GPU."),
        io.Boolean.Input("gradient_checkpointing", default=True,
                         tooltip="Recompute activations in the backward pass: much less memory for ~30% more time."),
        io.Combo.Input("cache_latents", options=list(LATENT_CACHES), default="memory",
                       tooltip="Encode every image once before training: memory (RAM), disk (in the run folder; reused by "
                       "later runs and resumes), none (encode each step; needed for random_crop)."),
        io.Boolean.Input("cache_text_encoder_outputs", default=False,
                         tooltip="Encode captions once (a few shuffled / dropped variants each, so caption shuffle and "
                         "dropout keep working) and move the text encoders off the GPU. Not with train_text_encoder."),
        io.Int.Input("training_seed", default=42, min=0, max=2**31 - 1,
                     tooltip="Seed of the LoRA initialisation, noise, timesteps and caption / crop draws: same seed, same run."),
        io.Int.Input("save_every_n_steps", default=0, min=0, max=1_000_000,
                     tooltip="Also save the model (<filename>-step00000100.safetensors beside the final file) and a "
                     "resume state every N steps; 0 = only at the end."),
        io.Int.Input("sample_every_n_steps", default=0, min=0, max=1_000_000,
                     tooltip="Render sample_prompts every N steps; they show on the node while it trains. 0 = no samples."),
        io.String.Input("sample_prompts", default="", multiline=True,
                        tooltip="One prompt per line for the sample images (at the dataset's resolution)."),
        io.String.Input("sample_negative", default="", multiline=True, tooltip="Negative prompt for the sample images."),
        io.Int.Input("sample_steps", default=20, min=1, max=200, tooltip="Sampling steps per sample image (DPM++ 2M Karras)."),
        io.Float.Input("sample_cfg", default=7.0, min=0.0, max=30.0, step=0.1, tooltip="CFG scale of the sample images."),
        io.Boolean.Input("resume", default=False,
                         tooltip="Continue from the newest resume state saved under this filename (after Cancel or a "
                         "periodic save), exactly where it stopped; starts fresh when there is none. Off: a fresh run "
                         "(old states of this filename are removed)."),
        io.Combo.Input("continue_from", options=continue_options, default="none", tooltip=continue_tooltip),
    ]
