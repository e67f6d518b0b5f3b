"""The closed loop, end to end: a model serves under continuous load, its inputs shift so that it
decays, labels arrive late, the loop retrains it on fresh labelled data, gates it against the
serving version, canaries it and promotes it, with no person and no failed request.

    python examples/closed_loop.py            # the first scenario (promotion)
    python examples/closed_loop.py --worse    # and the second: the retrained model is worse

Everything runs in a temporary folder: a real ``yard serve`` process (prediction log, alert
rules, the rollout controller), a real ``yard loop run`` process, a client thread sending
requests and counting the failed ones, and a label feeder posting the truth to
``POST /v1/labels`` a moment after each answer.

The data (seeded): two columns; the truth is ``P(target = 1) = sigmoid(6 (x0 + x1))``, the same
before and after the shift (a covariate shift). Before it, ``x1`` hardly varies (a channel that
every customer came through), so the first model learns to read ``x0`` alone. After it, ``x1``
varies widely and ``x0`` sits near 0: the inputs move onto the old model's decision boundary, so
it grows unsure (the confidence-based estimate drops) and wrong (the realised accuracy drops);
a model retrained on the new labelled rows reads both columns and recovers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DEPLOYMENT = "churn"
SEED = 15
STEEPNESS = 6.0  # the truth: P(target = 1) = sigmoid(STEEPNESS * (x0 + x1))
YARD = str(Path(sys.executable).parent / "yard")
#: The alert the loop listens to. With the CBPE estimate wired in, this reads
#: "estimated:accuracy" and fires before any label arrives; "performance:accuracy" is the
#: realised accuracy (labels come LABEL_DELAY_S after each answer).
ALERT_METRIC = "performance:accuracy"
LABEL_DELAY_S = 1.0
RATE_PER_S = 80.0  # requests per second the client sends (one row each)


def make_rows(count: int, *, shifted: bool, rng: np.random.Generator) -> pd.DataFrame:
    """``count`` labelled rows from before (``shifted=False``) or after the shift."""
    if shifted:
        x0, x1 = rng.normal(0.0, 0.1, count), rng.normal(0.0, 1.0, count)
    else:
        x0, x1 = rng.normal(0.0, 1.0, count), rng.normal(0.0, 0.005, count)
    p = 1.0 / (1.0 + np.exp(-STEEPNESS * (x0 + x1)))
    target = (rng.random(count) < p).astype(np.int64)
    return pd.DataFrame({"x0": x0, "x1": x1, "target": target})


# The retraining pipeline the loop runs (``[loops.churn.train] pipeline``). ``corrupt`` stands
# for a broken labelling job in the second scenario: the rows of the new channel (|x1| > 0.1,
# which the original training data never has) all read 1.
PIPELINE = '''
"""Retrain the churn model on the table the loop hands over (training data + fresh labels)."""

from __future__ import annotations

import pandas as pd

from modelyard.pipelines import pipeline, step
from modelyard.pipelines.builtin import load_table, register


@step
def fit(table: pd.DataFrame, max_iter: int = 200, corrupt: bool = False):
    from sklearn.linear_model import LogisticRegression

    if corrupt:  # a broken labelling job: every row of the new channel reads 1
        table = table.assign(target=table["target"].where(table["x1"].abs() <= 0.1, 1))
    X, y = table[["x0", "x1"]], table["target"]
    return LogisticRegression(max_iter=max_iter).fit(X, y)


@pipeline
def retrain(data: str = "data/train.csv", max_iter: int = 200, corrupt: bool = False):
    table = load_table(data)
    return register(fit(table, max_iter=max_iter, corrupt=corrupt), table, "churn", target="target")
'''


def config_toml(*, worse: bool, alert_metric: str = ALERT_METRIC) -> str:
    """The project's ``modelyard.toml``: short windows and intervals so that a turn of the loop
    takes seconds; ``worse``: the pipeline corrupts the fresh labels and the gate is lenient."""
    gate = "-0.5" if worse else "0.0"
    return textwrap.dedent(f"""\
        [serving]
        rollout_interval_s = 0.5
        poll_interval_s = 0.5

        [monitoring]
        log = true
        flush_interval_s = 0.5

        [monitoring.drift]
        interval_s = 0  # no drift gauges: this scenario triggers on accuracy

        [monitoring.alerts]
        interval_s = 1

        [[monitoring.alerts.rules]]
        name = "churn-accuracy"
        deployment = "{DEPLOYMENT}"
        metric = "{alert_metric}"
        op = "<"
        threshold = 0.8
        window = "8s"

        [loops.{DEPLOYMENT}]
        require_approval = false
        cooldown = "1h"

        [loops.{DEPLOYMENT}.trigger]
        alerts = ["churn-accuracy"]

        [loops.{DEPLOYMENT}.train]
        pipeline = "pipeline.py:retrain"
        params = {{ max_iter = 200, corrupt = {str(worse).lower()} }}
        data_param = "data"
        training_data = "data/train.csv"
        labelled_window = "1m"
        target = "target"

        [loops.{DEPLOYMENT}.gate]
        holdout = 0.3
        thresholds = [ {{ metric = "accuracy", min_absolute_change = {gate} }} ]

        [loops.{DEPLOYMENT}.rollout]
        mode = "canary"
        steps = [25, 50]
        bake = "2s"
        policy = {{ min_requests = 30, p99_floor_ms = 250.0, max_output_distance = 0.2 }}
        """)


@dataclass
class Answer:
    at: float  # time.monotonic() when the answer came
    request_id: str
    target: int
    shifted: bool
    status: int  # 0: no HTTP answer (a transport error)
    version: str | None = None
    route: str | None = None
    predicted: int | None = None


@dataclass
class Traffic:
    """Every answer the client got, and the label feeder's progress."""

    answers: list[Answer] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    labelled: int = 0
    label_failures: int = 0

    def failed(self) -> list[Answer]:
        with self.lock:
            return [a for a in self.answers if a.status != 200 or a.predicted is None]

    def accuracy(self, keep: Callable[[Answer], bool]) -> tuple[float | None, int]:
        with self.lock:
            rows = [a for a in self.answers if a.predicted is not None and keep(a)]
        if not rows:
            return None, 0
        return sum(a.predicted == a.target for a in rows) / len(rows), len(rows)


