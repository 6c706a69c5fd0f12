"""Model-family profiles: Danbooru tag order and vocabularies, prompt building, tag normalising,
aspect-ratio presets and kohya buckets. Pure Python: no ComfyUI, no torch."""
