"""What Feast online features add to served latency, per batch, at 32 concurrent clients.

One ``yard serve`` holds the same LogisticRegression twice: ``plain`` takes its two features in
each request, ``churn`` takes ``customer_id`` only and fetches the features from Feast's feature
server (``feast serve``, SQLite online store, the repository the tests build) once per batch.
Each is loaded with wrk at c=32 (1-row v2 requests, one thread) for the same time; the script
prints throughput and latency percentiles of both, and from the server's own metrics the mean
model time per batch (for ``churn`` it includes the one Feast call) and the mean rows per batch.
Needs ``make feast-server`` and wrk. Results: benchmarks/results/feast.json.

    .venv/bin/python benchmarks/feast.py [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import _harness
import httpx

sys.path.insert(0, str(_harness.REPO))

from tests.integration._feast import (
    CUSTOMERS,
    FEAST_BIN,
    SERVICE,
    T2,
    expected,
    feature_server,
    write_repo,
)
from tests.integration._server import Server, server_env

CONCURRENCY = 32
POST = Path(__file__).resolve().parent / "_serving_peers" / "post.lua"


def register(home: Path, repo: Path, python: str) -> None:
    from sklearn.linear_model import LogisticRegression

    from modelyard.pipelines.builtin import feast_training_data
    from modelyard.registry import Registry
    from modelyard.settings import Settings

    features = expected(T2).loc[CUSTOMERS].reset_index()
    entities = features[["customer_id"]].assign(event_timestamp=T2, churned=0)
    entities.loc[features["tenure"] < 10, "churned"] = 1
    entities.to_parquet(home / "entities.parquet", index=False)
    data = feast_training_data.fn(str(home / "entities.parquet"), SERVICE, str(repo), python=python)
    X, y = data.table[["tenure", "spend"]], data.table["churned"]
    model = LogisticRegression().fit(X, y)
    registry = Registry(Settings(home=home))
    registry.register(model, name="plain", data=X, target=y)
    registry.register(model, name="churn", data=X, target=y, tags=data.tags)
    registry.close()


def load(url: str, body: dict, seconds: int) -> dict[str, float]:
    """wrk at c=32 for ``seconds``, every request ``body`` (benchmarks/_serving_peers/post.lua);
    throughput and latency percentiles; any non-2xx answer fails the run."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump(body, file)
        file.flush()
        done = subprocess.run(
            ["wrk", "-t1", f"-c{CONCURRENCY}", f"-d{seconds}s", "--latency", "-s", str(POST),
             url],
            env={**os.environ, "BENCH_BODY_FILE": file.name}, capture_output=True, text=True,
            timeout=seconds + 60, check=False,
        )  # fmt: skip
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed: {done.stderr or done.stdout}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    if raw["errors"]["status"] or raw["errors"]["timeout"]:
        raise RuntimeError(f"failed requests at {url}: {raw}")
    latency = raw["latency_us"]
    return {
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": latency["p50"] / 1000,
        "p99_ms": latency["p99"] / 1000,
    }


def per_batch(metrics: str, model: str) -> tuple[float, float, float]:
    """Mean model time per batch (ms), mean rows per batch and mean online-features call per
    batch (ms; 0 without Feast), from /metrics."""

    def value(name: str) -> float:
        found = re.search(rf'^{name}\{{model="{model}"\}} (\S+)$', metrics, re.M)
        return float(found.group(1)) if found else float("nan")

    batches = value("modelyard_model_compute_seconds_count")
    fetches = value("modelyard_feature_fetch_seconds_count")
    return (
        value("modelyard_model_compute_seconds_sum") / batches * 1000,
        value("modelyard_batch_rows_sum") / value("modelyard_batch_rows_count"),
        value("modelyard_feature_fetch_seconds_sum") / fetches * 1000 if fetches else 0.0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15, help="seconds of wrk per model")
    args = parser.parse_args()
    if not (FEAST_BIN / "feast").is_file():
        sys.exit(f"no Feast at {FEAST_BIN}: run 'make feast-server'")
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    with tempfile.TemporaryDirectory(prefix="feast-bench-") as tmp:
        root = Path(tmp)
        setup = write_repo(root / "repo", "  type: sqlite\n  path: data/online.db")
        # feast serve restarts its worker every 1,000 requests by default (gunicorn's
        # max_requests), and online-feature calls time out while the new worker starts
        with feature_server(root / "repo", setup, "--max-requests", "0") as repo:
            home = root / "home"
            home.mkdir()
            register(home, repo.path, repo.python)
            server = Server(home, "plain/1", "churn/1", "--feast-url", repo.url,
                            env=server_env(home)).wait_ready()  # fmt: skip
            try:
                customer = int(CUSTOMERS[1])
                tenure, spend = expected(T2).loc[customer]
                bodies = {
                    "plain": {"inputs": [
                        {"name": "tenure", "shape": [1], "datatype": "FP64", "data": [tenure]},
                        {"name": "spend", "shape": [1], "datatype": "FP64", "data": [spend]}]},
                    "churn": {"inputs": [{"name": "customer_id", "shape": [1],
                                          "datatype": "INT64", "data": [customer]}]},
                }  # fmt: skip
                results = {}
                for name, body in bodies.items():
                    url = f"{server.url}/v2/models/{name}/infer"
                    load(url, body, 3)  # warm-up
                    results[name] = load(url, body, args.seconds)
                metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
                for name, result in results.items():
                    batch_ms, batch_rows, fetch_ms = per_batch(metrics, name)
                    result.update(batch_ms=batch_ms, batch_rows=batch_rows, fetch_ms=fetch_ms)
            finally:
                server.stop()
    print(f"wrk c={CONCURRENCY}, {args.seconds} s of one-row v2 requests per model (after 3 s)")
    print(f"{'model':<26}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'ms/batch':>10}{'rows/batch':>12}")
    for name, label in (("plain", "features in the request"), ("churn", "customer_id + Feast")):
        r = results[name]
        print(f"{label:<26}{r['rps']:>8.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
              f"{r['batch_ms']:>10.2f}{r['batch_rows']:>12.1f}")  # fmt: skip
    added = results["churn"]["batch_ms"] - results["plain"]["batch_ms"]
    print(
        f"Feast adds {added:.2f} ms per batch (model time with the fetch minus without); the "
        f"fetch itself {results['churn']['fetch_ms']:.2f} ms per batch "
        f"(modelyard_feature_fetch_seconds); p50 "
        f"{results['churn']['p50_ms'] / results['plain']['p50_ms']:.1f}x"
    )
    _harness.write_report(
        _harness.REPO / "benchmarks" / "results" / "feast.json",
        {"machine": _harness.machine(), **_harness.git_commit(), "concurrency": CONCURRENCY,
         "seconds": args.seconds, "results": results, "feast_ms_per_batch": added},
    )  # fmt: skip


if __name__ == "__main__":
    main()
