"""Parameters: command-line strings converted by annotation, and canonical JSON for cache keys.

``--param k=v`` values are converted by the pipeline function's annotation of ``k`` (or by the
type of its default when it has no annotation): ``int``, ``float``, ``bool`` (true/false, yes/no,
1/0, on/off), ``str``, ``pathlib.Path``, ``Literal[...]`` (one of the choices), ``X | None``
(``none`` or ``null`` give ``None``), and ``list``/``dict``/``tuple`` from JSON
(``--param cols='["a","b"]'``).
"""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from modelyard.errors import PipelineDefinitionError

__all__ = ["canonical_json", "convert_text", "jsonable"]

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}
_NONE = {"none", "null"}


def convert_text(name: str, text: str, annotation: Any, default: Any, *, owner: str) -> Any:
    """``text`` as the type ``annotation`` names (or ``default``'s type when unannotated)."""
    target = annotation
    if target is None or target is Any or target is typing.Any:
        target = type(default) if default not in (None, Any) else str
    try:
        return _convert(text, target)
    except (ValueError, TypeError) as exc:
        raise PipelineDefinitionError(
            f"Parameter {name!r} of {owner} expects {_describe(target)}, got {text!r} ({exc})."
        ) from None


def _convert(text: str, target: Any) -> Any:
    origin = typing.get_origin(target)
    if origin is typing.Annotated:
        return _convert(text, typing.get_args(target)[0])
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(target) if a is not type(None)]
        if len(options) < len(typing.get_args(target)) and text.strip().lower() in _NONE:
            return None
        errors = []
        for option in options:
            try:
                return _convert(text, option)
            except (ValueError, TypeError) as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors))
    if origin is typing.Literal:
        choices = typing.get_args(target)
        for choice in choices:
            if str(choice) == text:
                return choice
        raise ValueError(f"choose one of {', '.join(map(str, choices))}")
    base = origin if isinstance(origin, type) else target
    if base is bool:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError("use true or false")
    if base in (int, float, str):
        return base(text)
    if isinstance(base, type) and issubclass(base, PurePath):
        return base(text)
    if base in (list, dict, tuple):
        value = json.loads(text)
        if not isinstance(value, list if base is tuple else base):
            raise ValueError(f"give a JSON {'array' if base is not dict else 'object'}")
        return tuple(value) if base is tuple else value
    if base is type(None):
        if text.strip().lower() in _NONE:
            return None
        raise ValueError("only none is allowed")
    raise TypeError(f"parameters of type {_describe(target)} cannot be given on the command line")


def _describe(target: Any) -> str:
    if isinstance(target, type):
        return {int: "an int", float: "a float", bool: "a bool", str: "a string"}.get(
            target, target.__name__
        )
    return str(target).replace("typing.", "")


def jsonable(value: Any, *, where: str) -> Any:
    """``value`` as plain JSON data (paths as strings, tuples as lists, numpy scalars unwrapped),
    or ``PipelineDefinitionError`` naming ``where``."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PipelineDefinitionError(
                f"{where} is {value!r}; parameters must be finite numbers (they are hashed as "
                "JSON)."
            )
        return value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, list | tuple):
        return [jsonable(v, where=where) for v in value]
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise PipelineDefinitionError(
                    f"{where} has a non-string key {key!r}; parameter mappings need string keys."
                )
            out[key] = jsonable(item, where=where)
        return out
    item = getattr(value, "item", None)
    if type(value).__module__ == "numpy" and callable(item):
        return jsonable(item(), where=where)
    raise PipelineDefinitionError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}; step parameters must "
        "be JSON values (numbers, strings, bools, lists, dicts) or outputs of other steps."
    )


def canonical_json(value: Any) -> str:
    """One text per JSON value: sorted keys, no spaces, shortest float repr."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
