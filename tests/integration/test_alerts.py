"""Alerts across processes: evaluators racing on one metadata database (SQLite and PostgreSQL)
record and notify each change exactly once, and ``yard monitor check`` runs the rules of a config
file against a real prediction log, posting to a real webhook receiver."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from modelyard.monitoring.alerts import (
    AlertOutcome,
    NoData,
    ParsedRule,
    alert_history,
    check_alerts,
    evaluate,
    metric_source,
    validate_rules,
)
from modelyard.registry import Registry
from modelyard.settings import AlertRule, Settings
from modelyard.store.db import Database
from tests._logdata import write_log
from tests.conftest import database_url
from tests.integration._server import YARD, server_env
from tests.unit.monitoring.test_alerts import T0, Receiver, Recorder

LOST = "another evaluator recorded this evaluation first"


def race_rule(**values: Any) -> ParsedRule:
    fields: dict[str, Any] = {
        "name": "race", "deployment": "churn", "metric": "error_rate", "op": ">",
        "threshold": 0.1, "window": "5m",
    }  # fmt: skip
    return validate_rules([AlertRule.model_validate({**fields, **values})])[0]


def test_the_evaluator_that_writes_first_wins_and_the_other_sends_nothing(
    backend: str, tmp_path: Path
) -> None:
    url = database_url(backend, tmp_path)
    one, two = Database(url), Database(url)
    rule, mine, theirs = race_rule(), Recorder(), Recorder()
    value = 0.5
    inner: list[AlertOutcome] = []

    def racing(rule: ParsedRule, now: datetime) -> float:
        # between `one` reading the state and writing it, `two` evaluates the same round
        inner.extend(evaluate(two, [rule], lambda r, n: value, now=now, notifier=theirs))
        return value

    try:
        lost = evaluate(one, [rule], racing, now=T0, notifier=mine)[0]  # the first row: INSERT
        assert (inner[0].state, inner[0].event) == ("firing", "fired")
        assert (lost.state, lost.event, lost.incident, lost.detail) == (
            "firing", None, inner[0].incident, LOST,
        )  # fmt: skip
        value = 0.0
        lost = evaluate(one, [rule], racing, now=T0 + timedelta(minutes=1), notifier=mine)[0]
        assert (inner[1].state, inner[1].event) == ("resolved", "resolved")  # an UPDATE
        assert (lost.state, lost.event, lost.detail) == ("ok", None, LOST)
        assert mine.sent == []
        assert [p["status"] for p in theirs.sent] == ["firing", "resolved"]
        assert len(alert_history(one)) == 1
    finally:
        one.close()
        two.close()


def test_two_engines_racing_round_after_round_notify_each_change_once(
    backend: str, tmp_path: Path
) -> None:
    url = database_url(backend, tmp_path)
    rule, notifier, rounds = race_rule(), Recorder(), 10
    gate = threading.Barrier(2)
    outcomes: list[AlertOutcome] = []
    failures: list[BaseException] = []

    def source(rule: ParsedRule, now: datetime) -> float:
        gate.wait(timeout=30)  # both engines have read the state: they race for the write
        minute = round((now - T0).total_seconds() / 60)
        return 0.5 if minute % 2 == 0 else 0.0  # breach, clear, breach, ...

    def engine() -> None:
        db = Database(url)
        try:
            for minute in range(rounds):
                now = T0 + timedelta(minutes=minute)
                outcomes.extend(evaluate(db, [rule], source, now=now, notifier=notifier))
        except BaseException as exc:
            failures.append(exc)
            gate.abort()
        finally:
            db.close()

    threads = [threading.Thread(target=engine) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert [p["status"] for p in notifier.sent] == ["firing", "resolved"] * (rounds // 2)
    assert sum(o.detail == LOST for o in outcomes) == rounds  # one loser per round
    assert sorted(o.event or "-" for o in outcomes) == sorted(
        ["fired", "resolved"] * (rounds // 2) + ["-"] * rounds
    )
    db = Database(url)
    incidents = alert_history(db)
    db.close()
    assert len(incidents) == rounds // 2
    assert all(i.resolved_at is not None and i.notified for i in incidents)


# --- yard monitor check, end to end ------------------------------------------------------------


def frame(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=rows) + shift, "b": rng.normal(size=rows) + shift})


def config(path: Path, *, hook: str, out: Path, threshold: float = 0.5) -> None:
    path.write_text(f"""
