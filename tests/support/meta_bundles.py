"""ModelBundles over the real SD1.5 / SDXL architectures on the meta device: true parameter counts and
LoRA targets, no memory, no weights. For tests of what is planned from a model, not what it computes."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=None)
def meta_bundle(arch: str):
    from animekit.training.adapters.diffusers_models import make_bundle
    from animekit.training.adapters.reference_models import build_reference_models

    unet, texts, vae = build_reference_models(arch, "meta")
    return make_bundle(arch, unet, texts, [None] * len(texts), vae)
