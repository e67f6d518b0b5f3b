"""Monitoring text models end to end: a scikit-learn text classifier (TF-IDF + logistic
regression on a "text" column) registered with skops, served with the prediction log on, and
watched by ``yard monitor drift`` through its text descriptors; a text embedder's logged vectors
compared with its reference sample by the MMD test."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from markupsafe import escape
from sklearn.compose import make_column_transformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline

from modelyard.monitoring.report import render_report
from modelyard.monitoring.service import (
    DriftOptions,
    build_report,
    deployment_drift,
    window_metrics,
)
from modelyard.monitoring.text import descriptor_names
from modelyard.registry import Registry
from tests._logdata import write_log
from tests._textdata import OTHER, texts
from tests.integration._server import YARD, Server, server_env

TEXT_COLUMNS = descriptor_names("text")


def registry_in(home: Path) -> Registry:
    return Registry(
        database_url=f"sqlite:///{home / 'modelyard.db'}", artifact_root=str(home / "artifacts")
    )


def infer(client: httpx.Client, url: str, batch: pd.Series) -> None:
    body = {"inputs": [{"name": "text", "shape": [len(batch)], "datatype": "BYTES",
                        "data": batch.tolist()}]}  # fmt: skip
    response = client.post(f"{url}/v2/models/sentiment/infer", json=body)
    assert response.status_code == 200, response.text


def drifted(columns: list[dict[str, object]]) -> set[str]:
    return {str(c["name"]) for c in columns if c["drifted"]}


def test_a_served_text_classifier_drifts_on_its_text_descriptors(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    registry = registry_in(home)
    X = texts(3_000, 1).to_frame()
    y = X["text"].str.contains("e").astype(int)
    model = make_pipeline(
        make_column_transformer((TfidfVectorizer(), "text")), LogisticRegression()
    ).fit(X, y)
    version = registry.register(model, name="sentiment", data=X, target=y)
    assert [(s.name, s.dtype) for s in version.signature.inputs] == [("text", "string")]
    registry.close()

    root = tmp_path / "log"
    env = server_env(home, MODELYARD_MONITORING__LOG_ROOT=str(root))
    server = Server(home, "sentiment/1", "--log-predictions", env=env)
    with server, httpx.Client(timeout=10) as client:
        calm = texts(400, 2)
        for start in range(0, len(calm), 10):
            infer(client, server.url, calm[start : start + 10])
        time.sleep(0.05)
        between = datetime.now(UTC)
        time.sleep(0.05)
        changed = texts(400, 3, shortest=12, longest=30, accents=0.3)
        for start in range(0, len(changed), 10):
            infer(client, server.url, changed[start : start + 10])
    registry = registry_in(home)
    before = deployment_drift(
        registry, root, "sentiment", window=timedelta(minutes=10), now=between
    )
    assert [c.name for c in before.columns] == TEXT_COLUMNS
    assert before.current_rows == 400
    assert [c.name for c in before.columns if c.drifted] == []
    assert {c.method for c in before.columns} == {"chi2"}  # 400 rows: tests with p-values
    assert [c.name for c in before.outputs] == ["predict"]  # what a v2 request asks for

    out = subprocess.run(
        [YARD, "monitor", "drift", "sentiment", "--last", "400", "--json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(out.stdout)
    assert result["current_rows"] == 400
    assert [c["name"] for c in result["columns"]] == TEXT_COLUMNS
    assert {"text.length_chars", "text.length_tokens", "text.non_ascii_share"} <= drifted(
        result["columns"]
    )
    assert "text.digit_share" not in drifted(result["columns"])
    assert result["dataset_drift"]

    # told that no column is text, the same traffic is one categorical column again
    plain = deployment_drift(
        registry, root, "sentiment", last=400, options=DriftOptions(text_columns=frozenset())
    )
    assert [(c.name, c.kind) for c in plain.columns] == [("text", "categorical")]
    registry.close()


def embedder(registry: Registry, *, example_only: bool = False) -> tuple[Registry, object]:
    """``example_only``: registered with an input example, so without a reference profile or
    sample."""
    X = texts(3_000, 1).to_frame()
    # vectors that are a linear map of the TF-IDF features, so the model does not fit noise in
    # its training texts (its outputs on them then differ from those on fresh texts, and MMD
    # sees that)
    features = TfidfVectorizer().fit_transform(X["text"])
    targets = features @ np.random.default_rng(0).normal(size=(features.shape[1], 8))
    model = make_pipeline(
        make_column_transformer((TfidfVectorizer(), "text")), Ridge(alpha=1e-3)
    ).fit(X, targets)
    given = {"input_example": X.head(20)} if example_only else {"data": X}
    version = registry.register(model, name="embedder", **given)  # type: ignore[arg-type]
    assert [(s.name, s.shape) for s in version.signature.outputs] == [("predict", (-1, 8))]
    return registry, model


def log_hour(root: Path, start: datetime, batch: pd.Series, model: object) -> None:
    frame = batch.to_frame()
    times = [start + timedelta(seconds=3000 * i / len(frame)) for i in range(len(frame))]
    # fixed request ids: the drift sample is the rows with the smallest hash of (request id,
    # row), so random ids made the calm window's p-value a fresh draw each run (0.05 in one CI
    # run in twenty-odd); with these the test sees the same rows every time
    ids = [f"{start:%H}-{i}" for i in range(len(frame))]
    write_log(
        root, "embedder", frame, times, model="embedder", version="1", request_ids=ids,
        predict=model.predict(frame),  # type: ignore[attr-defined]
    )  # fmt: skip


NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("window", ["stored profile", "last rows"])
def test_an_embedders_vectors_drift_by_mmd(
    sqlite_registry: Registry, tmp_path: Path, window: str
) -> None:
    registry, model = embedder(sqlite_registry)
    root = tmp_path / "log"
    log_hour(root, datetime(2026, 1, 1, 9, tzinfo=UTC), texts(1_500, 2), model)
    log_hour(root, datetime(2026, 1, 1, 10, tzinfo=UTC), texts(1_500, 3), model)
    # new words: TF-IDF knows none of them, so the vectors fall back to the intercept
    unknown = pd.concat([texts(750, 4), texts(750, 5, vocabulary=OTHER)], ignore_index=True)
    log_hour(root, datetime(2026, 1, 1, 11, tzinfo=UTC), unknown, model)

    calm = deployment_drift(
        registry, root, "embedder", window=timedelta(hours=2), now=NOW - timedelta(hours=1)
    )
    (vectors,) = calm.outputs  # type: ignore[attr-defined]
    assert (vectors.name, vectors.kind, vectors.method) == ("predict", "embedding", "mmd")
    assert not vectors.drifted and vectors.score >= 0.05
    assert vectors.current_rows == 3_000 and vectors.reference_rows == 1_000
    assert [c.name for c in calm.columns if c.drifted] == []  # type: ignore[attr-defined]

    if window == "last rows":  # the newest rows, compared exactly
        late = deployment_drift(registry, root, "embedder", last=1_500, now=NOW)
    else:  # the hour's cached profile
        late = deployment_drift(registry, root, "embedder", window=timedelta(hours=1), now=NOW)
    (vectors,) = late.outputs  # type: ignore[attr-defined]
    assert vectors.drifted and vectors.score < 0.01
    assert vectors.current_rows == 1_500
    assert "text.oov_share" in {c.name for c in late.columns if c.drifted}  # type: ignore[attr-defined]
    cached = sorted(p.name for p in (root / "_profiles" / "outputs").iterdir())
    assert cached == ["embedder-1.predict.npy"]

    if window == "stored profile":
        metrics = window_metrics(registry, root, "embedder", window=timedelta(hours=1), now=NOW)
        assert metrics["output_drift:predict"] < 0.05  # a p-value
        assert metrics["drift:text.length_chars"] < 0.1 <= metrics["drift:text.oov_share"]  # psi
        report = build_report(registry, root, "embedder", window=timedelta(hours=3), now=NOW)
        html = render_report(report)
        assert "text.oov_share" in html and "embedding" in html and "mmd" in html


def test_an_embedder_without_a_reference_sample_is_compared_on_the_reference_file(
    tmp_path: Path,
) -> None:
    """From the new-user trial: an embedder registered with an input example has no stored
    sample, so with --reference FILE its embeddings section was left out without a word. The
    model's outputs on the reference file's rows are the reference now."""
    home = tmp_path / "home"
    home.mkdir()
    registry, model = embedder(registry_in(home), example_only=True)
    root = tmp_path / "log"
    log_hour(root, datetime(2026, 1, 1, 10, tzinfo=UTC), texts(1_500, 3), model)
    unknown = pd.concat([texts(750, 4), texts(750, 5, vocabulary=OTHER)], ignore_index=True)
    log_hour(root, datetime(2026, 1, 1, 11, tzinfo=UTC), unknown, model)
    reference = tmp_path / "train.parquet"
    texts(1_500, 2).to_frame().to_parquet(reference)

    calm = deployment_drift(registry, root, "embedder", reference=str(reference),
                            window=timedelta(hours=1), now=NOW - timedelta(hours=1))  # fmt: skip
    late = deployment_drift(registry, root, "embedder", reference=str(reference), last=1_500,
                            now=NOW)  # fmt: skip
    registry.close()
    for result, drifts in ((calm, False), (late, True)):
        (vectors,) = result.outputs
        assert (vectors.name, vectors.kind, vectors.method) == ("predict", "embedding", "mmd")
        assert vectors.drifted is drifts
        assert vectors.reference_rows == 1_000  # a seeded sample of the file's rows
        assert result.notes == ()

    env = server_env(home, MODELYARD_MONITORING__LOG_ROOT=str(root))
    out = subprocess.run(
        [YARD, "monitor", "drift", "embedder", "--last", "1500", "--reference", str(reference)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "drift of outputs" in out.stdout and "mmd" in out.stdout


class PickledEmbedder:
    """Vectors of a text's length and vowels: a model only a trusted pickle can hold."""

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        text = X["text"].astype(str)
        return np.column_stack([text.str.len(), text.str.count("[aeiou]")]).astype(np.float64)


def test_an_embedding_section_that_cannot_be_computed_says_why(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    registry = registry_in(home)
    X = texts(500, 1).to_frame()
    registry.register(PickledEmbedder(), name="embedder", data=X, trust_pickle=True)
    root = tmp_path / "log"
    log_hour(root, datetime(2026, 1, 1, 11, tzinfo=UTC), texts(300, 3), PickledEmbedder())
    result = deployment_drift(registry, root, "embedder", last=300, now=NOW)
    registry.close()
    assert result.outputs == ()
    (note,) = result.notes
    assert note == (
        "Output 'predict' (embeddings) was not compared: embedder/1 is a pickle, loaded only "
        "when trusted; set MODELYARD_SERVING__TRUST_PICKLE=true to compare it by MMD."
    )

    env = server_env(home, MODELYARD_MONITORING__LOG_ROOT=str(root))
    out = subprocess.run(
        [YARD, "monitor", "drift", "embedder", "--last", "300"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert note in " ".join(out.stdout.split()), out.stdout
    report = build_report(registry_in(home), root, "embedder", window=timedelta(hours=3), now=NOW)
    assert str(escape(note)) in render_report(report)  # escaped as the template does
