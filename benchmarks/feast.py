"""What Feast online features add to served latency, per batch, at 32 concurrent clients.

One ``yard serve`` holds the same LogisticRegression twice: ``plain`` takes its two features in
each request, ``churn`` takes ``customer_id`` only and fetches the features from Feast's feature
server (``feast serve``, SQLite online store, the repository the tests build) once per batch.
Each is loaded with an httpx async client at c=32 (1-row v2 requests) for the same number of
requests; the script prints throughput and latency percentiles of both, and from the server's
own metrics the mean model time per batch (for ``churn`` it includes the one Feast call) and the
mean rows per batch. Needs ``make feast-server``. Results: benchmarks/results/feast.json.

    .venv/bin/python benchmarks/feast.py [--requests 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path

import _harness
import httpx
import numpy as np

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


async def load(url: str, bodies: list[dict], requests: int) -> tuple[float, np.ndarray]:
    latencies: list[float] = []
    queue = iter(range(requests))
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            for i in queue:
                started = time.perf_counter()
                response = await client.post(url, json=bodies[i % len(bodies)])
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code}: {response.text}")
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    return requests / elapsed, np.array(latencies) * 1000


def per_batch(metrics: str, model: str) -> tuple[float, float]:
    """Mean model seconds per batch (ms) and mean rows per batch, from /metrics."""

    def value(name: str) -> float:
        found = re.search(rf'^{name}\{{model="{model}"\}} (\S+)$', metrics, re.M)
        return float(found.group(1)) if found else float("nan")

    batches = value("modelyard_model_compute_seconds_count")
    return (
        value("modelyard_model_compute_seconds_sum") / batches * 1000,
        value("modelyard_batch_rows_sum") / value("modelyard_batch_rows_count"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    args = parser.parse_args()
    if not (FEAST_BIN / "feast").is_file():
        sys.exit(f"no Feast at {FEAST_BIN}: run 'make feast-server'")
    with tempfile.TemporaryDirectory(prefix="feast-bench-") as tmp:
        root = Path(tmp)
        setup = write_repo(root / "repo", "  type: sqlite\n  path: data/online.db")
        with feature_server(root / "repo", setup) as repo:
            home = root / "home"
            home.mkdir()
            register(home, repo.path, repo.python)
            server = Server(home, "plain/1", "churn/1", "--feast-url", repo.url,
                            env=server_env(home)).wait_ready()  # fmt: skip
            try:
                rows = expected(T2).loc[CUSTOMERS]
                plain = [
                    {"inputs": [
                        {"name": "tenure", "shape": [1], "datatype": "FP64", "data": [t]},
                        {"name": "spend", "shape": [1], "datatype": "FP64", "data": [s]}]}
                    for t, s in zip(rows["tenure"], rows["spend"], strict=True)
                ]  # fmt: skip
                keyed = [
                    {"inputs": [{"name": "customer_id", "shape": [1], "datatype": "INT64",
                                 "data": [int(c)]}]}
                    for c in CUSTOMERS
                ]  # fmt: skip
                results = {}
                for name, bodies in (("plain", plain), ("churn", keyed)):
                    url = f"{server.url}/v2/models/{name}/infer"
                    asyncio.run(load(url, bodies, 500))  # warm-up
                    rps, ms = asyncio.run(load(url, bodies, args.requests))
                    results[name] = {"rps": rps, "p50_ms": float(np.percentile(ms, 50)),
                                     "p99_ms": float(np.percentile(ms, 99))}  # fmt: skip
                metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
                for name, result in results.items():
                    batch_ms, batch_rows = per_batch(metrics, name)
                    result.update(batch_ms=batch_ms, batch_rows=batch_rows)
            finally:
                server.stop()
    print(f"c={CONCURRENCY}, {args.requests} one-row v2 requests per model (after 500 warm-up)")
    print(f"{'model':<26}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'ms/batch':>10}{'rows/batch':>12}")
    for name, label in (("plain", "features in the request"), ("churn", "customer_id + Feast")):
        r = results[name]
        print(f"{label:<26}{r['rps']:>8.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
              f"{r['batch_ms']:>10.2f}{r['batch_rows']:>12.1f}")  # fmt: skip
    added = results["churn"]["batch_ms"] - results["plain"]["batch_ms"]
    print(
        f"Feast adds {added:.2f} ms per batch (model time with the fetch minus without); "
        f"p50 {results['churn']['p50_ms'] / results['plain']['p50_ms']:.1f}x"
    )
    _harness.write_report(
        _harness.REPO / "benchmarks" / "results" / "feast.json",
        {"machine": _harness.machine(), **_harness.git_commit(), "concurrency": CONCURRENCY,
         "requests": args.requests, "results": results, "feast_ms_per_batch": added},
    )  # fmt: skip


if __name__ == "__main__":
    main()
