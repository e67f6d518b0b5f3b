"""Business outcomes on a real server: predictions with known request ids, ``POST /v1/outcomes``
(every refused body, auth), then ``yard outcomes show`` and ``yard outcomes ingest`` against the
same prediction log, with numbers computed by hand."""

from __future__ import annotations

import json
import math
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from modelyard.monitoring.alerts import evaluate, metric_source, validate_rules
from modelyard.monitoring.outcomes import ingest_outcomes
from modelyard.monitoring.service import window_metrics
from modelyard.serving.metrics import ServingMetrics
from modelyard.settings import AlertRule
from modelyard.store.db import Database
from tests._logdata import write_log
from tests.integration._server import YARD, Server, server_env
from tests.integration.conftest import ServedHome
from tests.integration.test_labels import token, yard
from tests.unit.monitoring.test_alerts import Recorder

SHAPE = '{"deployment": NAME, "outcomes": [{"request_id": ID, "value": NUMBER}, ...]}'


def outcome_files(log: Path) -> list[Path]:
    folder = log / "outcomes"
    return sorted(folder.rglob("*.parquet")) if folder.exists() else []


def lin_body(rows: list[list[float]]) -> dict[str, object]:
    inputs = [
        {"name": c, "shape": [len(rows)], "datatype": "FP64", "data": [r[j] for r in rows]}
        for j, c in enumerate("abc")
    ]
    return {"inputs": inputs}