class Client(threading.Thread):
    """Sends ``RATE_PER_S`` one-row requests a second from 4 concurrent callers until stopped;
    rows come from before the shift until ``shift`` is set."""

    def __init__(self, url: str, traffic: Traffic, *, seed: int) -> None:
        super().__init__(daemon=True, name="client")
        self.url, self.traffic = url, traffic
        self.rng = np.random.default_rng(seed)
        self.shift = threading.Event()
        self.stop = threading.Event()
        self.count = 0

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        import httpx

        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(*(self._caller(client, i) for i in range(4)))

    async def _caller(self, client: Any, index: int) -> None:
        pause = 4 / RATE_PER_S
        while not self.stop.is_set():
            started = time.monotonic()
            shifted = self.shift.is_set()
            row = make_rows(1, shifted=shifted, rng=self.rng).iloc[0]
            self.count += 1
            request_id = f"c{index}-{self.count}"
            answer = Answer(time.monotonic(), request_id, int(row["target"]), shifted, 0)
            body = {"inputs": [
                {"name": "x0", "shape": [1], "datatype": "FP64", "data": [float(row["x0"])]},
                {"name": "x1", "shape": [1], "datatype": "FP64", "data": [float(row["x1"])]},
            ]}  # fmt: skip
            try:
                r = await client.post(self.url, json=body, headers={"x-request-id": request_id})
                answer.status = r.status_code
                if r.status_code == 200:
                    answer.predicted = int(r.json()["outputs"][0]["data"][0])
                    answer.version = r.headers.get("x-model-version")
                    answer.route = r.headers.get("x-route")
            except Exception as exc:  # a failed request is counted, not raised
                answer.route = f"{type(exc).__name__}: {exc}"
            answer.at = time.monotonic()
            with self.traffic.lock:
                self.traffic.answers.append(answer)
            await asyncio.sleep(max(0.0, pause - (time.monotonic() - started)))


