"""Tag autocomplete for prompt editors: a prefix index over every known tag (tipo-kgen's lists, a
user's tagcomplete CSV with counts and aliases, the model families' own tags), ranked by
popularity, with the chosen profile's tags first. Pure Python + numpy; ComfyUI's route is in
nodes/autocomplete_route.py."""

from .index import CATEGORIES, TagIndex
from .suggestions import MAX_LIMIT, NO_PROFILE, CompletionSettings, Suggestion, default_index, ready_index, suggest

__all__ = ["CATEGORIES", "MAX_LIMIT", "NO_PROFILE", "CompletionSettings", "Suggestion", "TagIndex", "default_index", "ready_index", "suggest"]
