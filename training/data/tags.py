"""Splitting and joining Danbooru-tag captions, shared by the caption pipeline and tag statistics."""

from __future__ import annotations


def split_tags(text: str, separator: str = ",") -> list[str]:
    """Tags between separators, whitespace stripped, empty pieces (`a,,b`, a trailing comma) dropped."""
    if not separator:
        raise ValueError("caption_separator must not be empty")
    return [tag.strip() for tag in text.split(separator) if tag.strip()]


def joiner(separator: str = ",") -> str:
    """What tags are re-joined with: the separator followed by one space, as kohya writes `, `
    (`;` gives `; `); a whitespace-only separator such as a newline is used as it is."""
    mark = separator.strip()
    return f"{mark} " if mark else separator


def join_tags(tags: list[str], separator: str = ",") -> str:
    return joiner(separator).join(tags)
