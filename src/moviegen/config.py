"""Frozen dataclass configs with named presets, validated on load.

Every model config in moviegen is a frozen dataclass that mixes in :class:`Config`. Presets are plain
dicts of overrides keyed by name (``tiny``, ``paper``, ``5b``, ...). Unknown keys, wrong types and
invalid values are rejected with a :class:`~moviegen.errors.MovieGenError` naming the problem.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from moviegen.errors import MovieGenError
from moviegen.files import read_json_object

C = TypeVar("C", bound="Config")


class Config:
    """Mixin for frozen dataclass configs: presets, dict/JSON round trip and validation."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise MovieGenError when a value is out of range; subclasses extend this."""

    @classmethod
    def preset(cls: type[C], name: str, **overrides: Any) -> C:
        if name not in cls.PRESETS:
            known = ", ".join(sorted(cls.PRESETS))
            raise MovieGenError(f"unknown {cls.__name__} preset {name!r} (known: {known})")
        return cls.from_dict({**cls.PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        if not isinstance(data, dict):
            raise MovieGenError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise MovieGenError(f"{cls.__name__}: unknown config key(s) {', '.join(unknown)}")
        hints = typing.get_type_hints(cls)
        values = {k: _coerce(cls.__name__, k, v, hints[k]) for k, v in data.items()}
        try:
            return cls(**values)
        except TypeError as e:  # missing required fields
            raise MovieGenError(f"{cls.__name__}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}  # type: ignore[call-overload]

    @classmethod
    def from_json(cls: type[C], path: str | Path) -> C:
        data = read_json_object(path, "config file", missing=f"config file not found: {path}")
        data.pop("_class_name", None)
        return cls.from_dict(data)

    def to_json(self) -> str:
        return json.dumps({"_class_name": type(self).__name__, **self.to_dict()}, indent=2, sort_keys=True)


def _coerce(owner: str, key: str, value: Any, hint: Any) -> Any:
    """Check a JSON value against a field's annotation; tuples arrive from JSON as lists."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise MovieGenError(f"{owner}.{key}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(_coerce(owner, key, v, item) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise MovieGenError(f"{owner}.{key}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise MovieGenError(f"{owner}.{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MovieGenError(f"{owner}.{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise MovieGenError(f"{owner}.{key}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise MovieGenError(f"{owner}.{key}: expected a string, got {value!r}")
        return value
    return value


def require(condition: bool, owner: str, message: str) -> None:
    """Validation helper for ``Config.validate`` implementations."""
    if not condition:
        raise MovieGenError(f"{owner}: {message}")
