"""The Open Inference Protocol over gRPC, for benchmarks/serving.py: build one ModelInferRequest,
check it with a real gRPC client, then load the server with h2load (and optionally a grpc.aio
client), and work out the gRPC ratios.

h2load sends unary gRPC as plain HTTP/2: POST /inference.GRPCInferenceService/ModelInfer with
``content-type: application/grpc`` and ``te: trailers`` and a body of one gRPC frame (a 0 byte for
"uncompressed", a 4-byte big-endian length, the serialized request). It cannot read grpc-status,
which comes in the trailers: an error answers HTTP 200 with no DATA frame. So every run is checked
three ways: one grpcio call before it (status OK, one output row per input row), h2load's own
failed/errored counts, and the DATA bytes h2load received against what that many correct answers
weigh.

Two ways to hold N requests in flight are measured, and reported apart:
  streams: one HTTP/2 connection with N concurrent streams (h2load -c 1 -m N), what one gRPC
           channel does; the ratios use this mode when it was measured.
  conns:   N connections with one stream each (h2load -c N -m 1), what wrk does for REST.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

SERVICE = "inference.GRPCInferenceService"
INFER_PATH = f"/{SERVICE}/ModelInfer"
AIO_CLIENT = Path(__file__).resolve().parent / "_serving_peers" / "grpc_aio_client.py"
HEADLINE_MODE = "streams"
DTYPES = {"FP64": "<f8", "FP32": "<f4"}

Layout = Literal["tensor", "per-column"]


@dataclass(frozen=True)
class GrpcTarget:
    """Where a server answers gRPC and how its model wants its inputs: one [n, 20] tensor named
    ``input_name``, or one [n] tensor per column (``columns``)."""

    port: int
    model: str
    layout: Layout
    columns: tuple[str, ...]
    input_name: str = "input"


@dataclass(frozen=True)
class Load:
    """The settings of one server's gRPC runs (from serving.py's arguments)."""

    rows: tuple[int, ...]
    conns: tuple[int, ...]
    modes: tuple[str, ...]
    clients: tuple[str, ...]
    duration_s: int
    warmup_s: int
    client_cpu: str
    dtype: str = "FP64"
    contents: Literal["raw", "typed"] = "raw"
    ready_timeout_s: float = 60.0


# -- the request -----------------------------------------------------------------------------


def infer_request(target: GrpcTarget, rows: Any, *, dtype: str, contents: str) -> bytes:
    """A serialized ModelInferRequest for the 2-D array ``rows`` in the target's layout, with the
    tensors in ``raw_input_contents`` (what the standard Triton client sends) or typed contents."""
    import numpy as np
    from tritonclient.grpc import service_pb2 as pb

    array = np.ascontiguousarray(rows, dtype=DTYPES[dtype])
    if target.layout == "tensor":
        tensors = [(target.input_name, array)]
    else:
        tensors = [(c, np.ascontiguousarray(array[:, i])) for i, c in enumerate(target.columns)]
    request = pb.ModelInferRequest(model_name=target.model)
    for name, values in tensors:
        tensor = request.inputs.add(name=name, datatype=dtype, shape=list(values.shape))
        if contents == "raw":
            request.raw_input_contents.append(values.tobytes())
        elif dtype == "FP64":
            tensor.contents.fp64_contents.extend(values.ravel().tolist())
        else:
            tensor.contents.fp32_contents.extend(values.ravel().tolist())
    return bytes(request.SerializeToString())


def grpc_frame(message: bytes) -> bytes:
    """One uncompressed gRPC length-prefixed message."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


# -- checks with a real gRPC client ----------------------------------------------------------


