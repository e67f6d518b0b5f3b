"""Rendering for the CLI: Rich tables for people, ``--json`` for scripts."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

_json = msgspec.json.Encoder(order="deterministic")


def console() -> Console:
    """stdout for people. Markup is off: names, paths and messages are printed as given (Rich
    would take ``[[monitoring.alerts.rules]]`` or a path with ``[red]`` for tags and drop them);
    style with ``style=`` or ``rich.text.Text``."""
    # Rich assumes 80 columns when output is not a terminal; logs and pipes read better wider.
    return Console(
        highlight=False, markup=False, soft_wrap=False,
        width=None if sys.stdout.isatty() else 160,
    )  # fmt: skip


def print_json(value: Any) -> None:
    sys.stdout.write(_json.encode(msgspec.to_builtins(value)).decode() + "\n")


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def kv(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in values.items()) or "-"


def _short(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    out = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*("-" if cell is None else str(cell) for cell in row))
    console().print(out)


def parse_pairs(option: str, values: Sequence[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` as a dict; a malformed pair is a usage error (exit 2)."""
    import typer

    out: dict[str, str] = {}
    for item in values or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        out[key] = value
    return out


def slots_dict(item: object) -> dict[str, Any]:
    """A slotted dataclass's fields as a dict, for ``--json`` output."""
    return {name: getattr(item, name) for name in item.__slots__}  # type: ignore[attr-defined]