[monitoring.alerts]
webhooks = ["{hook}/all"]
attempts = 4
backoff_s = 0.01
timeout_s = 5

[[monitoring.alerts.rules]]
name = "churn-drift"
deployment = "churn"
metric = "drift_share"
op = ">="
threshold = {threshold}
window = "1h"
webhooks = ["{hook}"]
command = "cat > {out}"

[[monitoring.alerts.rules]]
name = "churn-latency"
deployment = "churn"
metric = "p99_latency_ms"
op = ">"
threshold = 250
window = "1h"

[[monitoring.alerts.rules]]
name = "churn-volume"
deployment = "churn"
metric = "rows"
threshold = 1
window = "1h"
for = "30m"

[[monitoring.alerts.rules]]
name = "ghost-errors"
deployment = "ghost"
metric = "error_rate"
threshold = 0.05
window = "15m"
""")


def yard(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [YARD, "monitor", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def churn_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with model ``churn`` registered and 600 drifted predictions in its log, over the
    40 minutes before ``NOW``; tests take a copy."""
    home = tmp_path_factory.mktemp("churn") / "home"
    registry = Registry(
        database_url=f"sqlite:///{home / 'modelyard.db'}", artifact_root=str(home / "artifacts")
    )
    X = frame(2_000, 1)
    model = LogisticRegression().fit(X, (X["a"] > 0).astype(int))
    registry.register(model, name="churn", data=X)
    registry.close()
    current = frame(600, 2, shift=1.5)
    times = [NOW - timedelta(minutes=40) + timedelta(seconds=3 * i) for i in range(600)]
    write_log(home / "predictions", "churn", current, times, model="churn", version="1",
              predict=model.predict(current))  # fmt: skip
    return home


def test_the_log_source_reads_each_window_once_per_round(churn_home: Path, tmp_path: Path) -> None:
    home, now = shutil.copytree(churn_home, tmp_path / "home"), NOW
    registry = Registry(
        database_url=f"sqlite:///{home / 'modelyard.db'}", artifact_root=str(home / "artifacts")
    )
    source = metric_source(registry, str(home / "predictions"))
    drift, rows, ghost = validate_rules([
        AlertRule(name="d", deployment="churn", metric="drift_share", threshold=0.5),
        AlertRule(name="r", deployment="churn", metric="rows", threshold=1),
        AlertRule(name="g", deployment="ghost", metric="error_rate", threshold=0.1),
    ])  # fmt: skip
    assert source(drift, now) == 1.0  # both columns shifted
    shutil.rmtree(home / "predictions" / "deployment=churn")
    assert source(rows, now) == 600  # the same window in the same round: not read again
    assert source(rows, now + timedelta(seconds=1)) == 0  # a new round reads the log again
    missing = source(ghost, now)  # nothing logged: no data, with the reason a typo would need
    assert isinstance(missing, NoData) and missing.reason.startswith("deployment 'ghost' has no ")
    registry.close()


def in_process(*args: str) -> int | str | None:
    """``yard ARGS`` in this process (its exit code): a CLI start costs seconds here."""
    from modelyard.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(list(args))
    return exited.value.code


