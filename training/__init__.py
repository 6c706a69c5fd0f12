"""LoRA and full fine-tune trainer for SD1.5 / SDXL, driven by small model protocols. No ComfyUI."""
