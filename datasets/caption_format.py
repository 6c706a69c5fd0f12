"""Captions rewritten in a profile's training order, with kohya's keep-tokens separator.

Animagine XL 3.0 was trained on `1girl/1boy, character, series, everything else`, and with kohya's
`keep_tokens_separator` ("Shuffle Separator") so the fixed front stays in place while the rest is
shuffled. Here a caption's tags are sorted into the profile's slots (the same classifier as prompt
ordering: the profile's vocabulary, a user CSV, tipo-kgen's lists), the slots up to `series` are
written before ` ||| ` and the rest after it. With a post's metadata (metadata.py) the profile's
quality (from its score table), rating and year tags replace any such tags already there.

Captions stay plain text for training: no ComfyUI escapes. Nothing is written until asked; a
rewritten caption's original is kept as `<caption>.orig` (writing.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..prompting.categories import CategorySource, ProfileVocabulary
from ..prompting.ordering import order_tags
from ..prompting.profile import DEFAULT_PROFILE, Profile
from ..prompting.tagtext import dedupe, is_protected, tag_key
from ..training.data.tags import split_tags
from .images import caption_path, dataset_images
from .metadata import RATINGS, PostMetadata, read_metadata
from .writing import replace_caption

KEEP_TOKENS_SEPARATOR = "|||"
METADATA_SLOTS = ("quality", "rating", "year")


@dataclass(frozen=True)
class FormatConfig:
    profile: str = DEFAULT_PROFILE
    fixed_through: str = "series"  # the slots up to this one (in the profile's order) go before the separator
    separator: str = KEEP_TOKENS_SEPARATOR  # "" writes one plain tag list
    use_metadata: bool = True  # quality / rating / year tags from `<image>.json` when there is one
    caption_extension: str = ".txt"


def caption_tags(text: str, separator: str = KEEP_TOKENS_SEPARATOR) -> list[str]:
    """A caption's tags: separators dropped, underscores to spaces (not in emoticons or `score_*`-like
    tags), ComfyUI escapes undone, duplicates dropped."""
    if separator:
        text = text.replace(separator, ",")
    tags = []
    for tag in split_tags(text.replace("\n", ","), ","):
        tag = tag.replace("\\(", "(").replace("\\)", ")")
        tags.append(tag if is_protected(tag) else " ".join(tag.replace("_", " ").split()))
    return dedupe(tags)


def metadata_tags(meta: PostMetadata, profile: Profile) -> dict[str, list[str]]:
    """The profile's own tags for what the metadata says, per slot (only what the profile has)."""
    found: dict[str, list[str]] = {}
    if meta.score is not None and profile.quality_scores:
        found["quality"] = [profile.quality_for_score(meta.score)]
    rating = RATINGS.get(str(meta.rating).lower()) if meta.rating is not None else None
    if rating in profile.ratings:
        found["rating"] = list(profile.rating_tags(rating))
    if meta.year is not None and (profile.periods or profile.year_tags is not None):
        try:
            found["year"] = list(profile.year_tag(meta.year))
        except ValueError:
            pass  # a year outside what the model knows gets no year tag
    return found


def format_caption(text: str, profile: Profile, source: CategorySource | None, cfg: FormatConfig,
                   meta: PostMetadata | None = None) -> str:  # fmt: skip
    """One caption in the profile's training order: `fixed part ||| the rest`."""
    tags = caption_tags(text, cfg.separator or KEEP_TOKENS_SEPARATOR)
    added = metadata_tags(meta, profile) if meta is not None and cfg.use_metadata else {}
    if added:
        vocabulary = ProfileVocabulary(profile)  # a caption's own quality / rating / year tags give way
        tags = [tag for tag in tags if getattr(vocabulary.lookup(tag_key(tag)), "category", None) not in added]
        tags += [tag for slot in METADATA_SLOTS for tag in added.get(slot, [])]
    slots = order_tags(tags, profile, source)
    cut = profile.order.index(cfg.fixed_through) + 1
    fixed = _flat(slots, profile.order[:cut])
    fixed_keys = {tag_key(tag) for tag in fixed}
    rest = [tag for tag in _flat(slots, profile.order[cut:]) if tag_key(tag) not in fixed_keys]
    if cfg.separator and fixed and rest:
        return f"{', '.join(fixed)} {cfg.separator} {', '.join(rest)}"
    return ", ".join(fixed + rest)


def _flat(slots: dict[str, list[str]], names) -> list[str]:
    return dedupe([tag.replace("\\(", "(").replace("\\)", ")") for slot in names for tag in slots.get(slot, [])])


@dataclass(frozen=True)
class CaptionChange:
    image: Path
    caption: Path
    old: str
    new: str


@dataclass
class FormatPlan:
    changes: list[CaptionChange] = field(default_factory=list)
    unchanged: int = 0
    without_caption: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def preview(self, root: Path | None = None) -> str:
        """A diff-like listing: `-` the caption now, `+` what it would become."""
        lines = []
        for change in self.changes:
            name = change.caption.relative_to(root) if root is not None else change.caption
            lines += [str(name), f"  - {change.old}", f"  + {change.new}"]
        lines.append(self.summary())
        return "\n".join(lines)

    def summary(self) -> str:
        text = f"{len(self.changes)} captions to rewrite, {self.unchanged} already in order"
        if self.without_caption:
            text += f", {len(self.without_caption)} images without a caption (tag them first)"
        if self.failed:
            text += f", {len(self.failed)} not formatted (first: {self.failed[0][0]}: {self.failed[0][1]})"
        return text


def plan_folder(folder: str | Path, profile: Profile, source: CategorySource | None, cfg: FormatConfig, *,
                progress: Callable[[int, int], None] | None = None,
                check_cancel: Callable[[], None] | None = None) -> FormatPlan:  # fmt: skip
    """What formatting `folder`'s captions would change; nothing is written."""
    if cfg.fixed_through not in profile.order:
        raise ValueError(f"fixed_through must be one of the profile's slots ({', '.join(profile.order)}), got {cfg.fixed_through!r}")
    plan = FormatPlan()
    images = dataset_images(folder)
    for done, image in enumerate(images, start=1):
        if check_cancel is not None:
            check_cancel()
        _plan_one(image, profile, source, cfg, plan)
        if progress is not None:
            progress(done, len(images))
    return plan


def _plan_one(image: Path, profile: Profile, source: CategorySource | None, cfg: FormatConfig, plan: FormatPlan) -> None:
    path = caption_path(image, cfg.caption_extension)
    if not path.is_file():
        plan.without_caption.append(image)
        return
    try:
        old = path.read_text(encoding="utf-8-sig").strip()
        meta = read_metadata(image) if cfg.use_metadata else None
        new = format_caption(old, profile, source, cfg, meta)
    except (UnicodeDecodeError, ValueError) as exc:
        plan.failed.append((image, str(exc)))
        return
    if new == old:
        plan.unchanged += 1
    else:
        plan.changes.append(CaptionChange(image, path, old, new))


def write_plan(plan: FormatPlan, *, progress: Callable[[int, int], None] | None = None,
               check_cancel: Callable[[], None] | None = None) -> list[Path]:  # fmt: skip
    """Write each change atomically; returns the originals kept (`<caption>.orig`)."""
    kept = []
    for done, change in enumerate(plan.changes, start=1):
        if check_cancel is not None:
            check_cancel()
        original = replace_caption(change.caption, change.new + "\n")
        if original is not None:
            kept.append(original)
        if progress is not None:
            progress(done, len(plan.changes))
    return kept