def wait_grpc_ready(
    target: GrpcTarget, alive: Callable[[], bool], started: float, timeout_s: float
) -> float:
    """Poll ModelReady over gRPC until the model is ready; seconds from ``started``."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb

    with grpc.insecure_channel(f"127.0.0.1:{target.port}") as channel:
        ready = channel.unary_unary(
            f"/{SERVICE}/ModelReady",
            request_serializer=pb.ModelReadyRequest.SerializeToString,
            response_deserializer=pb.ModelReadyResponse.FromString,
        )
        last = ""
        while time.perf_counter() - started < timeout_s:
            if not alive():
                raise RuntimeError("the server exited before gRPC was ready")
            try:
                if ready(pb.ModelReadyRequest(name=target.model), timeout=1.0).ready:
                    return time.perf_counter() - started
                last = "ModelReady answered ready=false"
            except grpc.RpcError as e:
                last = f"{e.code().name}: {e.details()}"
            time.sleep(0.02)
    raise RuntimeError(f"gRPC not ready on port {target.port} after {timeout_s:.0f} s ({last})")


def check_infer(port: int, request: bytes, n_rows: int) -> dict[str, Any]:
    """Send ``request`` once with grpcio; fail unless the status is OK and every output has one
    row per input row. Returns what the answer looked like and its serialized size."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        infer = channel.unary_unary(INFER_PATH)  # bytes in, bytes out
        try:
            answer = infer(request, timeout=30.0)
        except grpc.RpcError as e:
            raise RuntimeError(
                f"ModelInfer with {n_rows} row(s) failed: {e.code().name}: {e.details()}"
            ) from e
    response = pb.ModelInferResponse.FromString(answer)
    if not response.outputs:
        raise RuntimeError(f"ModelInfer with {n_rows} row(s) answered no outputs")
    outputs = []
    for i, out in enumerate(response.outputs):
        shape = list(out.shape)
        if not shape or shape[0] != n_rows:
            raise RuntimeError(
                f"ModelInfer with {n_rows} row(s): output {out.name!r} has shape {shape}"
            )
        raw = len(response.raw_output_contents[i]) if i < len(response.raw_output_contents) else 0
        outputs.append({"name": out.name, "datatype": out.datatype, "shape": shape, "raw": raw})
    return {"outputs": outputs, "response_bytes": len(answer)}


# -- h2load ----------------------------------------------------------------------------------


def h2load_cmd(port: int, body: Path, clients: int, streams: int, duration_s: int) -> list[str]:
    cmd = ["h2load", "-t1", f"-c{clients}", f"-m{streams}", f"-D{duration_s}"]
    cmd += ["-H", "content-type: application/grpc", "-H", "te: trailers", "-d", str(body)]
    return [*cmd, f"http://127.0.0.1:{port}{INFER_PATH}"]


def parse_h2load(stdout: str) -> dict[str, Any]:
    """The counts from h2load's summary: req/s, requests by outcome, status classes, bytes."""
    out: dict[str, Any] = {}
    for raw_line in stdout.splitlines():
        line = raw_line.strip()
        if line.startswith("finished in"):
            out["rps"] = float(line.split(",")[1].split()[0])
        elif line.startswith("requests:"):
            for part in line.removeprefix("requests:").split(","):
                n, what = part.split()
                out[what] = int(n)
        elif line.startswith("status codes:"):
            for part in line.removeprefix("status codes:").split(","):
                n, what = part.split()
                out[f"status_{what}"] = int(n)
        elif line.startswith("traffic:"):
            # traffic: 1.2MB (1234567) total, 12KB (12345) headers (...), 1.1MB (1123456) data
            for part in line.split(","):
                words = part.split()
                with contextlib.suppress(ValueError, IndexError):
                    exact = int(words[-2].strip("()")) if words[-1] in ("total", "data") else None
                    if exact is not None:
                        out[f"{words[-1]}_bytes"] = exact
    if "rps" not in out or "done" not in out:
        raise RuntimeError(f"cannot read h2load's summary: {stdout.strip()[-300:]!r}")
    return out


