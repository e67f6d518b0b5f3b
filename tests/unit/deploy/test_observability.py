"""``yard observability``: the rules pass promtool's checks and unit tests, the dashboard is a
well-formed Grafana model over metrics the server exports, and bad input changes nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.cli.main import main
from modelyard.deploy import _folder
from modelyard.deploy import observability as obs
from modelyard.deploy.observability import (
    AlertThresholds,
    grafana_dashboard,
    rule_groups,
    write_bundle,
)
from modelyard.errors import AlreadyExistsError, InvalidInputError
from tests._prometheus import promtool

#: The prediction log's backlog metrics (another change adds them to the server).
LOG_METRICS = {
    "modelyard_prediction_log_backlog_rows",
    "modelyard_prediction_log_upload_failures_total",
}
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range"}


def exported_series() -> set[str]:
    """Every series name ``yard serve`` can put on /metrics."""
    from modelyard.serving.metrics import ServingMetrics

    names = set()
    for family in ServingMetrics().registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "count", "sum")}
        else:
            names.add(family.name)
    return names


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(modelyard_[a-z_]+)", expr))


def panels_of(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


# -- the rules -----------------------------------------------------------------------------------


def test_the_rules_pass_promtool_check(tmp_path: Path) -> None:
    write_bundle(tmp_path / "b", runbook_url="https://wiki.example.com/RUNBOOK.md")
    done = promtool("check", "rules", str(tmp_path / "b" / obs.RULES_FILE))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout


@pytest.mark.parametrize(
    "thresholds",
    [
        AlertThresholds(),
        AlertThresholds(error_ratio=0.9, p99_ms=0.2, queue_saturation=1.0, max_queue=1,
                        drift_share=1.0, log_backlog_rows=1),
        # p99 past the last finite bucket: Prometheus answers the largest finite bound (10 s)
        AlertThresholds(error_ratio=0.001, p99_ms=9_999, queue_saturation=0.05, max_queue=64,
                        drift_share=0.3, log_backlog_rows=250_000),
    ],
    ids=["defaults", "edges", "others"],
)  # fmt: skip
def test_each_alert_fires_and_stays_quiet_in_promtool_unit_tests(
    tmp_path: Path, thresholds: AlertThresholds
) -> None:
    write_bundle(tmp_path / "b", thresholds=thresholds)
    done = promtool("test", "rules", obs.RULES_TEST_FILE, cwd=tmp_path / "b")
    assert done.returncode == 0, done.stdout + done.stderr
    tests = yaml.safe_load((tmp_path / "b" / obs.RULES_TEST_FILE).read_text())["tests"]
    alerts = [r["alert"] for g in rule_groups(thresholds) for r in g["rules"]]
    assert [t["name"] for t in tests] == alerts
    for test in tests:  # each alert is seen firing, and seen not firing
        checks = test["alert_rule_test"]
        assert any(c["exp_alerts"] for c in checks) and any(not c["exp_alerts"] for c in checks)


def test_the_unit_tests_fail_when_the_rules_change(tmp_path: Path) -> None:
    """The generated tests can fail: rules made for other thresholds, or that lose a label the
    annotations name, do not pass them."""
    write_bundle(tmp_path / "b")
    rules = tmp_path / "b" / obs.RULES_FILE
    other = {"groups": rule_groups(AlertThresholds(error_ratio=0.3, drift_share=0.9))}
    rules.write_text(yaml.safe_dump(other))
    done = promtool("test", "rules", obs.RULES_TEST_FILE, cwd=tmp_path / "b")
    assert done.returncode == 1
    assert "ModelyardErrorRatioHigh" in done.stdout + done.stderr
    assert "ModelyardDriftShareHigh" in done.stdout + done.stderr
    lost = rule_groups()
    lost[0]["rules"][0]["expr"] = str(lost[0]["rules"][0]["expr"]).replace("job, model", "model")
    rules.write_text(yaml.safe_dump({"groups": lost}))
    done = promtool("test", "rules", obs.RULES_TEST_FILE, cwd=tmp_path / "b")
    assert done.returncode == 1


def test_every_alert_has_its_annotations_and_runbook_section(tmp_path: Path) -> None:
    url = "https://wiki.example.com/ops/RUNBOOK.md"
    groups = rule_groups(runbook_url=url)
    assert [g["name"] for g in groups] == ["modelyard-serving", "modelyard-monitoring"]
    files = write_bundle(tmp_path / "b", runbook_url=url)
    runbook = (tmp_path / "b" / obs.RUNBOOK_FILE).read_text()
    sections = set(re.findall(r"^## (\w+)$", runbook, re.M))
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == 8
    for rule in rules:
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}
        assert annotations["runbook_url"] == f"{url}#{rule['alert'].lower()}"
        assert rule["alert"] in sections, rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert metric_names(rule["expr"]) <= exported_series() | LOG_METRICS
    assert "$" not in re.sub(r"\$labels|\$value", "", runbook)  # every placeholder filled
    assert [f.name for f in files] == list(obs.BUNDLE_FILES)
    on_disk = yaml.safe_load((tmp_path / "b" / obs.RULES_FILE).read_text())
    assert on_disk == {"groups": groups}


def test_thresholds_appear_in_the_rules_and_the_runbook(tmp_path: Path) -> None:
    t = AlertThresholds(error_ratio=0.02, p99_ms=250, queue_saturation=0.5, max_queue=64,
                        drift_share=0.25, log_backlog_rows=500)  # fmt: skip
    exprs = {r["alert"]: r["expr"] for g in rule_groups(t) for r in g["rules"]}
    assert exprs["ModelyardErrorRatioHigh"].endswith("> 0.02")
    assert exprs["ModelyardLatencyP99High"].endswith(") > 0.25")
    assert exprs["ModelyardQueueSaturated"].endswith(">= 32")
    assert exprs["ModelyardDriftShareHigh"].endswith(">= 0.25")
    assert exprs["ModelyardPredictionLogBacklog"].endswith("> 500")
    write_bundle(tmp_path / "b", thresholds=t)
    runbook = (tmp_path / "b" / obs.RUNBOOK_FILE).read_text()
    for text in ("> 0.02 |", "> 250 ms", ">= 32 (50% of max_queue 64)", ">= 0.25 |", "> 500 |"):
        assert text in runbook, text


# -- the dashboard -------------------------------------------------------------------------------


def test_the_dashboard_is_a_well_formed_grafana_model() -> None:
    dashboard = grafana_dashboard()
    json.dumps(dashboard)  # plain JSON
    assert dashboard["schemaVersion"] >= 39 and dashboard["uid"] == "modelyard-serving"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("model", "deployment", "route"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert variables[name]["query"].startswith("label_values(")
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert set(grid) == {"h", "w", "x", "y"} and grid["x"] + grid["w"] <= 24
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}  # fmt: skip
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
    for panel in panels_of(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert target["expr"] and target["datasource"] == panel["datasource"]
            used = set(re.findall(r"\$(\w+)", target["expr"]))
            assert used <= set(variables) | GRAFANA_BUILTINS, (panel["title"], used)
            names = metric_names(target["expr"])
            assert names and names <= exported_series() | LOG_METRICS, (panel["title"], names)


def test_the_dashboard_has_the_panels_an_operator_needs() -> None:
    dashboard = grafana_dashboard()
    titles = {p["title"] for p in panels_of(dashboard)}
    assert titles == {
        "Request rate", "Error ratio", "Latency p50 / p99", "Queue wait p50 / p99",
        "Queue depth", "Batch size", "Model compute p50 / p99", "CPU used by model",
        "Model memory", "Model loads",
        "Route request rate", "Route error ratio", "Route latency p99", "Drift share",
        "Drift score per column", "Prediction-log backlog",
    }  # fmt: skip
    exprs = " ".join(t["expr"] for p in panels_of(dashboard) for t in p["targets"])
    p99 = "histogram_quantile(0.99, sum by (model, le) (rate(modelyard_request_seconds_bucket"
    assert p99 in exprs
    assert metric_names(exprs) >= LOG_METRICS
    # the alert thresholds are drawn where they apply
    lines = {p["title"]: p["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"]
             for p in panels_of(grafana_dashboard(AlertThresholds(p99_ms=250)))}  # fmt: skip
    assert lines["Latency p50 / p99"] == 0.25 and lines["Error ratio"] == 0.05


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"error_ratio": 1.0}, "error_ratio=1 must be a share above 0 and below 1"),
        ({"error_ratio": 0}, "error_ratio=0 must be a share above 0"),
        ({"queue_saturation": 1.5}, "queue_saturation=1.5 must be a share above 0 and at most 1"),
        ({"drift_share": -0.1}, "drift_share=-0.1 must be a share"),
        ({"p99_ms": 10_000}, "p99_ms=10000 is outside what the server's latency buckets can show"),
        ({"p99_ms": 0.1}, "p99_ms=0.1 is outside"),
        ({"max_queue": 0}, "max_queue=0 must be a whole number of at least 1"),
        ({"log_backlog_rows": 2.5}, "log_backlog_rows=2.5 must be a whole number"),
        ({"error_ratio": float("nan")}, "error_ratio must be finite"),
        ({"max_queue": "64"}, "max_queue must be a number, not '64'"),
    ],
)
def test_bad_thresholds_are_one_line_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(message)) as caught:
        AlertThresholds(**kwargs)
    assert "\n" not in str(caught.value)


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and its text."""
    return {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()}


