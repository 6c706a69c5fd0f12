"""Cached text-encoder outputs: one encoding per distinct caption variant, and each step's drawn
caption mapped to the right cached variant (so shuffle and dropout still act)."""

from __future__ import annotations

import torch

from animekit.training.data.captions import CaptionConfig
from animekit.training.data.dataset import DatasetIndex, ImageRecord
from animekit.training.protocols import TextConditioning
from animekit.training.text_outputs import TextOutputCache


class CountingEncoder:
    """Encodes a caption as its length (hidden) and its tag count (pooled); records every call."""

    parts = ("te1",)

    def __init__(self):
        self.calls: list[list[str]] = []

    def encode(self, captions, device):
        self.calls.append(list(captions))
        hidden = torch.tensor([[[float(len(c))] * 3] * 2 for c in captions])
        pooled = torch.tensor([[float(len([t for t in c.split(",") if t.strip()]))] for c in captions])
        return TextConditioning(hidden, pooled)


def record(path: str, caption: str, captions: CaptionConfig) -> ImageRecord:
    return ImageRecord(path=path, caption=caption, repeats=1, width=64, height=64, folder="f", bucket=(64, 64), captions=captions)


def test_each_distinct_variant_is_encoded_once_and_lookups_pick_it():
    shuffle = CaptionConfig(shuffle_caption=True, caption_dropout_rate=0.5)
    plain = CaptionConfig()
    index = DatasetIndex([record("a.png", "1girl, red hair, smile", shuffle), record("b.png", "cat", plain)])
    encoder = CountingEncoder()
    cache = TextOutputCache(encoder, index, variants=4, seed=0, device=torch.device("cpu"), dtype=torch.float16)

    encoded = [c for call in encoder.calls for c in call]
    assert len(encoded) == len(set(encoded)) == len(cache)
    assert "" in cache.outputs and "cat" in cache.outputs
    a_variants = cache.variants["a.png"]
    assert a_variants[-1] == "" and len(a_variants) >= 3  # shuffled orders, then the dropped caption
    assert cache.variants["b.png"] == ["cat"]
    assert all(v.hidden_states.dtype == torch.float16 for v in cache.outputs.values())

    shuffled = a_variants[1]
    got = cache.lookup(["a.png", "b.png", "a.png"], [shuffled, "cat", ""], torch.device("cpu"))
    assert got.hidden_states.shape == (3, 2, 3) and got.pooled.shape == (3, 1)
    assert got.hidden_states[0, 0, 0].item() == len(shuffled)
    assert got.hidden_states[1, 0, 0].item() == 3.0
    assert got.hidden_states[2, 0, 0].item() == 0.0 and got.pooled[2, 0].item() == 0.0  # dropped caption -> ""
    # a draw that is no cached variant still maps to a non-empty variant of that image
    other = cache.lookup(["a.png"], ["smile, 1girl, red hair, extra"], torch.device("cpu"))
    assert other.pooled[0, 0].item() == 3.0