def test_yard_monitor_check_fires_once_retries_the_webhook_and_resolves(
    churn_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = shutil.copytree(churn_home, tmp_path / "home")

    toml, out = tmp_path / "modelyard.toml", tmp_path / "alert.json"
    env = server_env(home, MODELYARD_CONFIG=str(toml))
    with Receiver() as hook:
        hook.statuses = [500, 500]  # the rule's webhook fails twice, then takes it
        config(toml, hook=hook.url, out=out)
        first = yard(env, "check")
        assert first.returncode == 0, first.stderr
        lines = {line.split()[1]: line for line in first.stdout.splitlines() if "churn" in line}
        assert "FIRING (new)" in lines["churn-drift"]
        assert lines["churn-latency"].rstrip(" │").endswith("ok")
        assert "pending since" in lines["churn-volume"]
        assert "no data" in first.stdout  # ghost-errors: nothing logged
        assert hook.paths == ["/hook", "/hook", "/hook", "/hook/all"]  # retried, then all
        fired = [json.loads(body) for body in hook.bodies]
        assert fired[2] == fired[3]
        assert fired[2]["status"] == "firing" and fired[2]["rule"] == "churn-drift"
        assert fired[2]["value"] >= 0.5 and fired[2]["incident"] == 1
        assert json.loads(out.read_text()) == fired[2]  # the command read it on stdin

        again = yard(env, "check", "--json", "--fail-on-firing")
        assert again.returncode == 1, again.stderr
        states = {o["rule"]: o for o in json.loads(again.stdout)}
        assert (states["churn-drift"]["state"], states["churn-drift"]["event"]) == ("firing", None)
        assert states["ghost-errors"]["state"] == "no_data"
        assert len(hook.bodies) == 4  # once per incident

        # the condition clears; this round runs in-process (a CLI start costs seconds here)
        config(toml, hook=hook.url, out=out, threshold=1.5)
        monkeypatch.setenv("MODELYARD_CONFIG", str(toml))
        settings = Settings(home=home)
        registry = Registry(settings)
        cleared = {o.rule: o for o in check_alerts(registry, settings)}
        registry.close()
        drift = cleared["churn-drift"]
        assert (drift.state, drift.event, drift.incident) == ("resolved", "resolved", 1)
        resolved = [json.loads(body) for body in hook.bodies[4:]]
        assert [p["status"] for p in resolved] == ["resolved", "resolved"]
        assert resolved[0]["resolved_at"] is not None

    monkeypatch.setenv("MODELYARD_HOME", str(home))
    assert in_process("monitor", "alerts", "--json") == 0  # like the last round
    (incident,) = json.loads(capsys.readouterr().out)
    assert incident["resolved_at"] is not None
    assert (incident["rule"], incident["notified"], incident["resolve_notified"]) == (
        "churn-drift", True, True,
    )  # fmt: skip
    assert (incident["command_exit"], incident["notify_error"]) == (0, None)
    assert in_process("monitor", "alerts", "--rule", "churn-drift") == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if "churn-drift" in line]
    assert row.split("│")[-3:-1] == [" yes      ", " exit 0  "]


def test_an_invalid_rule_stops_yard_monitor_check_before_anything_is_written(
    tmp_path: Path,
) -> None:
    home, toml = tmp_path / "home", tmp_path / "modelyard.toml"
    toml.write_text("""
[[monitoring.alerts.rules]]
name = "fine"
deployment = "churn"
metric = "rows"
threshold = 1

[[monitoring.alerts.rules]]
name = "typo"
deployment = "churn"
metric = "drift-share"
threshold = 0.5
""")
    env = server_env(home, MODELYARD_CONFIG=str(toml))
    bad = yard(env, "check")
    assert bad.returncode == 1
    assert bad.stderr == (
        "error: Alert rule 'typo' (monitoring.alerts.rules[1]): metric 'drift-share' is unknown; "
        "use drift_share, drift:<column>, null_drift:<column>, output_drift:<name>, error_rate, "
        "p50_latency_ms, p99_latency_ms, rows, performance:<metric>, estimated:<metric>, "
        "reconstruction_error or outcome:<mean|sum|count>.\n"
    )
    assert not (home / "modelyard.db").exists()


def test_a_rule_pydantic_refuses_is_one_line_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "modelyard.toml"
    toml.write_text("""
[[monitoring.alerts.rules]]
name = "typo"
deployment = "churn"
metric = "rows"
op = "=>"
threshold = 1
""")
    monkeypatch.setenv("MODELYARD_CONFIG", str(toml))
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    assert in_process("monitor", "check") == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "error: Invalid setting monitoring.alerts.rules[0].op = '=>' (Input should be '>', '>=', "
    )
    assert err.endswith(f"fix it in {toml} or the MODELYARD_ environment variables.\n")
    assert err.count("\n") == 1
    assert not (tmp_path / "home").exists()


