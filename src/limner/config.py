"""Typed dataclass configs that round-trip through plain dicts and JSON.

Unknown keys are rejected with the list of valid ones, so a typo in a preset or
a `config.json` never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, TypeVar

from limner.errors import ConfigError

T = TypeVar("T")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain, JSON-ready dict of a (possibly nested) dataclass."""
    return dataclasses.asdict(config)


def config_from_dict(cls: type[T], values: dict[str, Any], *, where: str = "") -> T:
    """Build `cls` from `values`, recursing into nested dataclass fields.

    >>> config_from_dict(GeneratorConfig, {"resolution": 64})
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown key(s) {unknown}; valid keys are {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        field_type = hints[name]
        if dataclasses.is_dataclass(field_type) and isinstance(value, dict):
            value = config_from_dict(field_type, value, where=f"{where or cls.__name__}.{name}")
        elif isinstance(value, list) and _is_tuple_type(field_type):
            value = tuple(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where or cls.__name__}: {err}") from err


def merge_config(config: T, overrides: dict[str, Any]) -> T:
    """A copy of `config` with `overrides` applied (nested dicts merge)."""
    merged = _deep_merge(config_to_dict(config), overrides)
    return config_from_dict(type(config), merged)


def save_config_json(config: Any, path: Path) -> None:
    Path(path).write_text(json.dumps(config_to_dict(config), indent=2) + "\n")


def load_config_json(cls: type[T], path: Path) -> T:
    return config_from_dict(cls, read_config_file(path), where=str(path))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The JSON object in `path`; a ConfigError naming the file when it is missing, unreadable,
    not JSON, or not an object."""
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: config file not found") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the config file ({err})") from err
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a config file holds one JSON object of settings, got {type(values).__name__}")
    return values


def parse_name_list(text: str, known: tuple[str, ...], what: str) -> tuple[str, ...]:
    """'a, b' -> ('a', 'b'); '' -> (); names outside `known` refused with the choices (`what` names the list)."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(f"unknown {what} {unknown}; choose from {list(known)} (comma-separated), or '' for none")
    return names


def _deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _is_tuple_type(field_type: Any) -> bool:
    return typing.get_origin(field_type) is tuple or field_type is tuple
