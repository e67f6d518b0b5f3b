"""Capturing what a step prints, logs and warns, into one bounded text.

While a step runs, ``sys.stdout`` and ``sys.stderr`` write to the capture, the root logger's
handlers are replaced by one that writes there (level INFO), and warnings are shown there once
per location instead of going to the process's filters. Long logs keep their first
``head_chars`` and their last ``tail_chars`` characters.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from typing import TextIO

__all__ = ["BoundedText", "capture"]


class BoundedText(io.TextIOBase):
    """A text sink that keeps the start and the end of what is written."""

    def __init__(self, *, head_chars: int = 16_384, tail_chars: int = 49_152) -> None:
        super().__init__()
        self._head: list[str] = []
        self._head_left = head_chars
        self._tail: deque[str] = deque()
        self._tail_size = 0
        self._tail_chars = tail_chars
        self._dropped = 0

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        size = len(text)
        if self._head_left > 0:
            part = text[: self._head_left]
            self._head.append(part)
            self._head_left -= len(part)
            text = text[len(part) :]
        if text:
            self._tail.append(text)
            self._tail_size += len(text)
            while self._tail_size - len(self._tail[0]) >= self._tail_chars:
                self._tail_size -= len(self._tail[0])
                self._dropped += len(self._tail.popleft())
        return size

    def getvalue(self) -> str:
        tail = "".join(self._tail)
        excess = max(0, len(tail) - self._tail_chars)
        dropped = self._dropped + excess
        middle = f"\n[... {dropped} characters omitted ...]\n" if dropped else ""
        return "".join(self._head) + middle + tail[excess:]


@contextlib.contextmanager
def capture(sink: BoundedText) -> Iterator[None]:
    root = logging.getLogger()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers = [handler]
    root.setLevel(min(saved_level or logging.WARNING, logging.INFO))
    try:
        with (
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("default")
            warnings.showwarning = _show_to(sink)
            yield
    finally:
        root.handlers = saved_handlers
        root.setLevel(saved_level)
        sys.stdout.flush()


def _show_to(sink: BoundedText) -> Callable[..., None]:
    def show(  # noqa: PLR0917  # the signature warnings.showwarning is called with
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        sink.write(warnings.formatwarning(message, category, filename, lineno, line))

    return show
