"""The artifact root on S3 (issue 13): register, load, verify, rollback, batch scoring, the
pipeline cache and ``yard serve`` with ``MODELYARD_ARTIFACT_ROOT=s3://bucket/prefix``, against a
real S3 API server (moto's, tests/_s3.py), through the Python API and the ``yard`` CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modelyard.errors import ConfigError, IntegrityError, ModelNotFoundError, StorageError
from modelyard.pipelines.batch import batch_score
from modelyard.registry import Registry
from modelyard.settings import Settings
from tests._s3 import CREDENTIALS, S3Server
from tests.integration._pipelines import DIAMOND
from tests.integration._server import YARD, Server, server_env

PREFIX = "art"
FEATURES = ["a", "b", "c"]
X = pd.DataFrame(np.random.default_rng(0).normal(size=(200, 3)), columns=FEATURES)


def fit(column: str) -> object:
    """A small scaled logistic regression that learns the sign of ``column``."""
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, (X[column] > 0).astype(int))


def s3_settings(tmp_path: Path, bucket: str) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=f"sqlite:///{tmp_path / 'meta.db'}",
        artifact_root=f"s3://{bucket}/{PREFIX}",
        identity="tester",
    )


@pytest.fixture
def bucket(s3: S3Server) -> str:
    return s3.bucket()


@pytest.fixture
def registry(tmp_path: Path, bucket: str) -> Iterator[Registry]:
    reg = Registry(s3_settings(tmp_path, bucket))
    yield reg
    reg.close()


def cli_env(tmp_path: Path, s3: S3Server, bucket: str) -> dict[str, str]:
    """What a user's shell holds: the same database, the artifact root on S3, AWS credentials."""
    return server_env(
        tmp_path / "home",
        MODELYARD_DATABASE_URL=f"sqlite:///{tmp_path / 'meta.db'}",
        MODELYARD_ARTIFACT_ROOT=f"s3://{bucket}/{PREFIX}",
        **s3.env,
    )