def test_check_reports_rules_it_cannot_evaluate_and_failed_notifications(
    churn_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = shutil.copytree(churn_home, tmp_path / "home")
    times = [NOW - timedelta(minutes=5)] * 10
    write_log(home / "predictions", "orphan", frame(10, 3), times, model="gone", version="1")
    toml = tmp_path / "modelyard.toml"
    with Receiver() as hook:
        hook.statuses = [404]
        toml.write_text(f"""
[[monitoring.alerts.rules]]
name = "orphan-drift"
deployment = "orphan"
metric = "drift_share"
threshold = 0.5

[[monitoring.alerts.rules]]
name = "churn-drift"
deployment = "churn"
metric = "drift_share"
threshold = 0.5
webhooks = ["{hook.url}/T0/s3cr3t"]
""")
        monkeypatch.setenv("MODELYARD_CONFIG", str(toml))
        monkeypatch.setenv("MODELYARD_HOME", str(home))
        assert in_process("monitor", "check") == 1
    out, err = capsys.readouterr()
    assert "FIRING (new)" in out
    assert err.splitlines() == [
        "error: rule 'orphan-drift' was not evaluated: No model named 'gone' is registered; run "
        "'yard models list' to see the models.",
        f"warning: rule 'churn-drift': notification failed: http://127.0.0.1:{hook.port}/…: "
        "HTTP 404 after 1 attempt",
    ]


def lin_server(home: Path, config: Path, log: Path) -> Any:
    """A ready 'yard serve lin/1' logging to ``log`` (flushed every 0.2 s) with ``config``'s
    rules, evaluated by its own rounds (drift gauges off)."""
    from tests.integration._server import Server

    env = server_env(
        home,
        MODELYARD_CONFIG=str(config),
        MODELYARD_MONITORING__LOG_ROOT=str(log),
        MODELYARD_MONITORING__FLUSH_INTERVAL_S="0.2",
        MODELYARD_MONITORING__DRIFT__INTERVAL_S="0",
    )
    return Server(home, "lin/1", "--log-predictions", env=env).wait_ready()


def test_a_logging_server_evaluates_the_rules_and_fires_once(
    served_home: Any, tmp_path: Path
) -> None:
    import time

    import httpx

    with Receiver() as receiver:
        config = tmp_path / "modelyard.toml"
        config.write_text(
            "[monitoring.alerts]\n"
            "interval_s = 0.3\n"
            "[[monitoring.alerts.rules]]\n"
            'name = "busy"\ndeployment = "lin"\nmetric = "rows"\nop = ">="\nthreshold = 5\n'
            f'window = "1h"\nwebhooks = ["{receiver.url}"]\n'
        )
        server = lin_server(served_home.home, config, tmp_path / "log")
        try:
            with httpx.Client(timeout=10) as client:
                for i in range(8):
                    body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64",
                                        "data": [float(i), 1.0, 0.0]}]}  # fmt: skip
                    assert client.post(f"{server.url}/v2/models/lin/infer", json=body).is_success
            deadline = time.monotonic() + 30
            while not receiver.bodies and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.5)  # several more rounds: the incident must not be notified again
        finally:
            assert server.stop() == 0, server.log.read_text()
    assert len(receiver.bodies) == 1, server.log.read_text()
    payload = json.loads(receiver.bodies[0])
    assert (payload["status"], payload["rule"]) == ("firing", "busy")
    assert 5.0 <= payload["value"] <= 8.0  # the rows logged when a round first saw >= 5


def test_a_null_drift_rule_fires_when_a_columns_share_of_nulls_jumps(
    churn_home: Path, tmp_path: Path
) -> None:
    """The drift computation flags a column whose share of nulls moved (e5b109f); a rule
    watches it as null_drift:<column>, the test's p-value (1 below one point of change)."""
    home = shutil.copytree(churn_home, tmp_path / "home")
    holes = frame(600, 3)  # the values as trained, but a third of them missing
    holes.loc[holes.index % 3 == 0, "a"] = np.nan
    times = [NOW - timedelta(minutes=40) + timedelta(seconds=3 * i) for i in range(600)]
    write_log(home / "predictions", "holes", holes, times, model="churn", version="1",
              predict=np.zeros(600, dtype=np.int64))  # fmt: skip
    toml = tmp_path / "modelyard.toml"
    toml.write_text("".join(
        f'[[monitoring.alerts.rules]]\nname = "{name}"\ndeployment = "{name}"\n'
        'metric = "null_drift:a"\nop = "<"\nthreshold = 0.05\n'
        for name in ("churn", "holes")
    ))  # fmt: skip
    out = yard(server_env(home, MODELYARD_CONFIG=str(toml)), "check", "--json")
    assert out.returncode == 0, out.stderr
    found = {o["rule"]: (o["state"], o["value"]) for o in json.loads(out.stdout)}
    assert found["holes"][0] == "firing" and found["holes"][1] < 1e-6
    assert found["churn"] == ("ok", 1.0)  # its values drifted, its nulls did not


