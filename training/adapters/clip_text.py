"""CLIP text encoding the way SD1.5 / SDXL trainers and UIs do it: 75-token chunks.

A caption is tokenized without special tokens, cut at `max_token_length` (75, 150 or 225) and split
into 75-token chunks; each chunk becomes BOS + tokens + EOS + padding (77 ids) and is encoded on
its own, and the chunks' states are concatenated (A1111 / ComfyUI's convention). Every caption
gets the same number of chunks so a batch stacks. SDXL takes the penultimate layer of both
encoders (concatenated) and the pooled, projected embedding of the second's first chunk; SD1.5
takes the last layer, or the penultimate through the final norm with clip_skip = 2.
"""

from __future__ import annotations

import torch
from torch import nn

CHUNK = 75


def text_transformer(model: nn.Module) -> nn.Module:
    """The CLIP text transformer inside a transformers model (flattened or wrapped in `text_model`)."""
    return getattr(model, "text_model", model)


def chunk_ids(tokenizer, captions: list[str], max_token_length: int) -> torch.Tensor:
    """Token ids [B, n_chunks, 77] with BOS/EOS around each 75-token chunk and the tokenizer's padding."""
    chunks = max_token_length // CHUNK
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    rows = []
    for caption in captions:
        ids = tokenizer(caption, add_special_tokens=False, truncation=False).input_ids[:max_token_length]
        row = []
        for c in range(chunks):
            part = ids[c * CHUNK : (c + 1) * CHUNK]
            row.append([bos, *part, eos] + [pad] * (CHUNK - len(part)))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.long)


def encode_sd15(
    tokenizer, model: nn.Module, captions: list[str], max_token_length: int, clip_skip: int, device
) -> torch.Tensor:
    ids = chunk_ids(tokenizer, captions, max_token_length).to(device)
    batch, chunks, length = ids.shape
    out = model(ids.view(batch * chunks, length), output_hidden_states=True)
    if clip_skip == 1:
        hidden = out.last_hidden_state
    else:
        hidden = text_transformer(model).final_layer_norm(out.hidden_states[-clip_skip])
    return hidden.reshape(batch, chunks * length, -1)


def encode_sdxl(
    tokenizers, models, captions: list[str], max_token_length: int, device
) -> tuple[torch.Tensor, torch.Tensor]:
    states = []
    pooled = None
    for index, (tokenizer, model) in enumerate(zip(tokenizers, models)):
        ids = chunk_ids(tokenizer, captions, max_token_length).to(device)
        batch, chunks, length = ids.shape
        out = model(ids.view(batch * chunks, length), output_hidden_states=True)
        states.append(out.hidden_states[-2].reshape(batch, chunks * length, -1))
        if index == 1:
            pooled = out.text_embeds.view(batch, chunks, -1)[:, 0]
    return torch.cat(states, dim=-1), pooled
