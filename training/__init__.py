"""LoRA and full fine-tune trainer for SD1.5 / SDXL, driven by small model protocols. No ComfyUI.

Entry points (import the modules directly; this package imports nothing heavy):
- run.train(cfg, bundle=None, hooks=None, resume=None) -> hooks.TrainResult
- config.TrainConfig and one dataclass per concern; config_toml.load_config(path) reads a TOML file
- protocols.ModelBundle / Denoiser / TextEncoders / LatentEncoder: what a host provides
  (adapters/diffusers_models.py for diffusers folders; ComfyUI's MODEL / CLIP / VAE in the nodes)
- hooks.Hooks / Progress / TrainingDiverged: watching, cancelling and sampling from a run
- cli.py: `animekit train CONFIG.toml [--resume DIR]`
"""