def yard(
    env: dict[str, str], *args: str, code: int = 0, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [YARD, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=180, check=False
    )
    assert proc.returncode == code, proc.stdout + proc.stderr
    return proc


def save_skops(tmp_path: Path, model: object | None = None) -> Path:
    import skops.io

    path = tmp_path / "model.skops"
    skops.io.dump(model if model is not None else fit("a"), path)
    return path


def blob_key(sha256: str) -> str:
    return f"{PREFIX}/sha256/{sha256[:2]}/{sha256}"


def test_register_puts_content_addressed_blobs_in_the_bucket_and_loads_them_back(
    registry: Registry, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    model = fit("a")
    version = registry.register(model, name="churn", data=X, convert="onnx")
    roles = {f.role for f in version.files}
    assert {"model", "onnx"} <= roles
    assert s3.keys(bucket) == sorted(blob_key(f.sha256) for f in version.files)
    client = s3.client()
    for f in version.files:
        body = client.get_object(Bucket=bucket, Key=blob_key(f.sha256))["Body"].read()
        assert hashlib.sha256(body).hexdigest() == f.sha256 and len(body) == f.size_bytes
    assert not (tmp_path / "home" / "artifacts").exists()  # nothing went to local disk

    expected = model.predict_proba(X)  # type: ignore[attr-defined]
    native = registry.load("churn/1")
    assert native.runtime == "native"
    np.testing.assert_allclose(native.predict_proba(X), expected)
    onnx = registry.load("churn/1", runtime="onnx")
    assert onnx.runtime == "onnx"
    np.testing.assert_allclose(onnx.predict_proba(X), expected, atol=1e-5)

    again = registry.register(model, name="churn", data=X, convert="onnx")
    both = {blob_key(f.sha256) for v in (version, again) for f in v.files}
    assert len(both) < 2 * len(version.files)  # same bytes, one blob (the model file at least)
    assert s3.keys(bucket) == sorted(both)


def test_an_object_altered_or_deleted_in_the_bucket_refuses_to_load(
    registry: Registry, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    version = registry.register(fit("a"), name="churn", data=X)
    model_file = version.file("model")
    assert model_file is not None
    key = blob_key(model_file.sha256)
    client = s3.client()
    good = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    client.put_object(Bucket=bucket, Key=key, Body=good[:-3] + b"xyz")
    with pytest.raises(IntegrityError) as altered:
        registry.load("churn/1")
    message = str(altered.value)
    assert "\n" not in message
    assert message.startswith("File 'model.skops' of model churn/1 was altered")
    assert "nothing was loaded" in message
    checks = {c.role: c.ok for c in registry.verify("churn/1")}
    assert checks["model"] is False and checks["profile"] is True
    shown = yard(cli_env(tmp_path, s3, bucket), "models", "verify", "churn/1", "--json", code=1)
    checks = {c["role"]: c["ok"] for c in json.loads(shown.stdout)}
    assert checks["model"] is False and checks["profile"] is True  # the CLI reads the same bucket

    client.delete_object(Bucket=bucket, Key=key)
    with pytest.raises(IntegrityError) as missing:
        registry.load("churn/1")
    message = str(missing.value)
    assert "\n" not in message
    assert message.startswith("File 'model.skops' of model churn/1 is missing")
    assert f"s3://{bucket}/{key}" in message


def test_a_blob_removed_behind_a_listing_is_written_again(
    registry: Registry, s3: S3Server, bucket: str
) -> None:
    """The missing-file error says "register the model again": storing the same bytes must
    rewrite the blob even when this process listed its folder (s3fs caches listings) before
    another client removed it."""
    import fsspec

    store = registry.artifacts
    digest, created = store.put(b"weights")
    assert created
    fs, path = fsspec.core.url_to_fs(f"s3://{bucket}/{blob_key(digest).rsplit('/', 1)[0]}")
    assert len(fs.ls(path)) == 1  # a listing this process now holds in s3fs's cache
    s3.client().delete_object(Bucket=bucket, Key=blob_key(digest))
    assert not store.exists(digest)
    assert store.put(b"weights") == (digest, True)
    assert store.get(digest, label="the blob") == b"weights"


def test_rollback_serves_the_earlier_versions_bytes_from_the_bucket(
    registry: Registry, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    first, second = fit("a"), fit("b")
    registry.register(first, name="churn", data=X)
    registry.register(second, name="churn", data=X)
    env = cli_env(tmp_path, s3, bucket)
    yard(env, "models", "alias", "churn/1", "production")
    yard(env, "models", "alias", "churn/2", "production")
    np.testing.assert_allclose(
        registry.load("churn@production").predict_proba(X),
        second.predict_proba(X),  # type: ignore[attr-defined]
    )
    yard(env, "models", "rollback", "churn", "production")
    loaded = registry.load("churn@production")
    assert loaded.version.version == 1
    np.testing.assert_allclose(loaded.predict_proba(X), first.predict_proba(X))  # type: ignore[attr-defined]


def test_batch_scoring_reads_the_model_from_the_bucket(
    registry: Registry, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    model = fit("a")
    registry.register(model, name="churn", data=X, convert="onnx")
    registry.set_alias("churn/1", "production")
    data = tmp_path / "in.parquet"
    X.assign(id=range(len(X))).to_parquet(data)
    expected = model.predict(X)  # type: ignore[attr-defined]

    summary = batch_score(registry, "churn@production", data, tmp_path / "api")
    assert (summary.ref, summary.runtime, summary.scored) == ("churn/1", "onnx", len(X))
    out = pq.read_table(tmp_path / "api").to_pandas()
    np.testing.assert_array_equal(out["predict"], expected)

    env = cli_env(tmp_path, s3, bucket)
    shown = yard(env, "batch-score", "churn/1", "--input", str(data), "--output",
                 str(tmp_path / "cli"), "--runtime", "native", "--json")  # fmt: skip
    assert json.loads(shown.stdout)["scored"] == len(X)
    out = pq.read_table(tmp_path / "cli").to_pandas()
    np.testing.assert_array_equal(out["id"], np.arange(len(X)))
    np.testing.assert_array_equal(out["predict"], expected)


def test_a_pipeline_run_twice_is_a_cache_hit_from_the_bucket(
    s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "diamond.py").write_text(DIAMOND)
    env = cli_env(tmp_path, s3, bucket)
    args = ("run", "diamond.py", "--workers", "1", "-p", "n=40", "--json")
    first = json.loads(yard(env, *args, cwd=project).stdout)
    assert [s["status"] for s in first["steps"]] == ["succeeded"] * 5
    stored = s3.keys(bucket)
    assert stored and all(k.startswith(f"{PREFIX}/sha256/") for k in stored)
    assert not (tmp_path / "home" / "artifacts").exists()

    second = json.loads(yard(env, *args, cwd=project).stdout)
    assert [s["status"] for s in second["steps"]] == ["cached"] * 5
    assert s3.keys(bucket) == stored  # nothing new written


def test_yard_serve_loads_the_model_from_the_bucket(
    s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    model = fit("a")
    saved = save_skops(tmp_path, model)
    data = tmp_path / "train.parquet"
    X.to_parquet(data)
    env = cli_env(tmp_path, s3, bucket)
    yard(env, "models", "register", str(saved), "--name", "churn", "--data", str(data),
         "--convert", "onnx")  # fmt: skip
    assert len(s3.keys(bucket)) >= 2
    row = X.iloc[:3]
    body = {"inputs": [{"name": c, "shape": [3], "datatype": "FP64", "data": row[c].tolist()}
                       for c in FEATURES]}  # fmt: skip
    (tmp_path / "home").mkdir(exist_ok=True)
    with Server(tmp_path / "home", "churn/1", env=env) as server:
        answer = httpx.post(f"{server.url}/v2/models/churn/infer", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
    assert outputs["predict"] == model.predict(row).tolist()  # type: ignore[attr-defined]


def test_a_bucket_that_does_not_exist_is_one_line_and_creates_nothing(
    s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    missing = f"{bucket}-typo"
    registry = Registry(s3_settings(tmp_path, missing))
    try:
        with pytest.raises(StorageError) as info:
            registry.register(fit("a"), name="churn", data=X)
        with pytest.raises(ModelNotFoundError):
            registry.get_version("churn")
    finally:
        registry.close()
    message = str(info.value)
    assert "\n" not in message
    assert f"bucket {missing!r}" in message and "MODELYARD_ARTIFACT_ROOT" in message
    buckets = [b["Name"] for b in s3.client().list_buckets()["Buckets"]]
    assert missing not in buckets  # a typo does not create a bucket

    saved = save_skops(tmp_path)
    env = {**cli_env(tmp_path, s3, bucket), "MODELYARD_ARTIFACT_ROOT": f"s3://{missing}/art"}
    shown = yard(env, "models", "register", str(saved), "--name", "churn", code=1).stderr
    assert len(shown.strip().splitlines()) == 1 and f"bucket {missing!r}" in shown, shown
    assert missing not in [b["Name"] for b in s3.client().list_buckets()["Buckets"]]


def test_s3_down_is_one_line_and_leaves_no_version(
    registry: Registry, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    saved = save_skops(tmp_path)
    env = cli_env(tmp_path, s3, bucket)
    s3.stop()
    shown = yard(env, "models", "register", str(saved), "--name", "churn", code=1).stderr
    lines = shown.strip().splitlines()
    assert len(lines) == 1, shown
    assert "artifact root" in lines[0] and "MODELYARD_ARTIFACT_ROOT" in lines[0]
    assert f"s3://{bucket}/{PREFIX}" in lines[0]
    s3.start()
    with pytest.raises(ModelNotFoundError):
        registry.get_version("churn")
    assert s3.keys(bucket) == []


def test_a_store_that_stops_answering_fails_in_seconds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An endpoint that accepts connections and never answers (a hung store, a paused
    process): botocore's defaults waited 60 s a read, retried, and held a model load or a
    log upload for minutes with no failure counted."""
    import socket
    import time

    from modelyard.core import remote
    from modelyard.store.artifacts import ArtifactStore

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel accepts; nothing ever reads or answers
    port = silent.getsockname()[1]
    monkeypatch.setattr(remote, "READ_TIMEOUT_S", 1.0)
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    try:
        store = ArtifactStore("s3://hung-bucket/art")
        started = time.monotonic()
        with pytest.raises(StorageError, match=r"^Cannot read the artifact root s3://hung-bucket"):
            store.exists("0" * 64)
        # two attempts of one second each, then the failure: not minutes
        assert time.monotonic() - started < 10
    finally:
        silent.close()


def test_batch_score_refuses_urls_for_its_files_in_one_line(
    registry: Registry, s3: S3Server, bucket: str, tmp_path: Path
) -> None:
    """batch-score reads and writes local Parquet only: an s3:// --output must not become a
    local folder named 's3:' and an s3:// --input must not read as a missing local file."""
    registry.register(fit("a"), name="churn", data=X)
    data = tmp_path / "in.parquet"
    X.to_parquet(data)
    env = cli_env(tmp_path, s3, bucket)
    url = f"s3://{bucket}/scored"
    cases = [
        ("--output", url, ["--input", str(data), "--output", url]),
        ("--input", f"{url}/*.parquet", ["--input", f"{url}/*.parquet", "--output", "out"]),
    ]
    for flag, given, args in cases:
        shown = yard(env, "batch-score", "churn/1", *args, code=1, cwd=tmp_path).stderr
        assert len(shown.strip().splitlines()) == 1, shown
        assert f"{flag} {given!r} is a URL" in shown and "local Parquet files only" in shown
    assert not (tmp_path / "s3:").exists() and not (tmp_path / "out").exists()
    assert all(k.startswith(f"{PREFIX}/") for k in s3.keys(bucket))  # the model's blobs only


@pytest.mark.parametrize(
    ("root", "message"),
    [
        ("s3:/models/x", "The artifact root 's3:/models/x' has one '/' after 's3:'; write "
         "s3://models/x"),
        ("s3://", "The artifact root 's3://' has no bucket; give s3://BUCKET/PREFIX"),
        ("s3:///models", "The artifact root 's3:///models' has no bucket"),
        ("gs://", "The artifact root 'gs://' has no bucket; give gs://BUCKET/PREFIX"),
    ],
)  # fmt: skip
def test_a_malformed_root_url_is_refused_before_anything_is_written(
    root: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """s3:/models/x (one slash) was taken as the local folder ./s3:/models/x and the files went
    there; s3:// (no bucket) answered "The bucket '' ... does not exist"."""
    from modelyard.cli.main import main
    from modelyard.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    settings = Settings(
        home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'meta.db'}",
        artifact_root=root,
    )  # fmt: skip
    with pytest.raises(ConfigError) as info:
        Registry(settings)
    assert str(info.value).startswith(message) and "MODELYARD_ARTIFACT_ROOT" in str(info.value)
    assert "\n" not in str(info.value)
    for key in ("MODELYARD_DATABASE_URL", "MODELYARD_HOME"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELYARD_ARTIFACT_ROOT", root)
    with pytest.raises(SystemExit) as exited:
        main(["models", "list"])
    assert exited.value.code == 1
    assert capsys.readouterr().err == f"error: {info.value}\n"
    assert list(tmp_path.iterdir()) == []  # no database, no ./s3: folder


def test_a_malformed_log_root_url_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The prediction log's root takes the artifact root's check: s3:/logs (one slash) would
    be read as the local folder ./s3:/logs."""
    from modelyard.cli.main import main
    from modelyard.monitoring.mirror import check_log_root

    with pytest.raises(ConfigError, match=r"^The prediction log root 's3:/logs' has one '/'"):
        check_log_root("s3:/logs")
    monkeypatch.chdir(tmp_path)
    for key in ("MODELYARD_DATABASE_URL", "MODELYARD_ARTIFACT_ROOT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELYARD_MONITORING__LOG_ROOT", "s3://")
    with pytest.raises(SystemExit) as exited:
        main(["labels", "performance", "churn"])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("error: The prediction log root 's3://' has no bucket")
        and err.count("\n") == 1
    )
