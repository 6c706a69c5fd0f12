"""Danbooru tag text -> ComfyUI prompt text.

Danbooru names use underscores and bare parentheses (`ganyu_(genshin_impact)`); ComfyUI reads
`(x)` and `(x:w)` as weights and only `\\(`/`\\)` as escapes, and A1111's `[x]` (x / 1.1) means
nothing to it. These rules turn any tag string into prompt text ComfyUI reads as the user meant,
without touching weight syntax, escapes already made, or `{a|b}` dynamic prompts (the frontend
resolves those at queue time).
"""

from __future__ import annotations

import re

# Tags whose underscores are part of the vocabulary a model was trained on.
PROTECTED_PREFIXES = ("score_", "source_", "rating_")
_WEIGHT = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$")
_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {v: k for k, v in _OPEN.items()}
A1111_DEEMPHASIS = 1.1


def is_emoticon(tag: str) -> bool:
    """`^_^`, `>_<`, `o_o`, `(o)_(o)`: short pieces around underscores that are faces, not words."""
    text = tag.strip().replace("\\(", "(").replace("\\)", ")")
    if not text or " " in text or "_" not in text:
        return False
    parts = text.split("_")
    if any(len(part) > 3 for part in parts) or not all(parts):
        return False
    return all(len(part) == 1 for part in parts) or any(not part.isalnum() for part in parts)


def is_protected(tag: str) -> bool:
    """Keep underscores: Pony's `score_*`, `source_*`, `rating_*` and emoticons."""
    text = tag.strip()
    return text.lower().startswith(PROTECTED_PREFIXES) or is_emoticon(text)


def _bracket_pairs(text: str) -> dict[int, int]:
    """Matching bracket positions (open -> close), skipping `\\x` escapes; unmatched ones are literal."""
    pairs: dict[int, int] = {}
    stack: list[tuple[str, int]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch in _OPEN:
            stack.append((ch, i))
        elif ch in _CLOSE:
            for depth in range(len(stack) - 1, -1, -1):
                if stack[depth][0] == _CLOSE[ch]:
                    pairs[stack[depth][1]] = i
                    del stack[depth:]
                    break
        i += 1
    return pairs


def _top_level_positions(text: str, wanted: str) -> list[int]:
    """Indexes of characters in `wanted` that sit outside every matched bracket pair."""
    pairs = _bracket_pairs(text)
    found: list[int] = []
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if i in pairs:
            i = pairs[i] + 1
            continue
        if text[i] in wanted:
            found.append(i)
        i += 1
    return found


def split_tags(text: str) -> list[str]:
    """Split on commas and newlines outside brackets: `(red hair, blue eyes:1.2)` stays one piece."""
    cuts = _top_level_positions(text, ",\n")
    pieces, start = [], 0
    for cut in cuts + [len(text)]:
        pieces.append(text[start:cut].strip())
        start = cut + 1
    return [piece for piece in pieces if piece]


def _format_weight(weight: float) -> str:
    return f"{weight:.3f}".rstrip("0").rstrip(".")


def _convert_text(text: str) -> str:
    """Plain text between brackets: underscores to spaces (unless protected), stray parentheses
    escaped. Escapes stay as written (an A1111 `\\[` too: unescaped, a second pass would read it
    as a de-emphasis)."""
    if not is_protected(text):
        text = text.replace("_", " ")
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i : i + 2])
            i += 2
            continue
        out.append("\\" + ch if ch in "()" else ch)
        i += 1
    return re.sub(r"\s+", " ", "".join(out))


def _split_weight(inner: str) -> tuple[str, str | None]:
    """`smile:1.2` -> (`smile`, `1.2`); anything else has no weight."""
    colons = _top_level_positions(inner, ":")
    if colons:
        value = inner[colons[-1] + 1 :].strip()
        if _WEIGHT.match(value):
            return inner[: colons[-1]], value
    return inner, None


def _render_list(text: str, weight: float) -> str:
    return ", ".join(_render_tag(piece, weight) for piece in split_tags(text))