def test_a_server_logs_each_warning_of_its_rules_once(served_home: Any, tmp_path: Path) -> None:
    """From the new-user trial: 'yard monitor check' named a rule's unknown key and the column
    its log lacks, the server's own rounds said nothing. It logs each once: the unknown key at
    start, what the log lacks at the first round that sees it."""
    import time

    import httpx

    config = tmp_path / "modelyard.toml"
    config.write_text(
        "[monitoring.alerts]\ninterval_s = 0.3\n"
        '[[monitoring.alerts.rules]]\nname = "typo-key"\ndeployment = "lin"\n'
        'metric = "rows"\nthreshold = 1e9\nwindw = "2h"\n'
        '[[monitoring.alerts.rules]]\nname = "typo-column"\ndeployment = "lin"\n'
        'metric = "drift:nocol"\nthreshold = 0.5\n'
    )
    lacks = (
        "WARNING modelyard.serving.monitor: alert rule 'typo-column': deployment 'lin' has no "
        "input column 'nocol' (its columns: a, b, c); check the rule's metric."
    )
    server = lin_server(served_home.home, config, tmp_path / "log")
    try:
        body = {"inputs": [{"name": c, "shape": [1], "datatype": "FP64", "data": [1.0]}
                           for c in "abc"]}  # fmt: skip
        for _ in range(3):
            assert httpx.post(f"{server.url}/v2/models/lin/infer", json=body).is_success
        deadline = time.monotonic() + 30
        while lacks not in server.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # several more rounds: logged once
    finally:
        assert server.stop() == 0, server.log.read_text()
    lines = server.log.read_text().splitlines()
    unknown = (
        "WARNING modelyard.serving.server: Alert rule 'typo-key' (monitoring.alerts.rules[0]): "
        "unknown key 'windw' is ignored; did you mean 'window'? a rule takes name, deployment, "
        "metric, op, threshold, window, for, webhooks, command."
    )
    assert lines.count(unknown) == 1, "\n".join(lines)
    assert lines.count(lacks) == 1, "\n".join(lines)


