"""Outcome files: what is refused (one line, nothing written), the latest value winning, and
the aggregation per model, version and route against numbers computed by hand."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelyard.errors import InvalidInputError, PredictionLogEmptyError
from modelyard.monitoring.outcomes import (
    OutcomeColumns,
    ingest_outcomes,
    outcomes_folder,
    summarize_outcomes,
)
from tests._logdata import write_log

NOW = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("request_id,value\na,1\nb,\n", "The outcome at line 3 of outcomes file 'o.csv' has no "
         "value; give a number (0 when nothing happened) or drop the row."),
        ("request_id,value\na,true\nb,false\n", "Outcome value True at line 2 of outcomes file "
         "'o.csv' is not a finite number; give one number per request (revenue, 1 for a "
         "conversion...)."),
        ("request_id,value\na,1\nb,inf\n", "Outcome value inf at line 3 of outcomes file "
         "'o.csv' is not a finite number; give one number per request (revenue, 1 for a "
         "conversion...)."),
        ("request_id,amount\na,1\n", "Column value missing from outcomes file 'o.csv' (found: "
         "request_id, amount); outcomes need a request id and a value column (--id-column, "
         "--value-column), optionally row and time."),
        ("request_id,value\na,1\na,2\n", "1 request id appears more than once in outcomes file "
         "'o.csv' ('a'); keep one outcome per request (and row)."),
        ("request_id,value,time\na,1,yesterday\n", "Time 'yesterday' at line 2 of outcomes file "
         "'o.csv' is neither an ISO 8601 time (2026-05-01T12:00:00Z) nor epoch seconds."),
    ],
)  # fmt: skip
def test_a_bad_file_is_refused_in_one_line_and_nothing_is_written(
    tmp_path: Path, content: str, message: str
) -> None:
    write_log(tmp_path, "churn", pd.DataFrame({"x": [1.0]}), [NOW], model="m", version="1")
    source = tmp_path / "o.csv"
    source.write_text(content)
    with pytest.raises(InvalidInputError) as raised:
        ingest_outcomes(tmp_path, "churn", source)
    assert str(raised.value) == message
    assert not outcomes_folder(tmp_path, "churn").exists()


def test_text_in_a_parquet_value_column_is_refused(tmp_path: Path) -> None:
    write_log(tmp_path, "churn", pd.DataFrame({"x": [1.0]}), [NOW], model="m", version="1")
    frame = pd.DataFrame({"request_id": ["a"], "value": ["12"]})
    with pytest.raises(InvalidInputError, match=r"^Outcome value '12' at row 1 of the outcomes"):
        ingest_outcomes(tmp_path, "churn", frame)


def test_outcomes_need_a_prediction_log(tmp_path: Path) -> None:
    frame = pd.DataFrame({"request_id": ["a"], "value": [1.0]})
    with pytest.raises(PredictionLogEmptyError, match=r"nothing to join outcomes to; serve it"):
        ingest_outcomes(tmp_path, "churn", frame)


def test_the_summary_per_model_version_and_route_matches_numbers_by_hand(tmp_path: Path) -> None:
    x = pd.DataFrame({"x": np.arange(5, dtype=float)})
    times = [NOW - timedelta(minutes=10 + i) for i in range(5)]
    stable = write_log(tmp_path, "shop", x, times, model="m", version="1", route="stable")
    candidate = write_log(tmp_path, "shop", x[:3], times[:3], model="m", version="2",
                          route="candidate")  # fmt: skip
    early = write_log(tmp_path, "shop", x[:1], [NOW - timedelta(hours=2)], model="m",
                      version="1", route="stable")  # fmt: skip
    first = pd.DataFrame({
        "order": [*stable, *candidate, *early],
        "revenue": [10.0, 12.0, 8.0, 11.0, 9.0, 3.0, 4.0, 999.0, 500.0],
    })  # fmt: skip
    columns = OutcomeColumns(request_id="order", value="revenue")
    result = ingest_outcomes(tmp_path, "shop", first, columns=columns)
    assert (result.rows, result.matched, result.unmatched) == (9, 9, 0)
    # a later ingest replaces one candidate value: the latest wins
    ingest_outcomes(tmp_path, "shop", pd.DataFrame({"request_id": [candidate[2]], "value": [5.0]}))

    summary = summarize_outcomes(tmp_path, "shop", since=timedelta(hours=1), now=NOW)
    assert summary.predictions == 8  # the prediction of two hours ago is outside the window
    by_route = {g.route: g for g in summary.groups}
    s, c = by_route["stable"], by_route["candidate"]
    assert (s.model, s.version, s.count, s.sum, s.mean) == ("m", "1", 5, 50.0, 10.0)
    # sample variance of 10, 12, 8, 11, 9: (0 + 4 + 4 + 1 + 1) / 4 = 2.5
    assert s.stderr == pytest.approx(math.sqrt(2.5) / math.sqrt(5))
    assert (c.version, c.count, c.sum, c.mean) == ("2", 3, 12.0, 4.0)
    assert c.stderr == pytest.approx(math.sqrt(1.0) / math.sqrt(3))  # 3, 4, 5: variance 1
    assert summary.total is not None
    assert (summary.total.count, summary.total.sum) == (8, 62.0)
    everything = summarize_outcomes(tmp_path, "shop")
    assert everything.total is not None and everything.total.sum == 562.0
