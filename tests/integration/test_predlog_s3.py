"""The prediction log on an object store (moto's real S3 server): spooled to local disk, uploaded
by a thread, kept and retried while the store is down, adopted after a crash, never doubled."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelyard.monitoring.mirror import publish, readable_root
from modelyard.monitoring.predlog import ParquetSink, UploadOptions, open_sink
from modelyard.monitoring.query import read_log
from modelyard.settings import MonitoringSettings, Settings
from tests._s3 import S3Server
from tests.integration.conftest import ServedHome
from tests.unit.monitoring.test_predlog import record

FAST = UploadOptions(interval_s=0.2, backoff_s=0.1, backoff_max_s=0.5, drain_s=5.0)


class Seen:
    """What the sink reported: the latest backlog and the failed uploads."""

    def __init__(self) -> None:
        self.backlog: list[int] = []
        self.failures = 0

    def on_backlog(self, rows: int) -> None:
        self.backlog.append(rows)

    def on_failure(self) -> None:
        self.failures += 1


def sink(root: str, spool: Path, seen: Seen, upload: UploadOptions = FAST) -> ParquetSink:
    return open_sink(
        root, spool_dir=spool, upload=upload, on_backlog=seen.on_backlog,
        on_failure=seen.on_failure, flush_interval_s=0.1,
    )  # fmt: skip


def logged(s3: S3Server, bucket: str) -> Counter[str]:
    """How many times each request id's first row is in the bucket's log."""
    client = s3.client()
    ids: Counter[str] = Counter()
    for key in s3.keys(bucket, "log/deployment="):
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        table = pq.read_table(pa.BufferReader(body))
        for request_id, row in zip(
            table.column("request_id").to_pylist(), table.column("row").to_pylist(), strict=True
        ):
            if row == 0:
                ids[request_id] += 1
    return ids


def wait_for(condition: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def spooled(spool: Path) -> list[Path]:
    return [p for p in spool.rglob("*.parquet") if p.is_file()]


def test_records_reach_the_bucket_as_one_object_per_deployment_and_hour(
    s3: S3Server, tmp_path: Path
) -> None:
    bucket = s3.bucket()
    seen = Seen()
    hourly = UploadOptions(interval_s=3600, drain_s=10)  # uploads only at close
    log = sink(f"s3://{bucket}/log", tmp_path / "spool", seen, hourly)
    for i in range(30):
        log.submit(record(i, model="a" if i % 2 else "b", at=1_780_000_000.0 + i))
        if i % 10 == 0:
            time.sleep(0.3)  # several flushes: several parts
    log.close()
    keys = s3.keys(bucket)
    assert [k.rsplit("/", 1)[0] for k in keys] == [
        "log/deployment=a/hour=2026-05-28T20",
        "log/deployment=b/hour=2026-05-28T20",
    ]
    assert logged(s3, bucket) == Counter({f"req{i}": 1 for i in range(30)})
    assert spooled(tmp_path / "spool") == []
    assert seen.backlog[-1] == 0 and max(seen.backlog) > 0 and seen.failures == 0


def test_while_the_store_is_down_rows_wait_on_disk_and_arrive_once_it_is_back(
    s3: S3Server, tmp_path: Path
) -> None:
    bucket = s3.bucket()
    seen = Seen()
    log = sink(f"s3://{bucket}/log", tmp_path / "spool", seen)
    log.submit(record(0))
    wait_for(lambda: logged(s3, bucket) == Counter({"req0": 1}))
    s3.stop()
    try:
        for i in range(1, 21):
            log.submit(record(i))
        wait_for(lambda: seen.failures >= 1 and seen.backlog[-1] == 40, timeout_s=60)
        assert len(spooled(tmp_path / "spool")) >= 1
    finally:
        s3.start()
    wait_for(lambda: seen.backlog[-1] == 0, timeout_s=60)
    log.close()
    assert logged(s3, bucket) == Counter({f"req{i}": 1 for i in range(21)})


def test_closing_while_the_store_is_down_keeps_the_spool_for_the_next_start(
    s3: S3Server, tmp_path: Path
) -> None:
    bucket = s3.bucket()
    root, spool = f"s3://{bucket}/log", tmp_path / "spool"
    s3.stop()
    try:
        first = sink(root, spool, Seen(), UploadOptions(interval_s=0.2, drain_s=0.5))
        for i in range(10):
            first.submit(record(i))
        first.close()  # gives up after drain_s: the rows stay on disk
        assert first.spool is not None
        first.spool._thread.join(60)  # its last try ends (a process would have exited)
        assert sum(pq.read_metadata(p).num_rows for p in spooled(spool)) == 20
    finally:
        s3.start()
    seen = Seen()
    second = sink(root, spool, seen)  # a new process: adopts the spool nobody holds
    assert seen.backlog[0] == 20
    second.submit(record(10))
    second.close()
    assert logged(s3, bucket) == Counter({f"req{i}": 1 for i in range(11)})
    assert spooled(spool) == []


def test_a_batch_uploaded_but_not_yet_removed_is_uploaded_again_under_the_same_name(
    s3: S3Server, tmp_path: Path
) -> None:
    """A crash between the upload and the removal: the next start overwrites the object."""
    bucket = s3.bucket()
    root, spool = f"s3://{bucket}/log", tmp_path / "spool"
    log = sink(root, spool, Seen(), UploadOptions(interval_s=3600, drain_s=5))
    for i in range(5):
        log.submit(record(i))
    time.sleep(0.5)  # written to a part, not yet uploaded (the interval is an hour)
    assert log.spool is not None
    log.spool._gather()
    (batch,) = log.spool.own.glob("batches/*/*/*")
    kept = tmp_path / "kept"
    shutil.copytree(batch, kept)
    log.close()  # uploads and removes the batch
    assert len(s3.keys(bucket)) == 1
    dead = spool / "dead-owner"  # its batch as a crash before the removal left it
    target = dead / "batches" / batch.parent.parent.name / batch.parent.name / batch.name
    shutil.copytree(kept, target)
    again = sink(root, spool, Seen())
    again.close()
    assert len(s3.keys(bucket)) == 1
    assert logged(s3, bucket) == Counter({f"req{i}": 1 for i in range(5)})


def test_two_processes_sharing_one_spool_lose_and_double_nothing(
    s3: S3Server, tmp_path: Path
) -> None:
    bucket = s3.bucket()
    root, spool = f"s3://{bucket}/log", tmp_path / "spool"
    sinks = [sink(root, spool, Seen()) for _ in range(2)]

    def load(index: int) -> None:
        for i in range(200):
            sinks[index].submit(record(index * 1000 + i, n=1))
            if i % 50 == 0:
                time.sleep(0.05)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for each in sinks:
        each.close()
    expected = Counter({f"req{i * 1000 + j}": 1 for i in range(2) for j in range(200)})
    assert logged(s3, bucket) == expected


def test_readers_see_the_bucket_through_a_local_mirror_and_labels_go_back_to_it(
    s3: S3Server, tmp_path: Path
) -> None:
    bucket = s3.bucket()
    settings = Settings(
        home=tmp_path / "home", monitoring=MonitoringSettings(log_root=f"s3://{bucket}/log")
    )
    log = sink(settings.resolved_log_root, tmp_path / "spool", Seen())
    for i in range(3):
        log.submit(record(i))
    log.close()
    root = readable_root(settings, "lin")
    assert Path(root).is_relative_to(settings.home_dir / "cache")
    assert sorted(read_log(root, "lin", limit=None).column("request_id").to_pylist()) == sorted(
        f"req{i}" for i in range(3) for _ in range(2)
    )
    # an object removed from the store (retention) leaves the mirror too
    (key,) = s3.keys(bucket, "log/deployment=lin/")
    s3.client().delete_object(Bucket=bucket, Key=key)
    assert not list(Path(readable_root(settings, "lin")).rglob("deployment=lin/*/*.parquet"))
    # a file written in the mirror (a labels ingest) is published to the same key
    labels = Path(root) / "labels" / "deployment=lin" / "one.parquet"
    labels.parent.mkdir(parents=True)
    pq.write_table(pa.table({"request_id": ["req0"]}), labels)
    publish(settings, labels)
    assert s3.keys(bucket, "log/labels/") == ["log/labels/deployment=lin/one.parquet"]


def test_a_label_file_the_store_refuses_is_removed_locally_too(
    s3: S3Server, tmp_path: Path
) -> None:
    from modelyard.errors import StorageError

    settings = Settings(
        home=tmp_path / "home", monitoring=MonitoringSettings(log_root="s3://no-such-bucket/log")
    )
    root = Path(readable_root(settings, "lin"))
    labels = root / "labels" / "deployment=lin" / "one.parquet"
    labels.parent.mkdir(parents=True)
    pq.write_table(pa.table({"request_id": ["req0"]}), labels)
    with pytest.raises(StorageError, match="nothing was stored") as caught:
        publish(settings, labels)
    assert "\n" not in str(caught.value)
    assert not labels.exists()


def test_a_server_logging_to_a_missing_bucket_does_not_start(s3: S3Server, tmp_path: Path) -> None:
    import subprocess

    from tests.integration._server import YARD, server_env

    env = server_env(tmp_path, MODELYARD_MONITORING__LOG_ROOT="s3://no-such-bucket/log", **s3.env)
    done = subprocess.run(
        [YARD, "serve", "lin/1", "--log-predictions", "--port", "1"], env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert done.stderr == (
        "error: The bucket 'no-such-bucket' of the prediction log root s3://no-such-bucket/log "
        "does not exist; create it or fix MODELYARD_MONITORING__LOG_ROOT.\n"
    )
    assert "no-such-bucket" not in {b["Name"] for b in s3.client().list_buckets()["Buckets"]}


def test_reading_a_name_with_no_log_in_the_bucket_names_the_bucket(
    s3: S3Server, tmp_path: Path
) -> None:
    import subprocess

    from tests.integration._server import YARD, server_env

    bucket = s3.bucket()
    env = server_env(tmp_path, MODELYARD_MONITORING__LOG_ROOT=f"s3://{bucket}/log", **s3.env)
    done = subprocess.run(
        [YARD, "monitor", "log", "nothing-here"], env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr == (
        "error: No predictions logged for 'nothing-here' in the last 1h; serve it with 'yard "
        f"serve --log-predictions' (log root s3://{bucket}/log) or widen --since.\n"
    )


def test_yard_labels_ingest_checks_the_labels_against_the_model_logged_in_the_bucket(
    s3: S3Server, served_home: ServedHome, tmp_path: Path
) -> None:
    """The label check reads the version that logged the newest prediction: from the bucket's
    log too, so a regressor's label 'abc' is refused there as on a local log."""
    import subprocess

    from tests.integration._server import YARD, server_env

    bucket = s3.bucket()
    root = f"s3://{bucket}/log"
    log = sink(root, tmp_path / "spool", Seen())
    log.submit(record(0))  # lin/1, a regressor
    log.close()
    env = server_env(served_home.home, MODELYARD_MONITORING__LOG_ROOT=root, **s3.env)
    bad = tmp_path / "bad.csv"
    bad.write_text("request_id,label\nreq0,abc\n")
    done = subprocess.run(
        [YARD, "labels", "ingest", "lin", str(bad)], env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (1, (
        "error: Label 'abc' of request 'req0' (line 2 of labels file 'bad.csv') is not a "
        "number, and model lin/1 is a regressor (its predictions are numbers); send the "
        "observed value as a number.\n"
    ))  # fmt: skip
    assert s3.keys(bucket, "log/labels/") == []
    bad.write_text("request_id,label\nreq0,4.5\n")
    subprocess.run([YARD, "labels", "ingest", "lin", str(bad)], env=env, check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    assert len(s3.keys(bucket, "log/labels/")) == 1


def test_a_server_checks_labels_against_the_model_logged_in_the_bucket(
    s3: S3Server, served_home: ServedHome, tmp_path: Path
) -> None:
    """A server whose log is on a store wrote labels of a name it does not serve unchecked: the
    label check read its spool, which holds no prediction once they are uploaded. It reads the
    newest hour of the bucket's log now, as a local log's."""
    import httpx

    from tests.integration._server import Server, server_env

    bucket = s3.bucket()
    root = f"s3://{bucket}/log"
    log = sink(root, tmp_path / "spool", Seen())
    log.submit(record(0))  # lin/1, a regressor, logged by another server
    log.close()
    env = server_env(
        served_home.home, MODELYARD_MONITORING__LOG_ROOT=root,
        MODELYARD_MONITORING__SPOOL_DIR=str(tmp_path / "served"), **s3.env,
    )  # fmt: skip
    server = Server(served_home.home, "hgb/1", "--log-predictions", env=env)
    server.wait_ready()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:

            def post(label: object) -> httpx.Response:
                body = {"deployment": "lin", "labels": [{"request_id": "req0", "label": label}]}
                return client.post("/v1/labels", json=body)

            refused = post("abc")
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"] == (
                "Label 'abc' of request 'req0' (row 1 of the labels) is not a number, and model "
                "lin/1 is a regressor (its predictions are numbers); send the observed value as "
                "a number."
            )
            assert post(4.5).status_code == 202
    finally:
        assert server.stop() == 0, server.log.read_text()
    assert len(s3.keys(bucket, "log/labels/")) == 1  # the good label only
