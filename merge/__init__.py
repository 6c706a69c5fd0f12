"""Block-weighted (MBW) UNet merging on state dicts and single-file checkpoints. No ComfyUI."""
