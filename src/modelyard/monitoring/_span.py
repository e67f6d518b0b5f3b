"""The current window of a deployment's prediction log, as drift reads it: its hours and files
(``window`` back from now, or the newest ``last`` rows), the columns they hold, the version that
answered most of its rows, and its profile merged from the cached hour profiles."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from modelyard.core.durations import format_duration
from modelyard.errors import InvalidInputError, PredictionLogEmptyError
from modelyard.monitoring import _logfacts
from modelyard.monitoring._partitions import Hour, empty_window, hours, log_folder, require_window
from modelyard.monitoring.drift import DriftDetector, WindowProfile
from modelyard.monitoring.text import TextDescriptors
from modelyard.monitoring.windows import log_inputs, read_rows, window_profile

__all__ = ["Progress", "Span", "merged_profile", "prepare_inputs"]

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Span:
    """The current window of a deployment's log: its hours, files and columns."""

    root: str | Path
    name: str
    start: datetime
    end: datetime
    hours: list[Hour]
    last: int | None
    description: str
    #: Where the rows were looked for, for messages: "in the last 1h", "in its last 500 rows".
    what: str
    #: Every column of the window's files, in first-seen order (read from their Parquet
    #: footers once, no rows read).
    columns: tuple[str, ...]

    @classmethod
    def of(
        cls,
        root: str | Path,
        name: str,
        *,
        window: timedelta | None,
        last: int | None,
        now: datetime,
    ) -> Span:
        if not log_folder(root, name).is_dir():
            known = sorted(
                p.name.removeprefix("deployment=") for p in Path(root).glob("deployment=*")
            )
            raise PredictionLogEmptyError(
                f"No prediction log for {name!r} under {root}; logged: "
                f"{', '.join(known) or 'none'}. Serve it with 'yard serve --log-predictions'."
            )
        if last is not None:
            if last < 1:
                raise InvalidInputError(f"--last {last} is not a row count; use --last 1000.")
            start = datetime(1970, 1, 1, tzinfo=UTC)
            what = f"in its last {last} rows"
            description = f"last {last} predictions"
        else:
            span = timedelta(hours=1) if window is None else window
            require_window(span)
            start = now - span
            what = f"in the last {format_duration(span)}"
            description = f"{name}, last {format_duration(span)}"
        found = hours(root, name, start, now + timedelta(seconds=1))
        if not found:
            raise empty_window(root, name, what)
        return cls(root, name, start, now, found, last, description, what, _columns(found))

    @property
    def files(self) -> list[Path]:
        return [f for h in self.hours for f in h.files]

    def rows(self) -> pd.DataFrame:
        if self.last is not None:
            frame = read_rows(self.files, last=self.last)
        else:
            frame = read_rows(self.files, start=self.start, end=self.end)
        if frame.empty:
            raise empty_window(self.root, self.name, self.what)
        return frame

    def input_columns(self) -> list[str]:
        """The ``in_`` columns of the window's files, without the prefix."""
        return [c[3:] for c in self.columns if c.startswith("in_")]

    def output_columns(self) -> set[str]:
        """The ``out_`` columns of the window's files, without the prefix."""
        return {c[4:] for c in self.columns if c.startswith("out_")}

    def versions(self) -> list[tuple[str, str, int]]:
        """(model, version, rows) in the window, most rows first."""
        return _logfacts.versions(self.files, self.start)

    def version(self) -> str:
        """The model version (``name/version``) that answered most of the window's rows; a
        window of no rows (its hour's files hold only older ones) is ``PredictionLogEmptyError``."""
        found = self.versions()
        if not found:
            raise empty_window(self.root, self.name, self.what)
        model, number, _ = found[0]
        return f"{model}/{number}"


def _columns(hours: list[Hour]) -> tuple[str, ...]:
    return _logfacts.columns([file for hour in hours for file in hour.files])


def merged_profile(  # noqa: PLR0917
    detector: DriftDetector,
    root: str | Path,
    name: str,
    span: Span,
    prepare: Callable[[pd.DataFrame], pd.DataFrame],
    progress: Progress | None,
) -> WindowProfile:
    """The window's profile: cached file profiles, the rows of files at its edges."""
    merged = window_profile(
        detector, root, name, span.hours, start=span.start, end=span.end, prepare=prepare
    )
    if progress is not None:
        progress(len(span.hours))
    if merged is None:
        raise empty_window(root, name, span.what)
    return merged


def prepare_inputs(
    detector: DriftDetector, text: TextDescriptors | None
) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Log rows to the inputs ``detector`` compares (hashed or dropped ones left out, text
    columns as their descriptors)."""
    names = [c.name for c in detector.reference_]
    if text is None:
        return lambda frame: log_inputs(frame)[names]
    wanted = set(names) | set(text.columns)

    def prepare(frame: pd.DataFrame) -> pd.DataFrame:
        inputs = log_inputs(frame)
        return text.transform(inputs[[c for c in inputs.columns if c in wanted]])[names]

    return prepare
