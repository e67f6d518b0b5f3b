"""Labels on a real server: predictions with known request ids, ``POST /v1/labels``, then
``yard labels performance`` and ``yard labels ingest`` against the same prediction log."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.datasets import make_classification
from typer.testing import CliRunner

from modelyard.cli.main import app
from modelyard.errors import PredictionLogEmptyError
from modelyard.serving.tokens import create_token
from tests.integration._server import YARD, Server, server_env
from tests.integration.conftest import ServedHome


def yard(env: dict[str, str], *args: str) -> str:
    """``yard ARGS`` in this process (the CLI's imports are paid once); its stdout."""
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def token(served_home: ServedHome, model: str | None) -> str:
    registry = served_home.registry()
    try:
        text, _ = create_token(registry.db, scope="predict", model=model, expires=None,
                               created_by="test")  # fmt: skip
    finally:
        registry.close()
    return text


def label_files(log: Path) -> list[Path]:
    return sorted((log / "labels").rglob("*.parquet")) if (log / "labels").exists() else []


def refused_file(env: dict[str, str], log: Path, name: str, lines: str) -> str:
    """The stderr of 'yard labels ingest NAME bad.csv' (request_id,label then ``lines``), run
    as a user runs it, which exits 1 and writes nothing."""
    bad = log.parent / "bad.csv"
    bad.write_text(f"request_id,label\n{lines}\n")
    before = label_files(log)
    refused = subprocess.run([YARD, "labels", "ingest", name, str(bad)], env=env,
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert refused.returncode == 1
    assert label_files(log) == before
    return refused.stderr


def hgb_body(rows: np.ndarray) -> dict[str, object]:
    inputs = [
        {"name": f"f{j}", "shape": [len(rows)], "datatype": "FP64", "data": rows[:, j].tolist()}
        for j in range(rows.shape[1])
    ]
    return {"inputs": inputs, "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}


def test_labels_posted_to_the_server_and_ingested_by_the_cli(
    served_home: ServedHome, tmp_path: Path
) -> None:
    X, y = make_classification(n_samples=2000, n_features=20, random_state=0)  # hgb's data
    X, y = X[:60], y[:60]
    log = tmp_path / "log"
    env = server_env(served_home.home, MODELYARD_MONITORING__LOG_ROOT=str(log))
    hgb_token = token(served_home, "hgb")
    lin_token = token(served_home, "lin")
    any_token = token(served_home, None)
    auth = {"Authorization": f"Bearer {hgb_token}"}
    # 30 single-row requests, then 10 requests of three rows: keys (request id, row)
    requests = [(f"one-{i}", [i]) for i in range(30)]
    requests += [(f"three-{k}", [30 + 3 * k, 31 + 3 * k, 32 + 3 * k]) for k in range(10)]
    predicted = np.zeros(60, dtype=np.int64)
    proba = np.zeros((60, 2))
    server = Server(served_home.home, "hgb/1", "--log-predictions", "--auth", env=env)
    server.wait_ready()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for request_id, rows in requests:
                headers = {**auth, "X-Request-Id": request_id}
                answer = client.post(
                    "/v2/models/hgb/infer", json=hgb_body(X[rows]), headers=headers
                )
                assert answer.status_code == 200, answer.text
                outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
                predicted[rows] = outputs["predict"]
                proba[rows] = np.reshape(outputs["predict_proba"], (len(rows), 2))
            labels = [
                {"request_id": request_id, "row": j, "label": int(y[i])}
                for request_id, rows in requests
                for j, i in enumerate(rows)
            ]
            labels += [{"request_id": "never-sent", "label": 1, "time": "2026-05-01T12:00:00Z"}]
            labels += [{"request_id": "never-sent-either", "label": 0, "time": 1777636800}]
            body = {"deployment": "hgb", "labels": labels}

            def post(payload: object, headers: dict[str, str] | None = None) -> httpx.Response:
                return client.post("/v1/labels", json=payload, headers=auth if headers is None
                                   else headers)  # fmt: skip

            # refused: nothing is written
            assert post(body, {}).status_code == 401
            assert post(body, {"Authorization": f"Bearer {lin_token}"}).status_code == 403
            missing = post({"deployment": "hgb", "labels": [{"request_id": "one-1"}]})
            assert missing.status_code == 400
            assert missing.json()["error"].startswith(
                "The labels body is not valid: Object missing required field `label` - at "
                "`$.labels[0]`;"
            )
            twice = post({"deployment": "hgb", "labels": [labels[0], labels[0]]})
            assert twice.status_code == 400
            assert twice.json()["error"] == (
                "1 request id appears more than once in the labels ('one-0'); keep one label "
                "per request (and row)."
            )
            assert client.post("/v1/labels", content=b"{", headers=auth).status_code == 400
            assert post({"deployment": "hgb", "labels": []}).status_code == 400
            ghost = post(
                {"deployment": "ghost", "labels": labels[:1]},
                {"Authorization": f"Bearer {any_token}"},
            )
            assert ghost.status_code == 404
            assert "No predictions are logged for deployment 'ghost'" in ghost.json()["error"]
            assert client.get("/v1/labels", headers=auth).status_code == 405
            assert label_files(log) == []

            accepted = post(body)
            assert accepted.status_code == 202, accepted.text
            assert accepted.json() == {"accepted": 62}
            every = {"Authorization": f"Bearer {any_token}"}  # the API lists every model
            assert "/v1/labels" in client.get("/openapi.json", headers=every).json()["paths"]
    finally:
        assert server.stop() == 0, server.log.read_text()
    assert len(label_files(log)) == 1

    # the task and classes come from the registry (hgb/1 is a classifier)
    result = json.loads(yard(env, "labels", "performance", "hgb", "--window", "1h", "--json"))
    normalised = proba / proba.sum(axis=1, keepdims=True)
    assert result["task"] == "classification"
    assert result["metrics"] == pytest.approx({
        "accuracy": skm.accuracy_score(y, predicted),
        "precision": skm.precision_score(y, predicted),
        "recall": skm.recall_score(y, predicted),
        "f1": skm.f1_score(y, predicted),
        "roc_auc": skm.roc_auc_score(y, proba[:, 1]),
        "log_loss": skm.log_loss(y, normalised),
    }, rel=1e-6)  # fmt: skip
    assert result["counts"] == dict.fromkeys(result["metrics"], 60)
    assert (result["labelled"], result["predictions"], result["unmatched_labels"]) == (60, 60, 2)

    # the CLI: a later file relabels three requests (the latest label wins) and one unknown id
    relabel = tmp_path / "relabel.csv"
    flipped = [0, 1, 2]
    lines = [f"one-{i},{1 - y[i]}" for i in flipped] + ["not-logged,1"]
    relabel.write_text("request_id,label\n" + "\n".join(lines) + "\n")
    ingested = json.loads(yard(env, "labels", "ingest", "hgb", str(relabel), "--json"))
    assert (ingested["rows"], ingested["matched"], ingested["unmatched"]) == (4, 3, 1)
    assert Path(ingested["path"]).parent == log / "labels" / "deployment=hgb"
    y_now = y.copy()
    y_now[flipped] = 1 - y_now[flipped]
    after = json.loads(yard(env, "labels", "performance", "hgb", "--json"))
    assert after["metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(y_now, predicted))
    assert after["unmatched_labels"] == 3

    table = yard(env, "labels", "performance", "hgb", "--window", "1h")
    assert "classification performance of hgb, predictions of the last 1h" in table
    assert "roc_auc" in table and "labelled: 60 of 60 predictions" in table
    assert "labels matching no logged prediction: 3" in table
    text = yard(env, "labels", "ingest", "hgb", str(relabel))
    assert "4 labels written for hgb" in text and "matched a logged prediction: 3" in text

    # a bad file, as a user runs it: one line on stderr, exit 1, nothing written
    assert refused_file(env, log, "hgb", "one-1,1\none-1,0") == (
        "error: 1 request id appears more than once in labels file 'bad.csv' ('one-1'); keep "
        "one label per request (and row).\n"
    )
    with pytest.raises(PredictionLogEmptyError, match=r"^No predictions logged for 'ghost' at all"):
        yard(env, "labels", "performance", "ghost")


def test_a_server_without_the_prediction_log_refuses_labels_and_outcomes(
    served_home: ServedHome,
) -> None:
    body = {"deployment": "lin", "labels": [{"request_id": "a", "label": 1.0}]}
    outcomes = {"deployment": "lin", "outcomes": [{"request_id": "a", "value": 1.0}]}
    with Server(served_home.home, "lin/1") as server:
        answer = httpx.post(f"{server.url}/v1/labels", json=body)
        refused = httpx.post(f"{server.url}/v1/outcomes", json=outcomes)
    assert answer.status_code == 409
    assert answer.json() == {
        "error": "This server does not log predictions, so labels have nothing to join; start "
        "it with 'yard serve --log-predictions'."
    }
    assert refused.status_code == 409
    assert refused.json() == {
        "error": "This server does not log predictions, so outcomes have nothing to join; start "
        "it with 'yard serve --log-predictions'."
    }


def test_a_label_that_cannot_be_scored_is_refused_before_it_replaces_a_good_one(
    served_home: ServedHome, tmp_path: Path
) -> None:
    """From the new-user trial: a regressor's label "abc" (or true) sent after a good one
    replaced it, and was then dropped from the metrics, so the good label was lost."""
    log = tmp_path / "log"
    env = server_env(served_home.home, MODELYARD_MONITORING__LOG_ROOT=str(log))
    lin_body = {"inputs": [{"name": c, "shape": [1], "datatype": "FP64", "data": [1.0]}
                           for c in "abc"]}  # fmt: skip
    X = served_home.X.to_numpy()
    server = Server(served_home.home, "hgb/1", "lin/1", "--log-predictions", env=env)
    server.wait_ready()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            answer = client.post("/v2/models/lin/infer", json=lin_body,
                                 headers={"X-Request-Id": "lin-1"})  # fmt: skip
            assert answer.status_code == 200, answer.text
            answer = client.post("/v2/models/hgb/infer", json=hgb_body(X[:1]),
                                 headers={"X-Request-Id": "hgb-1"})  # fmt: skip
            assert answer.status_code == 200, answer.text

            def post(name: str, *labels: object) -> httpx.Response:
                body = {"deployment": name, "labels": [
                    {"request_id": f"{name}-{i + 1}", "label": label}
                    for i, label in enumerate(labels)
                ]}  # fmt: skip
                return client.post("/v1/labels", json=body)

            assert post("lin", 120.0).status_code == 202
            written = label_files(log)
            for bad, shown in (("abc", "'abc'"), (True, "True"), ("nan", "'nan'")):
                refused = post("lin", bad)
                assert refused.status_code == 400, refused.text
                assert refused.json()["error"] == (
                    f"Label {shown} of request 'lin-1' (row 1 of the labels) is not a number, "
                    "and model lin/1 is a regressor (its predictions are numbers); send the "
                    "observed value as a number."
                )
            assert label_files(log) == written
            # a classifier with integer classes: text is no class of it, an unseen class is
            refused = post("hgb", "yes")
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"] == (
                "Label 'yes' of request 'hgb-1' (row 1 of the labels) cannot be a class of "
                "model hgb/1, whose classes are numbers (0, 1); send the observed class as a "
                "number."
            )
            assert label_files(log) == written
            assert post("hgb", 7).status_code == 202
    finally:
        assert server.stop() == 0, server.log.read_text()

    result = json.loads(yard(env, "labels", "performance", "lin", "--json"))
    assert (result["labelled"], result["counts"]) == (1, {"mae": 1, "rmse": 1})
    good = result["metrics"]["mae"]
    # the CLI refuses a file the same way, naming its line, and writes nothing
    assert refused_file(env, log, "lin", "lin-1,abc") == (
        "error: Label 'abc' of request 'lin-1' (line 2 of labels file 'bad.csv') is not a "
        "number, and model lin/1 is a regressor (its predictions are numbers); send the "
        "observed value as a number.\n"
    )
    after = json.loads(yard(env, "labels", "performance", "lin", "--json"))
    assert after["metrics"]["mae"] == good