def _render_tag(tag: str, weight: float) -> str:
    """One tag (no top-level comma) rendered for ComfyUI, `weight` being the weight in effect."""
    tag = tag.strip()
    if is_emoticon(tag):
        return _convert_text(tag)
    pairs = _bracket_pairs(tag)
    out: list[str] = []
    i = start = 0

    def flush(end: int) -> None:
        if end > start:
            out.append(_convert_text(tag[start:end]))

    while i < len(tag):
        if tag[i] == "\\":
            i += 2
            continue
        if i not in pairs:
            i += 1
            continue
        close = pairs[i]
        flush(i)
        inner = tag[i + 1 : close]
        opener = tag[i]
        if opener == "{":
            out.append(tag[i : close + 1])
        elif opener == "(":
            content, value = _split_weight(inner)
            if value is None and "".join(out).strip():
                # A qualifier inside a name, as in `ganyu (genshin impact)`: literal text.
                out.append("\\(" + _render_tag(inner, weight) + "\\)")
            elif value is None:
                out.append("(" + _render_list(content, weight * A1111_DEEMPHASIS) + ")")
            else:
                out.append("(" + _render_list(content, float(value)) + ":" + value + ")")
        else:
            out.append(_render_brackets(tag[i : close + 1], weight))
        i = start = close + 1
    flush(len(tag))
    return re.sub(r" {2,}", " ", "".join(out)).strip()


def _render_brackets(group: str, weight: float) -> str:
    """A1111 `[x]` -> ComfyUI `(x:w)` with w = weight / 1.1 per bracket level. Prompt editing
    (`[a:b:0.5]`) and alternation (`[a|b]`) have no ComfyUI form and are kept as written."""
    depth, inner = 0, group
    while inner.startswith("[") and _bracket_pairs(inner).get(0) == len(inner) - 1:
        depth += 1
        inner = inner[1:-1].strip()
    if _top_level_positions(inner, "|") or _split_weight(inner)[1] is not None:
        return group
    new_weight = weight / A1111_DEEMPHASIS**depth
    return "(" + _render_list(inner, new_weight) + ":" + _format_weight(new_weight) + ")"


def normalize_tag(tag: str) -> str:
    """One tag in ComfyUI form: `ganyu_(genshin_impact)` -> `ganyu \\(genshin impact\\)`."""
    return _render_list(tag, 1.0)


def literal_tag(name: str) -> str:
    """A tag name from a tag list, taken literally, in ComfyUI form: `ganyu_(genshin_impact)` ->
    `ganyu \\(genshin impact\\)`. Unlike normalize_tag, no bracket is read as weight syntax."""
    return _convert_text(name.strip())


def tag_key(tag: str) -> str:
    """Identity for deduplicating and looking up: case, `_`/space and escapes don't matter."""
    text = tag.replace("\\(", "(").replace("\\)", ")").replace("_", " ").lower()
    return re.sub(r"\s+", " ", text).strip()


def dedupe(tags: list[str]) -> list[str]:
    """First occurrence wins."""
    seen: set[str] = set()
    kept = []
    for tag in tags:
        key = tag_key(tag)
        if key not in seen:
            seen.add(key)
            kept.append(tag)
    return kept


def normalize_tags(text: str) -> list[str]:
    """A tag string -> normalised, deduplicated tags in their original order."""
    return dedupe([normalize_tag(piece) for piece in split_tags(text)])


def join_tags(tags: list[str]) -> str:
    return ", ".join(tag for tag in tags if tag)


def format_tags(text: str) -> str:
    return join_tags(normalize_tags(text))


def bare_name(tag: str) -> str:
    """The tag name under weight syntax, unescaped: `(ganyu \\(genshin impact\\):1.2)` ->
    `ganyu (genshin impact)`. Used to look a tag's category up."""
    text = tag.strip()
    while text.startswith(("(", "[")) and _bracket_pairs(text).get(0) == len(text) - 1:
        inner = text[1:-1]
        if text[0] == "(":
            inner, _ = _split_weight(inner)
        text = inner.strip()
    return text.replace("\\(", "(").replace("\\)", ")")


def is_plain(tag: str) -> bool:
    """True when a tag carries no weight syntax (so it may be replaced by its canonical name)."""
    return bare_name(tag) == tag.replace("\\(", "(").replace("\\)", ")").strip()