def test_a_non_empty_folder_is_kept_unless_forced(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    with pytest.raises(AlreadyExistsError, match="is not empty; pass --force to replace it"):
        write_bundle(target)
    assert [p.name for p in target.iterdir()] == ["mine.txt"]
    with pytest.raises(AlreadyExistsError, match="is not one yard observability wrote"):
        write_bundle(target, force=True)
    assert [p.name for p in target.iterdir()] == ["mine.txt"]


def test_force_replaces_only_a_bundle_yard_observability_wrote(tmp_path: Path) -> None:
    """--force replaced any folder whole: a checkout given as -o lost .git and its sources."""
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main")
    before = tree(repo)
    with pytest.raises(AlreadyExistsError, match="is not one yard observability wrote") as caught:
        write_bundle(repo, force=True)
    assert "\n" not in str(caught.value) and "choose another -o" in str(caught.value)
    assert tree(repo) == before

    bundle = tmp_path / "bundle"
    write_bundle(bundle)
    write_bundle(bundle, thresholds=AlertThresholds(p99_ms=250), force=True)
    assert sorted(p.name for p in bundle.iterdir()) == sorted(
        [*obs.BUNDLE_FILES, ".yard-generated"]
    )
    assert "250 ms" in (bundle / obs.RUNBOOK_FILE).read_text()
    (bundle / "grafana").mkdir()
    (bundle / "grafana" / "provisioning.yaml").write_text("mine")
    before = tree(bundle)
    with pytest.raises(AlreadyExistsError, match="holds grafana and 1 more, which yard observ"):
        write_bundle(bundle, force=True)
    assert tree(bundle) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "repo"]  # no temporary left


