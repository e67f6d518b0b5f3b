"""The gate's report: table cells shared with the CLI, and the Markdown summary for a pull
request, written atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.errors import InvalidInputError
from modelyard.pipelines._metrics import describe_bound, fmt_delta, fmt_percent, fmt_value

if TYPE_CHECKING:
    from modelyard.pipelines.gate import GateResult, MetricResult


COLUMNS = ("metric", "candidate", "baseline", "Δ", "relative Δ", "requirement", "result")


def result_cells(r: MetricResult) -> list[str]:
    """One result as the cells of ``COLUMNS`` (text; the CLI and the Markdown share it)."""
    if r.baseline is None and r.note is None:  # no baseline model
        return [r.metric, fmt_value(r.candidate), "-", "-", "-", requirement(r), _verdict(r)]
    return [
        r.metric,
        fmt_value(r.candidate),
        fmt_value(r.baseline),
        fmt_delta(r.delta),
        fmt_percent(r.relative_delta),
        requirement(r),
        _verdict(r),
    ]


def requirement(r: MetricResult) -> str:
    """The bounds on a result, e.g. ``≥ 0.8, relative Δ ≥ +1%``."""
    return (
        ", ".join(describe_bound(c.kind, c.required, r.greater_is_better) for c in r.checks) or "-"
    )


def _verdict(r: MetricResult) -> str:
    if r.passed is None:
        return f"n/a: {r.note}" if r.note else "-"
    return "✅ pass" if r.passed else "❌ fail"


def render_markdown(result: GateResult) -> str:
    """A pull-request comment: the verdict, the metrics on all rows, one table per slice column,
    the failed checks, the models and the data (GitHub-flavoured Markdown)."""
    mark = "✅ passed" if result.passed else "❌ failed"
    against = f" vs `{_md(result.baseline_version)}`" if result.baseline_version else ""
    lines = [f"## {mark}: model gate for `{_md(result.candidate_version)}`{against}", ""]
    lines += [_models_line(result), ""]
    overall = [r for r in result.results if r.slice_column is None]
    lines += _md_table(COLUMNS, [result_cells(r) for r in overall])
    for column in result.slices:
        rows = [
            [str(r.slice_value), f"{r.rows:,}", *result_cells(r)]
            for r in result.results
            if r.slice_column == column
        ]
        lines += ["", f"### By `{_md(column)}`", ""]
        lines += _md_table((column, "rows", *COLUMNS), rows)
    if result.failures:
        lines += ["", f"**{len(result.failures)} failed check(s)**", ""]
        lines += [f"- {_md(f)}" for f in result.failures]
    lines += [
        "",
        "---",
        "_`yard gate`: relative Δ is (candidate - baseline) / abs(baseline); bounds follow "
        "MLflow's MetricThreshold._",
        "",
    ]
    return "\n".join(lines)


def _models_line(result: GateResult) -> str:
    candidate = _ref(result.candidate, result.candidate_version)
    parts = [f"**Candidate** {candidate}"]
    if result.baseline is not None and result.baseline_version is not None:
        parts.append(f"**baseline** {_ref(result.baseline, result.baseline_version)}")
    parts.append(f"**data** `{_md(result.data)}` ({result.rows:,} rows)")
    parts.append(f"**target** `{_md(result.target)}` ({result.task})")
    return " · ".join(parts)


def _ref(given: str, version: str) -> str:
    return f"`{_md(version)}`" + (f" (`{_md(given)}`)" if given != version else "")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    numeric = {"rows", "candidate", "baseline", "Δ", "relative Δ"}
    align = ["--:" if h in numeric else ":--" for h in header]
    out = ["| " + " | ".join(_md(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    return out


def _md(text: str) -> str:
    """Text safe inside a table cell or inline code: no pipes, backticks or line breaks."""
    return text.replace("|", "\\|").replace("`", "'").replace("\n", " ")


def check_markdown_path(path: str | Path) -> None:
    """Fail before any work when the report could not be written there."""
    target = Path(path)
    if target.is_dir():
        raise InvalidInputError(f"--markdown {str(target)!r} is a directory; give a file name.")
    if not target.parent.is_dir():
        raise InvalidInputError(
            f"--markdown {str(target)!r}: the folder {str(target.parent)!r} does not exist; "
            "create it first."
        )


def write_markdown(result: GateResult, path: str | Path) -> Path:
    """Write the report atomically: a reader sees the old file or the whole new one."""
    target = Path(path)
    check_markdown_path(target)
    text = render_markdown(result)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise InvalidInputError(f"Cannot write --markdown {str(target)!r}: {exc}.") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target
