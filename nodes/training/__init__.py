"""The trainer's ComfyUI nodes (dataset, train LoRA, train checkpoint) and their ComfyUI adapters."""