def latency_ms(values_us: list[float]) -> dict[str, float]:
    """p50/p90/p99/mean/max in ms (nearest rank) of latencies in microseconds."""
    if not values_us:
        return {k: math.nan for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "max_ms")}
    ordered = sorted(values_us)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] / 1000

    return {
        "p50_ms": rank(0.50),
        "p90_ms": rank(0.90),
        "p99_ms": rank(0.99),
        "mean_ms": sum(ordered) / len(ordered) / 1000,
        "max_ms": ordered[-1] / 1000,
    }


def run_h2load(
    port: int, body: Path, *, inflight: int, mode: str, load: Load, frame_bytes: int, log: Path
) -> dict[str, Any]:
    """One h2load run pinned to the client CPU; latencies come from its per-request log."""
    clients, streams = (1, inflight) if mode == "streams" else (inflight, 1)
    cmd = h2load_cmd(port, body, clients, streams, load.duration_s)
    cmd = ["taskset", "-c", load.client_cpu, *cmd, "--log-file", str(log)]
    log.unlink(missing_ok=True)  # h2load appends to its log
    before = children_cpu_s()
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=load.duration_s + 60, check=False
    )
    cpu_s = children_cpu_s() - before
    if done.returncode != 0:
        raise RuntimeError(
            f"h2load failed ({done.returncode}): {(done.stderr or done.stdout)[-300:]}"
        )
    counts = parse_h2load(done.stdout)
    took_us = []
    with contextlib.suppress(OSError):
        for line in log.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) >= 3 and fields[1].startswith("2"):
                took_us.append(float(fields[2]))
    log.unlink(missing_ok=True)
    # A gRPC error is HTTP 200 with trailers only: no DATA. Count the answers the DATA cannot
    # cover (0 when every answer had the size of the checked one).
    short = 0
    if "data_bytes" in counts and frame_bytes:
        short = max(
            0, math.ceil((counts["done"] * frame_bytes - counts["data_bytes"]) / frame_bytes)
        )
    failed = counts.get("failed", 0) + counts.get("errored", 0) + counts.get("timeout", 0)
    return {
        "client": "h2load",
        "mode": mode,
        "conns": inflight,
        "requests": counts["done"],
        "rps": counts["rps"],
        **latency_ms(took_us),
        "latency_samples": len(took_us),
        # Near 100% means the load generator, not the server, set the pace.
        "client_cpu_pct": 100 * cpu_s / load.duration_s,
        "failed": failed,
        "non_2xx": counts["done"] - counts.get("status_2xx", counts["done"]),
        "short_answers": short,
        "data_bytes": counts.get("data_bytes"),
    }


# -- grpc.aio client -------------------------------------------------------------------------


