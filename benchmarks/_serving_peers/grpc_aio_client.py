"""grpc.aio load generator for benchmarks/serving.py (the second one, beside h2load): keep
``--inflight`` unary ModelInfer calls going for ``--duration`` seconds and print one JSON line.

The request is sent pre-serialized and the answer is not parsed (only its size is compared with
the checked answer), so the client spends its time in grpcio, not in protobuf. Unlike h2load it
sees grpc-status: every non-OK call is counted by code. streams mode: one channel (one HTTP/2
connection); conns mode: one channel per in-flight call, each with its own connection.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import grpc

INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"


async def worker(
    infer: grpc.aio.UnaryUnaryMultiCallable,
    message: bytes,
    stop_at: float,
    counts: dict[str, int],
    failures: Counter[str],
    latency_us: list[float],
    answer_bytes: int,
) -> None:
    clock = time.perf_counter
    while (start := clock()) < stop_at:
        try:
            answer = await infer(message, timeout=30.0)
        except grpc.aio.AioRpcError as e:
            counts["failed"] += 1
            failures[e.code().name] += 1
            continue
        latency_us.append((clock() - start) * 1e6)
        counts["ok"] += 1
        if answer_bytes and len(answer) != answer_bytes:
            counts["short_answers"] += 1


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--message", type=Path, required=True, help="serialized ModelInferRequest")
    parser.add_argument("--inflight", type=int, default=1)
    parser.add_argument("--mode", choices=["streams", "conns"], default="streams")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--answer-bytes", type=int, default=0, help="expected answer size")
    args = parser.parse_args()
    message = args.message.read_bytes()
    n_channels = 1 if args.mode == "streams" else args.inflight
    # A local subchannel pool gives each channel its own connection (grpc shares them otherwise).
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{args.port}", options=options)
        for _ in range(n_channels)
    ]
    calls = [ch.unary_unary(INFER_PATH) for ch in channels]
    counts = {"ok": 0, "failed": 0, "short_answers": 0}
    failures: Counter[str] = Counter()
    latency_us: list[float] = []
    for ch in channels:  # connect before the clock starts
        await asyncio.wait_for(ch.channel_ready(), timeout=30.0)
    started, cpu_started = time.perf_counter(), time.process_time()
    stop_at = started + args.duration
    await asyncio.gather(
        *(
            worker(
                calls[i % n_channels],
                message,
                stop_at,
                counts,
                failures,
                latency_us,
                args.answer_bytes,
            )
            for i in range(args.inflight)
        )
    )
    took, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    for ch in channels:
        await ch.close()
    print(
        "AIO_JSON "
        + json.dumps(
            {
                **counts,
                "failures": dict(failures),
                "duration_s": took,
                "cpu_s": cpu_s,
                "latency_us": latency_us,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
