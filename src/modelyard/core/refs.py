"""Model references, parsed in one place.

``NAME`` (latest version), ``NAME/VERSION``, ``NAME/latest``, ``NAME@ALIAS``, and the MLflow forms
``models:/NAME/VERSION``, ``models:/NAME/latest`` and ``models:/NAME@ALIAS``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelyard.errors import InvalidReferenceError

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
ALIAS_PATTERN = r"[A-Za-z_][A-Za-z0-9_-]{0,63}"
_NAME_RE = re.compile(NAME_PATTERN)
_ALIAS_RE = re.compile(ALIAS_PATTERN)
_REF_RE = re.compile(
    rf"(?P<name>{NAME_PATTERN})(?:/(?P<version>[0-9]+|latest)|@(?P<alias>{ALIAS_PATTERN}))?"
)
_FORMS = "NAME, NAME/VERSION, NAME@ALIAS or models:/NAME/VERSION"


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A parsed reference. ``version`` and ``alias`` are never both set; neither means latest."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}/{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


def parse_ref(text: str | ModelRef) -> ModelRef:
    """Parse a model reference or raise ``InvalidReferenceError`` naming the accepted forms."""
    if isinstance(text, ModelRef):
        return text
    raw = text.strip()
    body = raw.removeprefix("models:/")
    match = _REF_RE.fullmatch(body)
    if match is None:
        raise InvalidReferenceError(f"Malformed model reference {text!r}; use {_FORMS}.")
    version_text = match["version"]
    if version_text is not None and version_text != "latest":
        version = int(version_text)
        if version < 1:
            raise InvalidReferenceError(
                f"Malformed model reference {text!r}: versions start at 1; use {_FORMS}."
            )
        return ModelRef(match["name"], version=version)
    return ModelRef(match["name"], alias=match["alias"])


def check_name(name: str) -> str:
    """Validate a model name (letters, digits, ``.``, ``_``, ``-``; at most 128 characters)."""
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None:
        raise InvalidReferenceError(
            f"Invalid model name {name!r}: use letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit, at most 128 characters)."
        )
    return name


def check_alias(alias: str) -> str:
    """Validate an alias name (``production``, ``staging``...); an alias is never a number."""
    if not isinstance(alias, str) or _ALIAS_RE.fullmatch(alias) is None or alias == "latest":
        raise InvalidReferenceError(
            f"Invalid alias {alias!r}: use a letter or '_' then letters, digits, '_' or '-' "
            "(at most 64 characters; 'latest' is reserved)."
        )
    return alias