def run_aio(
    port: int, message: Path, *, inflight: int, mode: str, load: Load, answer_bytes: int
) -> dict[str, Any]:
    """One run of the grpc.aio client (our venv's python) pinned to the client CPU."""
    cmd = ["taskset", "-c", load.client_cpu, sys.executable, str(AIO_CLIENT)]
    cmd += ["--port", str(port), "--message", str(message), "--inflight", str(inflight)]
    cmd += ["--mode", mode, "--duration", str(load.duration_s)]
    cmd += ["--answer-bytes", str(answer_bytes)]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=load.duration_s + 60, check=False
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("AIO_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"the grpc.aio client failed: {(done.stderr or done.stdout)[-300:]}")
    raw = json.loads(line.removeprefix("AIO_JSON "))
    return {
        "client": "aio",
        "mode": mode,
        "conns": inflight,
        "requests": raw["ok"] + raw["failed"],
        "rps": raw["ok"] / raw["duration_s"],
        **latency_ms(raw["latency_us"]),
        "client_cpu_pct": 100 * raw["cpu_s"] / raw["duration_s"],
        "failed": raw["failed"],
        "failures": raw["failures"],
        "short_answers": raw["short_answers"],
    }


# -- one server ------------------------------------------------------------------------------


def measure_grpc(
    target: GrpcTarget,
    load: Load,
    *,
    data: list[list[float]],
    tmp: Path,
    alive: Callable[[], bool],
    started: float,
) -> dict[str, Any]:
    """Wait for gRPC, then for each request size (the first n rows of ``data``, repeated when
    short): check one call, warm up, and run every load generator, mode and concurrency. Returns
    ``grpc_ready_s``, ``request``, ``grpc_checks`` and ``grpc_runs``."""
    import numpy as np

    out: dict[str, Any] = {
        "grpc_ready_s": wait_grpc_ready(target, alive, started, load.ready_timeout_s),
        "request": {
            "path": INFER_PATH,
            "layout": target.layout,
            "dtype": load.dtype,
            "contents": load.contents,
        },
        "grpc_checks": {},
        "grpc_runs": [],
    }
    for n_rows in load.rows:
        rows = np.resize(np.asarray(data, dtype="float64"), (n_rows, len(target.columns)))
        message = infer_request(target, rows, dtype=load.dtype, contents=load.contents)
        message_file = tmp / f"grpc-{target.port}-{n_rows}.pb"
        message_file.write_bytes(message)
        body = tmp / f"grpc-{target.port}-{n_rows}.body"
        body.write_bytes(grpc_frame(message))
        check = check_infer(target.port, message, n_rows)
        check["request_bytes"] = len(message)
        out["grpc_checks"][str(n_rows)] = check
        frame_bytes = check["response_bytes"] + 5
        if load.warmup_s > 0:
            warm = dataclasses.replace(load, duration_s=load.warmup_s)
            run_h2load(
                target.port, body, inflight=8, mode="streams", load=warm,
                frame_bytes=frame_bytes, log=tmp / "h2load-warmup.log",
            )  # fmt: skip
        for client in load.clients:
            for mode in load.modes:
                for inflight in load.conns:
                    if inflight == 1 and mode != load.modes[0]:
                        continue  # one request in flight is the same run in either mode
                    if not alive():
                        raise RuntimeError("the server exited during the gRPC runs")
                    if client == "h2load":
                        run = run_h2load(
                            target.port, body, inflight=inflight, mode=mode, load=load,
                            frame_bytes=frame_bytes, log=tmp / "h2load.log",
                        )  # fmt: skip
                    else:
                        run = run_aio(
                            target.port, message_file, inflight=inflight, mode=mode, load=load,
                            answer_bytes=check["response_bytes"],
                        )  # fmt: skip
                    run["rows"] = n_rows
                    run["rows_per_s"] = run["rps"] * n_rows
                    print(f"    {fmt_grpc_run(run)}", flush=True)
                    out["grpc_runs"].append(run)
        # The server must still answer correctly after the load.
        check_infer(target.port, message, n_rows)
    return out


def fmt_grpc_run(run: dict[str, Any]) -> str:
    return (
        f"{run['client']:<6} {run['rows']:>4} row(s) {run['mode']:<7} c={run['conns']:<3} "
        f"{run['rps']:>9,.0f} req/s {run['rows_per_s']:>11,.0f} rows/s  p50 {run['p50_ms']:6.2f}"
        f"  p99 {run['p99_ms']:6.2f} ms  failed {run['failed']}  short {run['short_answers']}"
        f"  client cpu {run['client_cpu_pct']:.0f}%"
    )


# -- ratios and report -----------------------------------------------------------------------


def grpc_run(
    result: dict[str, Any] | None, *, rows: int, conns: int, mode: str, client: str = "h2load"
) -> dict[str, Any] | None:
    for run in (result or {}).get("grpc_runs", []):
        if (run["rows"], run["conns"], run["client"]) == (rows, conns, client) and (
            run["mode"] == mode or conns == 1
        ):
            return dict(run)
    return None


def grpc_ratios(
    results: dict[str, Any], *, top: int, yard: str, peers: list[str], rest_rps: float | None
) -> dict[str, Any]:
    """The issue's gRPC goals at ``top`` requests in flight from h2load's runs, per mode (under
    ``grpc_by_mode``) and for the headline mode at the top level: yard gRPC vs yard REST, vs the
    best MLServer gRPC in the same mode, p99, 1000-row rows/s; and yard's failures, all runs."""
    measured = sorted({r["mode"] for r in results.get(yard, {}).get("grpc_runs", [])})
    by_mode = {m: _mode_ratios(results, m, top=top, yard=yard, peers=peers, rest_rps=rest_rps)
               for m in measured}  # fmt: skip
    if not measured:
        return {}
    mode = HEADLINE_MODE if HEADLINE_MODE in measured else measured[0]
    runs = results[yard]["grpc_runs"]
    errors = sum(r["failed"] + r["short_answers"] + r.get("non_2xx", 0) for r in runs)
    return {"grpc_mode": mode, **by_mode[mode], "grpc_errors": errors, "grpc_by_mode": by_mode}


def _mode_ratios(
    results: dict[str, Any],
    mode: str,
    *,
    top: int,
    yard: str,
    peers: list[str],
    rest_rps: float | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    found = [(n, r) for n in peers if (r := grpc_run(results.get(n), rows=1, conns=top, mode=mode))]
    if found:
        out["grpc_peer"], peer = max(found, key=lambda item: item[1]["rps"])
        out["grpc_peer_rps"] = peer["rps"]
    one = grpc_run(results.get(yard), rows=1, conns=top, mode=mode)
    if one is None:
        return out
    out["grpc_yard_rps"] = one["rps"]
    if rest_rps:
        out["grpc_vs_rest"] = one["rps"] / rest_rps
    if found:
        out["grpc_vs_mlserver"] = one["rps"] / out["grpc_peer_rps"]
    out["grpc_p99_ms"] = one["p99_ms"]
    if big := grpc_run(results.get(yard), rows=1000, conns=top, mode=mode):
        out["grpc_rows_per_s"] = big["rows_per_s"]
    return out


def print_grpc_report(results: dict[str, Any], found: dict[str, Any]) -> None:
    grpc = {n: r for n, r in results.items() if r.get("grpc_runs")}
    if not grpc:
        return
    print()
    head = f"{'gRPC server':<20} {'client':<6} {'rows':>4} {'mode':<7} {'c':>3} {'req/s':>9} "
    head += f"{'rows/s':>11} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'failed':>6} short"
    print(head + " client cpu")
    for name, result in grpc.items():
        for i, run in enumerate(result["grpc_runs"]):
            print(
                f"{name if i == 0 else '':<20} {run['client']:<6} {run['rows']:>4} "
                f"{run['mode']:<7} {run['conns']:>3} {run['rps']:>9,.0f} "
                f"{run['rows_per_s']:>11,.0f} {run['p50_ms']:>7.2f} {run['p90_ms']:>7.2f} "
                f"{run['p99_ms']:>7.2f} {run['failed']:>6} {run['short_answers']:>5} "
                f"{run['client_cpu_pct']:>9.0f}%"
            )
    for mode, ratios in found.get("grpc_by_mode", {}).items():
        if not {"grpc_vs_rest", "grpc_vs_mlserver"} & ratios.keys():
            continue
        shown = " (the targets' mode)" if mode == found["grpc_mode"] else ""
        print(f"gRPC ratios at c={found['at_conns']}, {mode} mode{shown}, h2load, 1 row:")
        if "grpc_vs_rest" in ratios:
            print(f"  yard gRPC / yard REST (wrk)   {ratios['grpc_vs_rest']:8.2f}x")
        if "grpc_vs_mlserver" in ratios:
            print(f"  yard gRPC / {ratios['grpc_peer']:<19} {ratios['grpc_vs_mlserver']:6.1f}x")


def children_cpu_s() -> float:
    """CPU seconds (user + system) used by this process's waited-for children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def h2load_version() -> str:
    with contextlib.suppress(OSError):
        done = subprocess.run(["h2load", "--version"], capture_output=True, text=True, check=False)
        return done.stdout.strip()
    return ""
