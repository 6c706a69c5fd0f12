"""Reading a training TOML file into a `TrainConfig`, refusing unknown keys by name.

The dataclasses in config.py (and the dataset's in data/) are the schema: their fields are the
allowed keys and their type hints the allowed values, so a typo like `network.rnak` is an error
that names the key and suggests `rank` instead of a setting silently ignored.
Relative paths in the file are taken relative to the file's own folder.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from .config import TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# Dotted keys holding file-system paths, resolved against the TOML file's folder.
PATH_KEYS = (
    "model.path", "model.checkpoint", "model.tokenizer", "network.init_weights", "save.output_dir", "save.work_dir", "cache.latents_dir",
)  # fmt: skip


def load_config(path: str | Path) -> TrainConfig:
    """Parse and validate a training TOML file."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"training config {str(file)!r} does not exist")
    try:
        table = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{file.name} is not valid TOML: {exc}") from None
    return config_from_dict(table, base_dir=file.resolve().parent)


def config_from_dict(table: dict, base_dir: str | Path | None = None) -> TrainConfig:
    """Build a `TrainConfig` from nested dicts (parsed TOML), resolving relative paths against `base_dir`."""
    if base_dir is not None:
        table = _resolve_paths(table, Path(base_dir))
    return build(TrainConfig, table, "")


def build(cls: type, table: Any, where: str):
    """Instantiate dataclass `cls` from `table`, checking keys and value types; errors name the dotted key."""
    if not isinstance(table, dict):
        raise ValueError(f"{where or 'the config'} must be a table, got {_kind(table)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [key for key in table if key not in fields]
    if unknown:
        key = unknown[0]
        hint = difflib.get_close_matches(key, list(fields), n=1)
        suggestion = f"; did you mean {_join(where, hint[0])!r}?" if hint else f"; known keys: {', '.join(sorted(fields))}"
        raise ValueError(f"unknown key {_join(where, key)!r}{suggestion}")
    missing = [
        name
        for name, f in fields.items()
        if name not in table and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ValueError(f"missing key {_join(where, missing[0])!r}")
    hints = get_type_hints(cls)
    kwargs = {name: _convert(hints[name], value, _join(where, name)) for name, value in table.items()}
    try:
        return cls(**kwargs)
    except ValueError as exc:
        message = str(exc)
        first_word = message.split(" ", 1)[0]
        if where and first_word in fields:
            message = f"{where}.{message}"  # the dataset's classes name their own field only
        elif where and not message.startswith(where.split(".")[0]):
            message = f"{where}: {message}"
        raise ValueError(message) from None


def _convert(hint: Any, value: Any, key: str):
    origin = get_origin(hint)
    args = get_args(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _convert(option, value, key)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(errors[0])
    if origin is Literal:
        if not any(type(a) is type(value) and a == value for a in args):
            raise ValueError(f"{key} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string, got {value!r}")
        return value
    if origin is tuple or hint is tuple:
        if not isinstance(value, list):
            raise ValueError(f"{key} must be a list, got {_kind(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], item, f"{key}[{i}]") for i, item in enumerate(value))
        if args and len(args) != len(value):
            raise ValueError(f"{key} must be a list of {len(args)} values, got {len(value)}")
        return tuple(_convert(a, item, f"{key}[{i}]") for i, (a, item) in enumerate(zip(args, value)))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{key} must be a table, got {_kind(value)}")
        return dict(value)
    if hint is typing.Any:
        return value
    raise TypeError(f"no TOML conversion for {key} of type {hint!r}")  # a schema bug, not a user error


def _resolve_paths(table: dict, base: Path) -> dict:
    resolved = {section: dict(values) if isinstance(values, dict) else values for section, values in table.items()}
    for dotted in PATH_KEYS:
        section, name = dotted.split(".")
        values = resolved.get(section)
        if isinstance(values, dict) and isinstance(values.get(name), str) and values[name]:
            values[name] = _absolute(values[name], base)
    dataset = resolved.get("dataset")
    if isinstance(dataset, dict) and isinstance(dataset.get("folders"), list):
        folders = []
        for folder in dataset["folders"]:
            if isinstance(folder, dict) and isinstance(folder.get("path"), str):
                folder = {**folder, "path": _absolute(folder["path"], base)}
            folders.append(folder)
        dataset["folders"] = folders
    return resolved


def _absolute(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path))


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _kind(value: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), type(value).__name__)