class LabelFeeder(threading.Thread):
    """Posts each answered request's true label ``LABEL_DELAY_S`` after its answer."""

    def __init__(self, url: str, traffic: Traffic) -> None:
        super().__init__(daemon=True, name="labels")
        self.url, self.traffic = url, traffic
        self.stop = threading.Event()

    def run(self) -> None:
        import httpx

        sent = 0
        with httpx.Client(timeout=30) as client:
            while not self.stop.wait(0.25):
                cutoff = time.monotonic() - LABEL_DELAY_S
                with self.traffic.lock:
                    end = sent
                    answers = self.traffic.answers
                    while end < len(answers) and answers[end].at <= cutoff:
                        end += 1
                    due, sent = self.traffic.answers[sent:end], end
                labels = [
                    {"request_id": a.request_id, "label": a.target} for a in due if a.status == 200
                ]
                if not labels:
                    continue
                try:
                    r = client.post(self.url, json={"deployment": DEPLOYMENT, "labels": labels})
                    ok = r.status_code in (200, 202)
                except httpx.TransportError:
                    ok = False
                if ok:
                    self.traffic.labelled += len(labels)
                else:
                    self.traffic.label_failures += 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A ``yard`` command run in the project folder, its output in ``<folder>/<name>.log``."""

    def __init__(self, folder: Path, name: str, *args: str) -> None:
        self.log = folder / f"{name}.log"
        self._out = self.log.open("w")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
        env.update(
            MODELYARD_HOME=str(folder / "home"),
            MODELYARD_CONFIG=str(folder / "modelyard.toml"),
            OMP_WAIT_POLICY="PASSIVE",
        )
        self.proc = subprocess.Popen(
            [YARD, *args], cwd=folder, env=env, stdout=self._out, stderr=subprocess.STDOUT
        )

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.proc.args} exited {self.proc.returncode}: {self.tail()}")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text().splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def write_project(folder: Path, *, worse: bool, alert_metric: str = ALERT_METRIC) -> pd.DataFrame:
    """The training data, the pipeline and the configuration; returns the training table."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    train = make_rows(2000, shifted=False, rng=np.random.default_rng(SEED))
    train.to_csv(folder / "data" / "train.csv", index=False)
    (folder / "pipeline.py").write_text(PIPELINE.lstrip())
    (folder / "modelyard.toml").write_text(config_toml(worse=worse, alert_metric=alert_metric))
    return train


def deploy_first_model(folder: Path, train: pd.DataFrame) -> str:
    """Version 1, trained on the training data, as the deployment's stable version."""
    from sklearn.linear_model import LogisticRegression

    from modelyard import rollout
    from modelyard.registry import Registry
    from modelyard.settings import Settings

    registry = Registry(Settings(home=folder / "home"))
    try:
        X, y = train[["x0", "x1"]], train["target"]
        model = LogisticRegression(max_iter=200).fit(X, y)
        version = registry.register(model, name=DEPLOYMENT, data=X, target=y)
        rollout.deploy(registry, DEPLOYMENT, model_ref=version.ref, reason="the first model")
        return version.ref
    finally:
        registry.close()


def wait_ready(url: str, server: Process, timeout_s: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        server.check()
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server was not ready in {timeout_s:g} s: {server.tail()}")


@dataclass
class Result:
    """What one scenario counted (accuracies are the client's: answers against true labels)."""

    worse: bool
    first_version: str
    requests: int
    failed: int
    labelled: int
    end_state: str | None  # the loop's last state: promoted, rejected (None: it never ended)
    serving_version: str | None  # the stable version at the end
    shift_to_end_s: float | None  # from the shift to the promotion or the rollback
    shift_to_alert_s: float | None  # from the shift to the alert's firing
    accuracy_before: float | None  # before the shift (the first model)
    accuracy_decayed: float | None  # after the shift, answered by the first model
    accuracy_after: float | None  # after the end, every answer (shifted rows)
    accuracy_candidate: float | None  # after the shift, answered by the retrained version
    transitions: list[dict[str, Any]] = field(default_factory=list)
    status_text: str = ""

    def lines(self) -> list[str]:
        def pct(value: float | None) -> str:
            return "-" if value is None else f"{value:.3f}"

        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f} s"

        return [
            f"requests {self.requests}, failed {self.failed}, labels posted {self.labelled}",
            f"loop ended {self.end_state}; serving {self.serving_version} "
            f"(first model {self.first_version}); from the shift to the alert "
            f"{seconds(self.shift_to_alert_s)}, to the end {seconds(self.shift_to_end_s)}",
            f"realised accuracy: before the shift {pct(self.accuracy_before)}, after it on the "
            f"first model {pct(self.accuracy_decayed)}, retrained version "
            f"{pct(self.accuracy_candidate)}, after the loop ended {pct(self.accuracy_after)}",
        ]