def test_a_failed_write_leaves_no_half_bundle(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "bundle"
    write_bundle(target, thresholds=AlertThresholds(p99_ms=250))
    before = tree(target)

    def broken(staging: Path, directory: Path) -> None:
        names = sorted(p.name for p in staging.iterdir())
        assert names == sorted([*obs.BUNDLE_FILES, ".yard-generated"])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_folder, "_swap_into_place", broken)
    with pytest.raises(OSError, match="No space left"):
        write_bundle(target, force=True)
    assert tree(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    with pytest.raises(OSError):
        write_bundle(tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_bad_runbook_url_and_a_file_for_a_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="Runbook URL 'x#y' must be an address"):
        rule_groups(runbook_url="x#y")
    (tmp_path / "f").write_text("")
    with pytest.raises(InvalidInputError, match="is a file; give a folder"):
        write_bundle(tmp_path / "f")
    assert not (tmp_path / "bundle").exists()


# -- the command ---------------------------------------------------------------------------------


def yard(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_command_writes_the_bundle_with_the_servers_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELYARD_SERVING__MAX_QUEUE", "200")
    monkeypatch.setenv("MODELYARD_MONITORING__DRIFT__SHARE_THRESHOLD", "0.4")
    code, out, err = yard(capsys, "observability", "-o", str(tmp_path / "b"), "--p99-ms", "300")
    assert code == 0, err
    assert out.startswith(f"Wrote {tmp_path / 'b'}:") and "promtool test rules" in out
    exprs = {r["alert"]: r["expr"] for g in yaml.safe_load(
        (tmp_path / "b" / obs.RULES_FILE).read_text())["groups"] for r in g["rules"]}  # fmt: skip
    assert exprs["ModelyardQueueSaturated"].endswith(">= 160")  # 0.8 of the settings' 200
    assert exprs["ModelyardDriftShareHigh"].endswith(">= 0.4")
    assert exprs["ModelyardLatencyP99High"].endswith(") > 0.3")
    assert not (tmp_path / "home").exists()  # reading the settings made nothing


def test_the_command_reports_bad_input_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("x")
    code, _, err = yard(capsys, "observability", "-o", str(tmp_path / "b"))
    assert code == 1
    assert err == f"error: Output folder '{tmp_path / 'b'}' is not empty; pass --force to " \
        "replace it or choose another -o.\n"  # fmt: skip
    code, _, err = yard(capsys, "observability", "-o", str(tmp_path / "c"), "--error-ratio", "5")
    assert code == 1 and err.startswith("error: Threshold error_ratio=5 must be a share")
    assert err.count("\n") == 1
    assert not (tmp_path / "c").exists()


def test_the_bundle_gets_the_modes_of_any_new_folder(tmp_path: Path) -> None:
    files = write_bundle(tmp_path / "bundle")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "f").write_text("")
    assert (tmp_path / "bundle").stat().st_mode == (tmp_path / "plain").stat().st_mode
    assert {f.stat().st_mode for f in files} == {(tmp_path / "plain" / "f").stat().st_mode}