def test_a_server_with_an_invalid_rule_does_not_start(served_home: Any, tmp_path: Path) -> None:
    config = tmp_path / "modelyard.toml"
    config.write_text(
        '[[monitoring.alerts.rules]]\nname = "bad"\ndeployment = "lin"\n'
        'metric = "drift-share"\nthreshold = 0.3\n'
    )
    env = server_env(served_home.home, MODELYARD_CONFIG=str(config))
    out = subprocess.run(
        [YARD, "serve", "lin/1", "--log-predictions", "--port", "0"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode != 0
    assert "Alert rule 'bad'" in out.stderr and "drift-share" in out.stderr, out.stderr


def test_a_deployment_whose_log_cannot_be_read_does_not_stop_the_other_rules(
    churn_home: Path, tmp_path: Path
) -> None:
    """A truncated log file makes the first rule's deployment unreadable: that rule is reported
    as not evaluated (one line, no traceback) and the check exits 1, while the rules after it
    are evaluated, fire and record their incident."""
    home = shutil.copytree(churn_home, tmp_path / "home")
    times = [NOW - timedelta(minutes=5)] * 10
    write_log(home / "predictions", "broken", frame(10, 3), times, model="churn", version="1")
    (log,) = (home / "predictions").glob("deployment=broken/*/*.parquet")
    log.write_bytes(log.read_bytes()[:100])
    toml = tmp_path / "modelyard.toml"
    toml.write_text("""
[[monitoring.alerts.rules]]
name = "broken-rows"
deployment = "broken"
metric = "rows"
threshold = 1

[[monitoring.alerts.rules]]
name = "churn-rows"
deployment = "churn"
metric = "rows"
op = ">="
threshold = 1
""")
    env = server_env(home, MODELYARD_CONFIG=str(toml))
    out = yard(env, "check", "--json")
    assert out.returncode == 1 and out.stdout.startswith("["), out.stderr
    states = {o["rule"]: o for o in json.loads(out.stdout)}
    assert states["broken-rows"]["state"] == "error"
    assert (states["churn-rows"]["state"], states["churn-rows"]["value"]) == ("firing", 600)
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: rule 'broken-rows' was not evaluated: {states['broken-rows']['detail']}"
    ]
    assert "could not be read" in errors[0] and "yard --debug monitor check" in errors[0]
    assert "Traceback" not in out.stderr
    db = Database(f"sqlite:///{home / 'modelyard.db'}")
    assert [i.rule for i in alert_history(db)] == ["churn-rows"]
    db.close()


def test_the_servers_gauges_skip_a_deployment_whose_log_cannot_be_read(
    churn_home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server's monitoring loop exports the gauges of the deployments it can read when
    another one's log is corrupt, and logs which one it skipped."""
    from modelyard.serving.metrics import ServingMetrics
    from modelyard.serving.monitor import MonitorLoop

    home = shutil.copytree(churn_home, tmp_path / "home")
    times = [NOW - timedelta(minutes=5)] * 10
    write_log(home / "predictions", "broken", frame(10, 3), times, model="churn", version="1")
    (log,) = (home / "predictions").glob("deployment=broken/*/*.parquet")
    log.write_bytes(log.read_bytes()[:100])
    settings = Settings(home=home)
    registry, metrics = Registry(settings), ServingMetrics()
    try:
        MonitorLoop(registry, settings, metrics, lambda: ["broken", "churn"]).refresh_gauges()
    finally:
        registry.close()
    gauges = metrics.render()[0].decode()
    assert 'modelyard_window_rows{deployment="churn"}' in gauges
    assert 'deployment="broken"' not in gauges
    assert any("broken" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_rules_naming_what_the_log_lacks_warn_and_the_check_still_passes(
    churn_home: Path, tmp_path: Path
) -> None:
    """A typo in a rule's deployment, input column or output stays no data (the deployment may
    not be served yet), but the check says what the log lacks on stderr, one line a rule."""
    home = shutil.copytree(churn_home, tmp_path / "home")
    toml = tmp_path / "modelyard.toml"
    toml.write_text("""
[[monitoring.alerts.rules]]
name = "typo-deployment"
deployment = "chrun"
metric = "error_rate"
threshold = 0.1

[[monitoring.alerts.rules]]
name = "typo-column"
deployment = "churn"
metric = "drift:nocol"
threshold = 0.5

[[monitoring.alerts.rules]]
name = "typo-output"
deployment = "churn"
metric = "output_drift:nope"
threshold = 0.5

[[monitoring.alerts.rules]]
name = "fine"
deployment = "churn"
metric = "drift:a"
threshold = 100
windw = "2h"
""")
    out = yard(server_env(home, MODELYARD_CONFIG=str(toml)), "check", "--json")
    assert out.returncode == 0, out.stderr
    states = {o["rule"]: o["state"] for o in json.loads(out.stdout)}
    assert states == {
        "typo-deployment": "no_data", "typo-column": "no_data", "typo-output": "no_data",
        "fine": "ok",
    }  # fmt: skip
    root = home / "predictions"
    assert out.stderr.splitlines() == [
        "warning: Alert rule 'fine' (monitoring.alerts.rules[3]): unknown key 'windw' is "
        "ignored; did you mean 'window'? a rule takes name, deployment, metric, op, threshold, "
        "window, for, webhooks, command.",
        f"warning: rule 'typo-deployment': deployment 'chrun' has no prediction log under {root} "
        "(logged: churn); check the rule's deployment, or serve it with 'yard serve "
        "--log-predictions'.",
        "warning: rule 'typo-column': deployment 'churn' has no input column 'nocol' (its "
        "columns: a, b); check the rule's metric.",
        "warning: rule 'typo-output': deployment 'churn' has no output 'nope' compared (its "
        "outputs: predict); check the rule's metric.",
    ]