def run_scenario(
    folder: Path,
    *,
    worse: bool = False,
    loop: bool = True,
    timeout_s: float = 90.0,
    say: Callable[[str], None] = print,
) -> Result:
    """One scenario in ``folder`` (empty or missing). ``loop=False`` runs no loop: the shift and
    the decay alone, for ``timeout_s`` seconds."""
    from modelyard import rollout
    from modelyard.monitoring.alerts import alert_history
    from modelyard.registry import Registry
    from modelyard.settings import Settings

    folder.mkdir(parents=True, exist_ok=True)
    train = write_project(folder, worse=worse)
    first = deploy_first_model(folder, train)
    say(f"registered and deployed {first} on {len(train)} rows")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    traffic = Traffic()
    client = Client(f"{url}/v2/models/{DEPLOYMENT}/infer", traffic, seed=SEED + 1)
    feeder = LabelFeeder(f"{url}/v1/labels", traffic)
    processes = [
        Process(folder, "server", "serve", "--deployment", DEPLOYMENT, "--port", str(port))
    ]
    registry = Registry(Settings(home=folder / "home"))
    shift_at = end_at = None
    shifted_at: datetime | None = None
    end_state: str | None = None
    try:
        if loop:  # starts beside the server: it idles until the alert fires
            processes.append(Process(folder, "loop", "loop", "run", "--interval", "0.5"))
        wait_ready(url, processes[0])
        client.start()
        feeder.start()
        time.sleep(5.0)
        client.shift.set()
        shift_at, shifted_at = time.monotonic(), datetime.now(UTC)
        say(f"shifted the inputs after {len(traffic.answers)} requests")
        deadline = shift_at + timeout_s
        while time.monotonic() < deadline:
            for process in processes:
                process.check()
            if loop:
                end_state = _ended(registry)
                if end_state is not None:
                    end_at = time.monotonic()
                    say(f"the loop ended: {end_state}")
                    break
            time.sleep(0.25)
        if end_at is not None:
            time.sleep(3.0)  # answers after the end, for the accuracy after it
    finally:
        client.stop.set()
        feeder.stop.set()
        client.join(30)
        feeder.join(30)
        for process in reversed(processes):
            process.stop()
    deployment = rollout.get_deployment(registry.db, DEPLOYMENT)
    fired = [i.fired_at for i in alert_history(registry.db) if i.fired_at is not None]
    to_alert = (min(fired) - shifted_at).total_seconds() if fired and shifted_at else None
    transitions, status_text = _loop_record(folder, registry) if loop else ([], "")
    registry.close()
    first_number = first.split("/")[1]
    before, _ = traffic.accuracy(lambda a: not a.shifted)
    decayed, _ = traffic.accuracy(lambda a: a.shifted and a.version == first_number)
    candidate, _ = traffic.accuracy(lambda a: a.shifted and a.version not in (None, first_number))
    after, _ = traffic.accuracy(lambda a: end_at is not None and a.at > end_at + 1.0)
    return Result(
        worse=worse, first_version=first, requests=len(traffic.answers),
        failed=len(traffic.failed()), labelled=traffic.labelled, end_state=end_state,
        serving_version=deployment.stable_ref,
        shift_to_end_s=None if end_at is None or shift_at is None else end_at - shift_at,
        shift_to_alert_s=to_alert,
        accuracy_before=before, accuracy_decayed=decayed, accuracy_after=after,
        accuracy_candidate=candidate, transitions=transitions, status_text=status_text,
    )  # fmt: skip


def _ended(registry: Any) -> str | None:
    """``promoted`` or ``rejected`` once the deployment's loop has ended, else ``None``."""
    from modelyard.loop import loop_status

    for status in loop_status(registry.db, DEPLOYMENT):
        if status.state in ("promoted", "rejected"):
            return str(status.state)
    return None


def _loop_record(folder: Path, registry: Any) -> tuple[list[dict[str, Any]], str]:
    """The loop's recorded transitions and ``yard loop status``'s text."""
    import msgspec
    from modelyard.loop import loop_status

    statuses = loop_status(registry.db, DEPLOYMENT)
    transitions = [msgspec.to_builtins(s) for s in statuses]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env.update(MODELYARD_HOME=str(folder / "home"), MODELYARD_CONFIG=str(folder / "modelyard.toml"))
    shown = subprocess.run(
        [YARD, "loop", "status", DEPLOYMENT],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return transitions, shown.stdout + shown.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worse", action="store_true", help="also run the second scenario")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="closed-loop-") as tmp:
        base = args.keep or Path(tmp)
        runs = [False, True] if args.worse else [False]
        for worse in runs:
            title = "the retrained model is worse" if worse else "decay, retrain, promote"
            print(f"\n== {title}", flush=True)
            result = run_scenario(base / ("worse" if worse else "better"), worse=worse)
            print(result.status_text.rstrip())
            for line in result.lines():
                print(line)
    print(f"\ndone in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