def stats(values: list[float]) -> tuple[int, float, float, float]:
    """count, sum, mean and standard error of the mean, by hand."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return n, sum(values), mean, sd / math.sqrt(n)


def test_outcomes_posted_to_the_server_and_ingested_by_the_cli(
    served_home: ServedHome, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    env = server_env(served_home.home, MODELYARD_MONITORING__LOG_ROOT=str(log),
                     MODELYARD_SERVING__MAX_BODY_BYTES="8192")  # fmt: skip
    lin_token, hgb_token, any_token = (token(served_home, m) for m in ("lin", "hgb", None))
    auth = {"Authorization": f"Bearer {lin_token}"}
    values = [float(v) for v in np.random.default_rng(3).normal(20.0, 5.0, 12).round(2)]
    server = Server(served_home.home, "lin/1", "--log-predictions", "--auth", env=env)
    server.wait_ready()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for i in range(12):
                headers = {**auth, "X-Request-Id": f"r-{i}"}
                answer = client.post("/v2/models/lin/infer", json=lin_body([[i, 0, 1]]),
                                     headers=headers)  # fmt: skip
                assert answer.status_code == 200, answer.text
            pair = client.post("/v2/models/lin/infer", json=lin_body([[0, 0, 0], [1, 1, 1]]),
                               headers={**auth, "X-Request-Id": "pair"})  # fmt: skip
            assert pair.status_code == 200

            def post(payload: object, headers: dict[str, str] | None = None) -> httpx.Response:
                return client.post("/v1/outcomes", json=payload, headers=auth if headers is None
                                   else headers)  # fmt: skip

            def refused(payload: object, status: int = 400) -> str:
                answer = post(payload)
                assert answer.status_code == status, answer.text
                message: str = answer.json()["error"]
                assert "\n" not in message
                return message

            good = [{"request_id": f"r-{i}", "value": v} for i, v in enumerate(values)]
            good += [{"request_id": "pair", "row": 1, "value": 7, "time": 1777636800},
                     {"request_id": "never-sent", "value": 1000.0,
                      "time": "2026-05-01T12:00:00Z"}]  # fmt: skip
            body = {"deployment": "lin", "outcomes": good}
            # refused: nothing is written
            assert post(body, {}).status_code == 401
            assert post(body, {"Authorization": f"Bearer {hgb_token}"}).status_code == 403

            def one(value: object) -> dict[str, object]:
                return {"deployment": "lin", "outcomes": [{"request_id": "r-0", "value": value}]}

            assert refused(one(True)) == (
                "The outcomes body is not valid: Expected `float`, got `bool` - at "
                f"`$.outcomes[0].value`; send {SHAPE}."
            )
            assert "Expected `float`, got `str`" in refused(one("12.5"))
            assert "got `null`" in refused(one(None))
            over = client.post("/v1/outcomes", headers={**auth, "Content-Type": "application/json"},
                               content=b'{"deployment": "lin", "outcomes": [{"request_id": '
                               b'"r-0", "value": 1e999}]}')  # fmt: skip
            assert over.status_code == 400
            assert "Number out of range - at `$.outcomes[0].value`" in over.json()["error"]
            nan = client.post("/v1/outcomes", headers=auth, content=b'{"deployment": "lin", '
                              b'"outcomes": [{"request_id": "r-0", "value": NaN}]}')  # fmt: skip
            assert nan.status_code == 400 and "not valid: JSON is malformed" in nan.json()["error"]
            assert refused({"deployment": "lin", "outcomes": []}).startswith(
                "The outcomes body is not valid: Expected `array` of length >= 1"
            )
            assert refused({"deployment": "../lin", "outcomes": good[:1]}) == (
                "The outcomes body's deployment '../lin' is not a valid name: use letters, "
                "digits, '.', '_' or '-' (starting with a letter or digit, at most 128 "
                "characters)."
            )
            assert refused({"deployment": "lin", "outcomes": [good[0], good[0]]}) == (
                "1 request id appears more than once in the outcomes ('r-0'); keep one outcome "
                "per request (and row)."
            )
            assert "Object missing required field `value`" in refused(
                {"deployment": "lin", "outcomes": [{"request_id": "r-0"}]}
            )
            deep = b'{"deployment": "lin", "x": ' + b"[" * 2000 + b"]" * 2000 + b"}"
            answer = client.post("/v1/outcomes", content=deep, headers=auth)
            assert answer.status_code == 400
            assert answer.json()["error"] == (
                f"The outcomes body nests JSON more than 64 levels deep at $.x[0][0][0]...; send "
                f"{SHAPE}."
            )
            huge = {"deployment": "lin", "outcomes": good * 100}
            assert post(huge).status_code == 413
            ghost = post({"deployment": "ghost", "outcomes": good[:1]},
                         {"Authorization": f"Bearer {any_token}"})  # fmt: skip
            assert ghost.status_code == 404
            assert ghost.json()["error"] == (
                "No predictions are logged for deployment 'ghost', so there is nothing to join "
                "outcomes to; check the name (the deployment or model the predictions came from)."
            )
            assert client.get("/v1/outcomes", headers=auth).status_code == 405
            assert outcome_files(log) == []

            accepted = post(body)
            assert accepted.status_code == 202, accepted.text
            assert accepted.json() == {"accepted": 14}
            every = {"Authorization": f"Bearer {any_token}"}
            api = client.get("/openapi.json", headers=every).json()["paths"]
            schema = api["/v1/outcomes"]["post"]["requestBody"]["content"]["application/json"]
            assert schema["schema"]["required"] == ["deployment", "outcomes"]
    finally:
        assert server.stop() == 0, server.log.read_text()
    server_log = server.log.read_text()
    assert "Traceback" not in server_log and "Internal error" not in server_log
    assert len(outcome_files(log)) == 1

    # per model, version and route: the 12 single rows and row 1 of "pair" joined
    shown = json.loads(yard(env, "outcomes", "show", "lin", "--since", "1h", "--json"))
    n, total, mean, stderr = stats([*values, 7.0])
    assert shown["predictions"] == 14  # 12 + the two rows of "pair"
    (group,) = shown["groups"]
    assert (group["model"], group["version"], group["route"]) == ("lin", "1", "v2_infer")
    assert (group["count"], group["sum"]) == (n, pytest.approx(total))
    assert group["mean"] == pytest.approx(mean)
    assert group["stderr"] == pytest.approx(stderr)
    assert shown["total"]["count"] == n

    # the CLI with the source's own column names: a later file replaces two values
    later = tmp_path / "later.csv"
    later.write_text("order,revenue,at\nr-0,100.5,2026-05-01T12:00:00Z\nr-1,0,\nnot-logged,3\n")
    ingested = json.loads(yard(
        env, "outcomes", "ingest", str(later), "--deployment", "lin", "--id-column", "order",
        "--value-column", "revenue", "--time-column", "at", "--json",
    ))  # fmt: skip
    assert (ingested["rows"], ingested["matched"], ingested["unmatched"]) == (3, 2, 1)
    assert Path(ingested["path"]).parent == log / "outcomes" / "deployment=lin"
    now = [100.5, 0.0, *values[2:], 7.0]
    after = json.loads(yard(env, "outcomes", "show", "lin", "--json"))["groups"][0]
    assert after["sum"] == pytest.approx(sum(now))
    assert after["stderr"] == pytest.approx(stats(now)[3])
    text = yard(env, "outcomes", "show", "lin")
    assert "outcomes of lin's predictions of the last 1h" in text
    assert "with an outcome: 13 of 14 predictions" in text

    # a bad file, as a user runs it: one line on stderr, exit 1, nothing written
    bad = tmp_path / "bad.csv"
    bad.write_text("request_id,value\nr-1,12\nr-2,twelve\n")
    before = outcome_files(log)
    run = subprocess.run([YARD, "outcomes", "ingest", str(bad), "--deployment", "lin"], env=env,
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert run.returncode == 1
    assert run.stderr == (
        "error: Outcome value 'twelve' at line 3 of outcomes file 'bad.csv' is not a finite "
        "number; give one number per request (revenue, 1 for a conversion...).\n"
    )
    assert outcome_files(log) == before


def test_an_alert_rule_watches_the_mean_outcome(served_home: ServedHome, tmp_path: Path) -> None:
    log = tmp_path / "log"
    now = datetime.now(UTC)
    inputs = pd.DataFrame({"a": [0.0] * 6, "b": [1.0] * 6, "c": [0.0] * 6})
    times = [now - timedelta(minutes=50 - i) for i in range(6)]
    ids = write_log(log, "lin", inputs, times, model="lin", version="1",
                    predict=np.full(6, 10.0))  # fmt: skip
    old = write_log(log, "lin", inputs[:1], [now - timedelta(hours=3)], model="lin",
                    version="1", predict=np.full(1, 10.0))  # fmt: skip
    values = [4.0, 6.0, 5.0, 5.5, 4.5, 5.0]
    frame = pd.DataFrame({"request_id": [*ids, *old], "value": [*values, 1000.0]})
    ingest_outcomes(log, "lin", frame)
    rules = validate_rules([
        AlertRule(name="low-revenue", deployment="lin", metric="outcome:mean", op="<",
                  threshold=6.0, window="1h"),
        AlertRule(name="revenue", deployment="lin", metric="outcome:sum", op=">",
                  threshold=1000, window="1h"),
    ])  # fmt: skip
    registry = served_home.registry()
    db = Database(f"sqlite:///{tmp_path / 'alerts.db'}")
    try:
        low, total = evaluate(db, rules, metric_source(registry, str(log)), now=now,
                              notifier=Recorder())  # fmt: skip
        # a logging server exports the same numbers as gauges
        metrics = ServingMetrics()
        metrics.set_window("lin", window_metrics(registry, log, "lin", window=timedelta(hours=1),
                                                 now=now))  # fmt: skip
        gauges = metrics.render()[0].decode()
        assert 'modelyard_outcome{deployment="lin",stat="mean"} 5.0' in gauges
        assert 'modelyard_outcome{deployment="lin",stat="count"} 6.0' in gauges
    finally:
        db.close()
        registry.close()
    # the prediction of three hours ago (and its outcome of 1000) is outside the window
    assert (low.state, low.event, low.value) == ("firing", "fired", pytest.approx(5.0))
    assert (total.state, total.value) == ("ok", pytest.approx(30.0))
