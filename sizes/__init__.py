"""Image sizes: the sizes each family was trained at (resolution sets), kohya's bucket rule and the
nearest bucket. Pure Python: no ComfyUI, no torch."""
