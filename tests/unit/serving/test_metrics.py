"""Tallies: what the request path adds to a counter or histogram reaches the metric in bulk, and
the exposition is what prometheus_client's own ``observe`` and ``inc`` would have made."""

from __future__ import annotations

import asyncio

from modelyard.serving.metrics import FLUSH_S, LATENCY_BUCKETS, ServingMetrics

# every bound itself, the floats around it, nothing, tiny and huge values, repeats
VALUES = [
    *LATENCY_BUCKETS, *(b * 0.999 for b in LATENCY_BUCKETS), *(b * 1.001 for b in LATENCY_BUCKETS),
    0.0, 1e-9, 3.3e-4, 3.3e-4, 20.0, 1e6,
]  # fmt: skip


def _exposition(metrics: ServingMetrics) -> list[str]:
    body, _ = metrics.render()
    return [
        line for line in body.decode().splitlines()
        if line.startswith(("modelyard_request_seconds", "modelyard_requests_total"))
        and "_created" not in line  # when the label set was made
    ]  # fmt: skip


def test_a_flushed_tally_exposes_what_direct_calls_expose() -> None:
    direct, tallied = ServingMetrics(), ServingMetrics()
    labels = ("m", "v2_infer", "http")
    for value in VALUES:
        direct.child(direct.latency, *labels).observe(value)
        tallied.tally(tallied.latency, *labels).observe(value)
        direct.child(direct.requests, "m", "1", "v2_infer", "200", "http").inc()
        tallied.tally(tallied.requests, "m", "1", "v2_infer", "200", "http").inc()
    assert any("modelyard_request_seconds_bucket" in line for line in _exposition(direct))
    assert _exposition(tallied) == _exposition(direct)  # render flushes first


def test_tallies_reach_the_metric_within_the_flush_interval_on_a_loop() -> None:
    metrics = ServingMetrics()
    counter = metrics.child(metrics.requests, "m", "1", "v2_infer", "200", "grpc")

    async def main() -> list[float]:
        seen = []
        for _ in range(3):
            metrics.tally(metrics.requests, "m", "1", "v2_infer", "200", "grpc").inc()
        seen.append(counter._value.get())
        await asyncio.sleep(FLUSH_S * 3)
        seen.append(counter._value.get())
        metrics.tally(metrics.requests, "m", "1", "v2_infer", "200", "grpc").inc(2)
        await asyncio.sleep(FLUSH_S * 3)
        seen.append(counter._value.get())
        return seen

    assert asyncio.run(main()) == [0.0, 3.0, 5.0]


def test_without_a_loop_a_tally_adds_at_once() -> None:
    metrics = ServingMetrics()
    metrics.tally(metrics.queue_wait, "m").observe(0.003)
    child = metrics.child(metrics.queue_wait, "m")
    assert child._sum.get() == 0.003


def test_dropping_a_label_set_forgets_its_tally() -> None:
    metrics = ServingMetrics()
    metrics.child(metrics.model_memory, "m", "1").set(5)
    metrics.tally(metrics.model_cpu, "m", "1").inc(0.5)
    metrics.drop(metrics.model_cpu, "m", "1")
    metrics.tally(metrics.model_cpu, "m", "1").inc(0.25)
    body, _ = metrics.render()
    assert 'modelyard_model_cpu_seconds_total{model="m",version="1"} 0.25' in body.decode()
