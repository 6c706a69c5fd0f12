"""The trainer's CLIP tokenizers for single-file checkpoints give ComfyUI's own token ids (host tier).

ComfyUI's prompt syntax (weights, escaped brackets) is compared with the caption text it stands
for: `(red eyes:0.8)` is the caption `red eyes`, `\\(vocaloid\\)` is `(vocaloid)`. Prompts of up to
75 tokens must give the same 77-id chunks (start, tokens, end, padding: the end token for CLIP-L,
id 0 for SDXL's CLIP-G); longer ones the same token stream (kohya cuts chunks at exactly 75 tokens,
ComfyUI moves a whole word to the next chunk).
"""

from __future__ import annotations

import pytest

from animekit.training.adapters.clip_text import chunk_ids
from animekit.training.adapters.clip_vocab import clip_tokenizers, find_clip_vocab

pytestmark = pytest.mark.host

LONG = ", ".join(f"tag{i} long hair" for i in range(32))
PAIRS = [  # (ComfyUI prompt, the caption it means)
    ("1girl, solo, long hair, looking at viewer, smile", "1girl, solo, long hair, looking at viewer, smile"),
    ("(masterpiece:1.2), best quality, (red eyes:0.8), [blurry]", "masterpiece, best quality, red eyes, [blurry]"),
    ("hatsune miku \\(vocaloid\\), 1girl, \\(cosplay\\)", "hatsune miku (vocaloid), 1girl, (cosplay)"),
    ("café, naïve, 初音ミク, 😀, ＡＢＣ, Straße", "café, naïve, 初音ミク, 😀, ＡＢＣ, Straße"),
    ("score_9, rating:safe, :d, ^_^, x-ray, 1.5", "score_9, rating:safe, :d, ^_^, x-ray, 1.5"),
    ("", ""),
    (LONG, LONG),
]


def comfy_chunks(tokenizer_output) -> list[list[int]]:
    return [[token for token, *_ in chunk] for chunk in tokenizer_output]


def stream(chunks, specials) -> list[int]:
    return [t for chunk in chunks for t in chunk if t not in specials]


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
@pytest.mark.parametrize("prompt, caption", PAIRS, ids=range(len(PAIRS)))
def test_token_ids_equal_comfyui(comfy_host, arch, prompt, caption):
    import comfy.sd1_clip
    import comfy.sdxl_clip

    vocab = find_clip_vocab()
    ours = clip_tokenizers(arch, vocab)
    if arch == "sd15":
        theirs = {"l": comfy.sd1_clip.SD1Tokenizer().tokenize_with_weights(prompt)["l"]}
    else:
        theirs = comfy.sdxl_clip.SDXLTokenizer().tokenize_with_weights(prompt)
    for tokenizer, key in zip(ours, ("l", "g")):
        mine = chunk_ids(tokenizer, [caption], 225)[0].tolist()
        comfy_ids = comfy_chunks(theirs[key])
        specials = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
        content = stream(comfy_ids, specials)
        assert stream(mine, specials) == content
        if len(content) <= 75:
            assert mine[0] == comfy_ids[0]  # the whole 77-id chunk, padding included
        assert tokenizer.pad_token_id == (49407 if key == "l" else 0)
    if prompt == LONG:
        assert len(content) > 150


def test_vocabulary_is_the_real_clip_bpe(comfy_host):
    (tokenizer,) = clip_tokenizers("sd15", find_clip_vocab())
    assert len(tokenizer) == 49408
    assert tokenizer("1girl, solo", add_special_tokens=False).input_ids == [272, 1611, 267, 5797]
