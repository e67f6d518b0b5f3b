"""The prediction log in benchmarks/serving.py: moto's S3 server for the log on an object store,
and the check after a logged server's runs that every answered request reached the log (on local
disk, or in the bucket) and that the server dropped none.

A logged server writes its queue every ``flush_interval_s`` (1 s by default); on an object store
the spool uploads every ``upload_interval_s`` (10 s). The check runs while the server still lives
(stopping it would drain the spool for at most ``upload_drain_s``, longer than serving.py waits
before its SIGKILL): it polls until the log holds at least as many rows as requests were answered
and, on a store, the spool's backlog on /metrics is 0, or until ``timeout_s``.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The standard variables botocore (so s3fs) reads; moto accepts any key.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
BUCKET = "yard-bench"
PREFIX = "predictions"


@dataclass(frozen=True)
class S3Store:
    """A running moto server and the bucket the log writes to."""

    endpoint: str
    proc: subprocess.Popen[bytes]

    @property
    def env(self) -> dict[str, str]:
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def log_root(self, name: str) -> str:
        """The URL of one server's log, under its own prefix (a run may start several)."""
        return f"s3://{BUCKET}/{PREFIX}/{name}"

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def rows(self, name: str) -> tuple[int, int]:
        """Rows and objects of one server's log (``log_root(name)``; Parquet footers only)."""
        import pyarrow.parquet as pq

        s3 = self.client()
        rows = objects = 0
        prefix = f"{PREFIX}/{name}/"
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for item in page.get("Contents", []):
                if not item["Key"].endswith(".parquet"):
                    continue
                body = s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
                rows += pq.read_metadata(io.BytesIO(body)).num_rows
                objects += 1
        return rows, objects


def wait_s3(store: S3Store, timeout_s: float = 20.0) -> None:
    """Wait until moto answers, then create the bucket (once)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if store.proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with code {store.proc.returncode}")
        try:
            store.client().create_bucket(Bucket=BUCKET)
            return
        except Exception as e:  # connection refused while it starts; botocore wraps it
            if time.monotonic() > deadline:
                raise RuntimeError(f"moto_server not answering after {timeout_s:.0f} s: {e}") from e
            time.sleep(0.1)


def local_rows(root: Path) -> tuple[int, int]:
    """Rows and files in a local log folder (hidden names are files still being written)."""
    import pyarrow.parquet as pq

    rows = files = 0
    for path in root.rglob("*.parquet"):
        if not path.name.startswith("."):
            with contextlib.suppress(OSError):
                rows += pq.read_metadata(path).num_rows
                files += 1
    return rows, files


def log_metrics(base: str) -> dict[str, float]:
    """The prediction log's series on /metrics (dropped, backlog, upload failures)."""
    with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
        text = response.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("modelyard_prediction_log_") and not name.endswith("_created"):
            found[name.removeprefix("modelyard_prediction_log_")] = float(value)
    return found


def check_log(
    base: str,
    rows: Callable[[], tuple[int, int]],
    *,
    answered: int,
    in_flight: int,
    timeout_s: float,
) -> dict[str, Any]:
    """Poll the log until it holds ``answered`` rows and nothing waits in a spool; report.

    ``answered``: the 2xx answers the benchmark counted; ``in_flight``: how many more the server
    may have answered (and logged) that no client counted, the requests wrk had in flight when it
    stopped. ``lost`` is answered requests missing from the log plus the ones /metrics says the
    server dropped."""
    started = time.monotonic()
    while True:
        metrics = log_metrics(base)
        found, parts = rows()
        settled = found >= answered and metrics.get("backlog_rows", 0.0) == 0
        if settled or time.monotonic() - started > timeout_s:
            break
        time.sleep(0.5)
    dropped = int(metrics.get("dropped_total", 0))
    lost = max(0, answered - found) + dropped
    return {
        "answered": answered,
        "rows": found,
        "parts": parts,
        "dropped": dropped,
        "backlog_rows": int(metrics.get("backlog_rows", 0)),
        "upload_failures": int(metrics.get("upload_failures_total", 0)),
        "waited_s": round(time.monotonic() - started, 1),
        "lost": lost,
        "ok": lost == 0 and found <= answered + in_flight,
    }


def fmt_check(check: dict[str, Any]) -> str:
    return (
        f"log: {check['rows']:,} rows in {check['parts']} parts for {check['answered']:,} "
        f"answers (after {check['waited_s']} s), dropped {check['dropped']}, backlog "
        f"{check['backlog_rows']}, upload failures {check['upload_failures']}: {verdict(check)}"
    )


def verdict(check: dict[str, Any]) -> str:
    if check["lost"]:
        return f"{check['lost']:,} LOST"
    return "OK" if check["ok"] else "MORE ROWS THAN ANSWERS IN FLIGHT"
