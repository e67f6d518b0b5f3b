"""The closed loop, end to end: a model serves under continuous load, its inputs shift so that it
decays, labels arrive late, the loop retrains it on fresh labelled data, gates it against the
serving version, canaries it and promotes it, with no person and no failed request.

    python examples/closed_loop.py            # the first scenario (promotion)
    python examples/closed_loop.py --worse    # and beside it the second: the retrained model
                                              # is worse and its canary rolls back

Everything runs in a temporary folder (``--keep DIR`` keeps it): a real ``yard serve`` process
(prediction log, alert rules, the rollout controller), a real ``yard loop run`` process, and per
deployment a client thread sending requests and counting the failed ones, and a feeder posting
each answer's true label to ``POST /v1/labels`` and its business outcome (1 when the answer was
right) to ``POST /v1/outcomes`` a second later. The loop starts on CBPE's estimated accuracy,
before those labels.

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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BETTER = "churn"  # the first scenario's deployment: the loop promotes a better model
WORSE = "churn-worse"  # the second's: the retrained model is worse and its canary rolls back
SEED = 15
STEEPNESS = 6.0  # the truth: P(target = 1) = sigmoid(STEEPNESS * (x0 + x1))
YARD = str(Path(sys.executable).parent / "yard")
#: What the alert the loop listens to watches: CBPE's estimate of the accuracy from the logged
#: scores, which needs no label of the window ("performance:accuracy", the realised accuracy,
#: waits for the labels, which come LABEL_DELAY_S after each answer).
ALERT_METRIC = "estimated:accuracy"
LABEL_DELAY_S = 1.0
#: CBPE's reference: a version's first this many labelled answers (all before the shift).
REFERENCE_ROWS = 200
RATE_PER_S = 80.0  # requests a second a client aims at (one row each; a busy machine gives less)


def make_rows(count: int, *, shifted: bool, rng: np.random.Generator) -> pd.DataFrame:
    """``count`` labelled rows from before (``shifted=False``) or after the shift."""
    if shifted:
        x0, x1 = rng.normal(0.0, 0.1, count), rng.normal(0.0, 1.0, count)
    else:
        x0, x1 = rng.normal(0.0, 1.0, count), rng.normal(0.0, 0.005, count)
    p = 1.0 / (1.0 + np.exp(-STEEPNESS * (x0 + x1)))
    target = (rng.random(count) < p).astype(np.int64)
    return pd.DataFrame({"x0": x0, "x1": x1, "target": target})


# The retraining pipeline the loop runs (``[loops.NAME.train] pipeline``). ``corrupt`` stands
# for a broken labelling job in the second scenario: it swaps the classes of the new channel's
# rows (|x1| > 0.1, which the original training data never has), so the model it trains answers
# the shifted rows mostly wrong, with answers distributed like the serving model's: a lenient
# gate passes it, the canary's output distance does not notice, its business outcomes do.
PIPELINE = '''
"""Retrain a model on the table the loop hands over (training data + fresh labels)."""

from __future__ import annotations

import pandas as pd

from modelyard.pipelines import pipeline, step
from modelyard.pipelines.builtin import load_table, register


@step
def fit(table: pd.DataFrame, max_iter: int = 200, corrupt: bool = False):
    from sklearn.linear_model import LogisticRegression

    if corrupt:  # a broken labelling job: the new channel's classes swapped
        new = table["x1"].abs() > 0.1
        table = table.assign(target=table["target"].where(~new, 1 - table["target"]))
    X, y = table[["x0", "x1"]], table["target"]
    return LogisticRegression(max_iter=max_iter).fit(X, y)


@pipeline
def retrain(
    data: str = "data/train.csv", name: str = "churn", max_iter: int = 200, corrupt: bool = False
):
    table = load_table(data)
    model = fit(table, max_iter=max_iter, corrupt=corrupt)
    return register(model, table, name, target="target", convert="onnx")
'''


def config_toml(names: list[str], *, alert_metric: str = ALERT_METRIC) -> str:
    """The project's ``modelyard.toml``: short windows and intervals so that a turn of the loop
    takes seconds. The deployment ``WORSE`` gets a pipeline that corrupts the fresh labels and a
    gate lenient enough to let it through (its holdout accuracy fell 0.40-0.46 below the serving
    version's in the runs measured; -0.75 leaves room)."""
    head = textwrap.dedent(f"""\
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

        [monitoring.estimation]  # CBPE's reference: the first labelled answers (before the shift)
        reference_rows = {REFERENCE_ROWS}
        min_reference_rows = 150
        reference_chunks = 5
        """)
    return head + "".join(_loop_toml(name, alert_metric) for name in names)


def _loop_toml(name: str, alert_metric: str) -> str:
    worse = name == WORSE
    return textwrap.dedent(f"""
        [[monitoring.alerts.rules]]
        name = "{name}-accuracy"
        deployment = "{name}"
        metric = "{alert_metric}"
        op = "<"
        threshold = 0.8
        window = "8s"
        # fires once the estimate has stayed low this long: CBPE sees the decay before labels
        # exist, and the retraining needs fresh labelled rows beyond the gate's holdout (fired
        # at once, the newest 30% held out left the pipeline a few dozen shifted rows)
        for = "5s"

        [loops.{name}]
        require_approval = false
        cooldown = "1h"

        [loops.{name}.trigger]
        alerts = ["{name}-accuracy"]

        [loops.{name}.train]
        pipeline = "pipeline.py:retrain"
        params = {{ name = "{name}", max_iter = 200, corrupt = {str(worse).lower()} }}
        data_param = "data"
        training_data = "data/train.csv"
        labelled_window = "1m"
        target = "target"

        [loops.{name}.gate]
        holdout = 0.3
        thresholds = [ {{ metric = "accuracy", min_absolute_change = {-0.75 if worse else 0.0} }} ]

        [loops.{name}.rollout]
        mode = "canary"
        steps = [25, 50]
        bake = "2s"

        [loops.{name}.rollout.policy]  # the rollout Policy's fields
        min_requests = 30  # a route's requests in a step before it is judged
        min_outcomes = 30  # and its business outcomes: the candidate's may not be lower
        # On 30 answers the class shares of two equally good models can differ by 0.2 (a
        # distance of 0.205 rolled a good model back here): the outcomes judge quality.
        max_output_distance = 0.4
        p99_floor_ms = 250.0  # a busy 2-core machine's latency noise is no regression
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
        super().__init__(daemon=True, name=f"client-{url.rsplit('/', 2)[-2]}")
        self.url, self.traffic = url, traffic
        self.rng = np.random.default_rng(seed)
        self.shift = threading.Event()
        self.stop = threading.Event()
        self.count = 0
        self._rows: dict[bool, list[tuple[float, float, int]]] = {False: [], True: []}

    def run(self) -> None:
        asyncio.run(self._main())

    def _row(self, shifted: bool) -> tuple[float, float, int]:
        """The next row of its phase (rows are made 256 at a time)."""
        rows = self._rows[shifted]
        if not rows:
            table = make_rows(256, shifted=shifted, rng=self.rng)
            columns = (table[c].tolist() for c in ("x0", "x1", "target"))
            rows.extend(zip(*columns, strict=True))
            rows.reverse()
        return rows.pop()

    async def _main(self) -> None:
        import httpx

        async with httpx.AsyncClient(timeout=30) as client:
            await asyncio.gather(*(self._caller(client, i) for i in range(4)))

    async def _caller(self, client: Any, index: int) -> None:
        pause = 4 / RATE_PER_S
        while not self.stop.is_set():
            started = time.monotonic()
            shifted = self.shift.is_set()
            x0, x1, target = self._row(shifted)
            self.count += 1
            request_id = f"c{index}-{self.count}"
            answer = Answer(time.monotonic(), request_id, target, shifted, 0)
            body = {
                "inputs": [
                    {"name": "x0", "shape": [1], "datatype": "FP64", "data": [x0]},
                    {"name": "x1", "shape": [1], "datatype": "FP64", "data": [x1]},
                ],
                # the scores are logged too: CBPE estimates the accuracy from them
                "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
            }
            try:
                r = await client.post(self.url, json=body, headers={"x-request-id": request_id})
                answer.status = r.status_code
                if r.status_code == 200:
                    outputs = {o["name"]: o["data"] for o in r.json()["outputs"]}
                    answer.predicted = int(outputs["predict"][0])
                    answer.version = r.headers.get("x-model-version")
                    answer.route = r.headers.get("x-route")
            except Exception as exc:  # a failed request is counted, not raised
                answer.route = f"{type(exc).__name__}: {exc}"
            answer.at = time.monotonic()
            with self.traffic.lock:
                self.traffic.answers.append(answer)
            await asyncio.sleep(max(0.0, pause - (time.monotonic() - started)))


class LabelFeeder(threading.Thread):
    """``LABEL_DELAY_S`` after each answer, posts the request's true label to ``/v1/labels`` and
    its business outcome to ``/v1/outcomes`` (1 when the answer was right, else 0)."""

    def __init__(self, url: str, deployment: str, traffic: Traffic) -> None:
        super().__init__(daemon=True, name=f"labels-{deployment}")
        self.url, self.deployment, self.traffic = url, deployment, traffic
        self.stop = threading.Event()

    def run(self) -> None:
        import httpx

        sent = 0
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.wait(0.25):
                cutoff = time.monotonic() - LABEL_DELAY_S
                with self.traffic.lock:
                    end = sent
                    answers = self.traffic.answers
                    while end < len(answers) and answers[end].at <= cutoff:
                        end += 1
                    due, sent = answers[sent:end], end
                due = [a for a in due if a.predicted is not None]
                if not due:
                    continue
                labels = [{"request_id": a.request_id, "label": a.target} for a in due]
                outcomes = [
                    {"request_id": a.request_id, "value": float(a.predicted == a.target)}
                    for a in due
                ]
                if self._post(client, "/v1/labels", labels=labels) and self._post(
                    client, "/v1/outcomes", outcomes=outcomes
                ):
                    self.traffic.labelled += len(labels)
                else:
                    self.traffic.label_failures += 1

    def _post(self, client: Any, path: str, **items: list[dict[str, Any]]) -> bool:
        import httpx

        try:
            r = client.post(path, json={"deployment": self.deployment, **items})
        except httpx.TransportError:
            return False
        return bool(r.status_code in (200, 202))


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


def write_project(
    folder: Path, names: list[str], *, alert_metric: str = ALERT_METRIC
) -> pd.DataFrame:
    """The training data, the pipeline and the configuration; returns the training table."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    train = make_rows(2000, shifted=False, rng=np.random.default_rng(SEED))
    train.to_csv(folder / "data" / "train.csv", index=False)
    (folder / "pipeline.py").write_text(PIPELINE.lstrip())
    (folder / "modelyard.toml").write_text(config_toml(names, alert_metric=alert_metric))
    return train


def deploy_first_model(folder: Path, name: str, train: pd.DataFrame) -> str:
    """Version 1 of model ``name``, trained on the training data, as the stable version of
    deployment ``name``. Its ONNX twin serves it (and the pipeline's versions): the server is
    ready without importing scikit-learn (82 ms here, against 7-20 s for the native runtime on a
    busy 2-core machine)."""
    from sklearn.linear_model import LogisticRegression

    from modelyard import rollout
    from modelyard.registry import Registry
    from modelyard.settings import Settings

    registry = Registry(Settings(home=folder / "home"))
    try:
        X, y = train[["x0", "x1"]], train["target"]
        model = LogisticRegression(max_iter=200).fit(X, y)
        version = registry.register(model, name=name, data=X, target=y, convert="onnx")
        rollout.deploy(registry, name, model_ref=version.ref, reason="the first model")
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
    """What one deployment's scenario counted (accuracies are the client's: answers against the
    true labels)."""

    deployment: str
    first_version: str
    requests: int
    failed: int
    labelled: int
    end_state: str | None  # the loop's last state: promoted, rejected (None: it never ended)
    serving_version: str  # the stable version at the end
    shift_to_alert_s: float | None  # from the shift to the alert's firing
    shift_to_end_s: float | None  # from the shift to the promotion or the rejection
    accuracy_before: float | None  # before the shift (the first model)
    accuracy_decayed: float | None  # after the shift, answered by the first model
    accuracy_candidate: float | None  # after the shift, answered by the retrained version
    accuracy_after: float | None  # from a second after the loop ended
    versions_after: dict[str, int] = field(default_factory=dict)  # who answered then, how often
    transitions: list[dict[str, Any]] = field(default_factory=list)
    status_text: str = ""

    def lines(self) -> list[str]:
        def number(value: float | None, unit: str = "") -> str:
            return "-" if value is None else f"{value:.{1 if unit else 3}f}{unit}"

        return [
            f"{self.deployment}: requests {self.requests}, failed {self.failed}, labels posted "
            f"{self.labelled}",
            f"{self.deployment}: the loop ended {self.end_state}; serving {self.serving_version} "
            f"(first model {self.first_version}); from the shift to the alert "
            f"{number(self.shift_to_alert_s, ' s')}, to the end "
            f"{number(self.shift_to_end_s, ' s')}",
            f"{self.deployment}: realised accuracy before the shift "
            f"{number(self.accuracy_before)}, after it on the first model "
            f"{number(self.accuracy_decayed)}, on the retrained version "
            f"{number(self.accuracy_candidate)}, after the loop ended "
            f"{number(self.accuracy_after)}",
        ]


@dataclass
class _Run:
    """One deployment's moving parts during a scenario."""

    name: str
    url: str
    traffic: Traffic = field(default_factory=Traffic)
    first: str = ""
    ended_at: float | None = None
    end_state: str | None = None

    def __post_init__(self) -> None:
        self.client = Client(f"{self.url}/v2/models/{self.name}/infer", self.traffic, seed=SEED)
        self.feeder = LabelFeeder(self.url, self.name, self.traffic)


def run_scenarios(
    folder: Path,
    names: list[str],
    *,
    loop: bool = True,
    timeout_s: float = 90.0,
    say: Callable[[str], None] = print,
) -> list[Result]:
    """The scenario for each deployment in ``names`` (``BETTER``, ``WORSE``), side by side on one
    server and one loop process, in ``folder`` (empty or missing). ``loop=False`` runs no loop:
    the shift and the decay alone, for ``timeout_s`` seconds."""
    from modelyard.registry import Registry
    from modelyard.settings import Settings

    folder.mkdir(parents=True, exist_ok=True)
    train = write_project(folder, names)
    port = free_port()
    runs = [_Run(name, f"http://127.0.0.1:{port}") for name in names]
    for run in runs:
        run.first = deploy_first_model(folder, run.name, train)
        say(f"registered and deployed {run.first} on {len(train)} rows")
    serve = ["serve", "--port", str(port)] + [a for n in names for a in ("--deployment", n)]
    processes = [Process(folder, "server", *serve)]
    registry = Registry(Settings(home=folder / "home"))
    shift_at, shifted_at = time.monotonic(), datetime.now(UTC)
    try:
        if loop:  # starts beside the server: it idles until an alert fires
            processes.append(Process(folder, "loop", "loop", "run", "--interval", "0.5"))
        wait_ready(runs[0].url, processes[0])
        for run in runs:
            run.client.start()
            run.feeder.start()
        # before the shift: at least 5 s, and labels for CBPE's reference (its first 200
        # labelled answers) so that it is made of unshifted rows however slow the machine is
        until = time.monotonic() + 60.0
        time.sleep(5.0)
        while min(r.traffic.labelled for r in runs) < REFERENCE_ROWS + 50:
            if time.monotonic() > until:
                break
            processes[0].check()
            time.sleep(0.25)
        for run in runs:
            run.client.shift.set()
        shift_at, shifted_at = time.monotonic(), datetime.now(UTC)
        say(f"shifted the inputs after {sum(len(r.traffic.answers) for r in runs)} requests")
        _wait(runs, processes, registry, loop=loop, until=shift_at + timeout_s, say=say)
        if loop and all(run.ended_at is not None for run in runs):
            time.sleep(3.0)  # answers after the end, for the accuracy after it
    finally:
        for run in runs:
            run.client.stop.set()
            run.feeder.stop.set()
        for run in runs:
            run.client.join(30)
            run.feeder.join(30)
        for process in reversed(processes):
            process.stop()
    try:
        return [_result(folder, registry, run, shift_at, shifted_at, loop=loop) for run in runs]
    finally:
        registry.close()


def _wait(
    runs: list[_Run],
    processes: list[Process],
    registry: Any,
    *,
    loop: bool,
    until: float,
    say: Callable[[str], None],
) -> None:
    """Until every deployment's loop has ended (or ``until``)."""
    while time.monotonic() < until:
        for process in processes:
            process.check()
        for run in runs:
            if loop and run.ended_at is None:
                run.end_state = _ended(registry, run.name)
                if run.end_state is not None:
                    run.ended_at = time.monotonic()
                    say(f"{run.name}: the loop ended {run.end_state}")
        if loop and all(run.ended_at is not None for run in runs):
            return
        time.sleep(0.25)


def _result(
    folder: Path, registry: Any, run: _Run, shift_at: float, shifted_at: datetime, *, loop: bool
) -> Result:
    from modelyard import rollout
    from modelyard.monitoring.alerts import alert_history

    fired = [
        i.fired_at
        for i in alert_history(registry.db)
        if i.deployment == run.name and i.fired_at is not None
    ]
    first = run.first.split("/")[1]
    traffic = run.traffic

    def after(answer: Answer) -> bool:
        return run.ended_at is not None and answer.at > run.ended_at + 1.0

    transitions, status_text = _loop_record(folder, registry, run.name) if loop else ([], "")
    return Result(
        deployment=run.name, first_version=run.first, requests=len(traffic.answers),
        failed=len(traffic.failed()), labelled=traffic.labelled, end_state=run.end_state,
        serving_version=rollout.get_deployment(registry.db, run.name).stable_ref,
        shift_to_alert_s=(min(fired) - shifted_at).total_seconds() if fired else None,
        shift_to_end_s=None if run.ended_at is None else run.ended_at - shift_at,
        accuracy_before=traffic.accuracy(lambda a: not a.shifted)[0],
        accuracy_decayed=traffic.accuracy(lambda a: a.shifted and a.version == first)[0],
        accuracy_candidate=traffic.accuracy(
            lambda a: a.shifted and a.version not in (None, first)
        )[0],
        accuracy_after=traffic.accuracy(after)[0],
        versions_after=dict(Counter(str(a.version) for a in traffic.answers if after(a))),
        transitions=transitions, status_text=status_text,
    )  # fmt: skip


def _ended(registry: Any, name: str) -> str | None:
    """``promoted`` or ``rejected`` once the deployment's loop has ended, else ``None``."""
    from modelyard.loop import loop_status

    for status in loop_status(registry.db, name):
        if status.state in ("promoted", "rejected"):
            return str(status.state)
    return None


def _loop_record(folder: Path, registry: Any, name: str) -> tuple[list[dict[str, Any]], str]:
    """The loop's recorded transitions and ``yard loop status``'s text."""
    import msgspec

    from modelyard.loop import loop_status

    transitions = [msgspec.to_builtins(s) for s in loop_status(registry.db, name)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env.update(MODELYARD_HOME=str(folder / "home"), MODELYARD_CONFIG=str(folder / "modelyard.toml"))
    shown = subprocess.run(
        [YARD, "loop", "status", name], cwd=folder, env=env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    return transitions, shown.stdout + shown.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--worse", action="store_true",
        help=f"also run the second scenario (deployment {WORSE}) beside the first",
    )  # fmt: skip
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args()
    started = time.monotonic()
    names = [BETTER, WORSE] if args.worse else [BETTER]
    with tempfile.TemporaryDirectory(prefix="closed-loop-") as tmp:
        results = run_scenarios(args.keep or Path(tmp), names)
    for result in results:
        print(f"\n$ yard loop status {result.deployment}\n{result.status_text.rstrip()}")
    print()
    for result in results:
        print("\n".join(result.lines()))
    print(f"\ndone in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
