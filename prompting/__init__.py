"""Structured tag prompting: model-family profiles, tag text rules, tag categories, ordering and
prompt building. Pure Python: no ComfyUI, no torch."""
