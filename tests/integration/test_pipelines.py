"""Pipelines against a real metadata database (SQLite, and PostgreSQL when configured) and a
real artifact store: runs, cache hits and misses, failures, lineage, and what is refused."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sklearn.linear_model import LogisticRegression

from modelyard.errors import PipelineDefinitionError, StepFailedError
from modelyard.pipelines import (
    LocalExecutor,
    Node,
    Pipeline,
    PipelineRun,
    current_step,
    load_artifact,
    run,
    step,
)
from modelyard.registry import Registry
from tests.conftest import blob_count
from tests.integration._pipelines import DIAMOND, STEPS, ChurnProject
from tests.unit.pipelines._project import Project


@pytest.fixture
def churn(tmp_path: Path) -> Iterator[ChurnProject]:
    project = ChurnProject(tmp_path / "project")
    yield project
    project.close()


def run_churn(project: ChurnProject, registry: Registry, **options: Any) -> PipelineRun:
    params = {"data": str(project.data), **options.pop("params", {})}
    return run(
        project.load(), params=params, registry=registry, executor=LocalExecutor(workers=1),
        **options,
    )  # fmt: skip


def statuses(result: PipelineRun) -> dict[str, str]:
    return {s.name: s.status for s in result.steps}


def test_a_run_is_recorded_and_a_second_run_reuses_every_step(
    churn: ChurnProject, registry: Registry
) -> None:
    first = run_churn(churn, registry)
    assert first.status == "finished"
    assert statuses(first) == dict.fromkeys(STEPS, "succeeded")
    assert registry.get_run(first.id).name == "churn"
    assert first.params == {"data": str(churn.data), "C": "1.0", "fail_eval": "false", "seed": "0"}
    assert first.tags["modelyard.source"] == str(churn.pipeline_file.resolve())
    accuracy = first.step("evaluate").metrics["accuracy"]
    assert 0.5 < accuracy <= 1.0
    assert first.metrics == {"evaluate.accuracy": accuracy}

    formats = {(s.name, o): (a.kind, a.format) for s in first.steps for o, a in s.outputs.items()}
    assert formats == {
        ("load_table", "output"): ("table", "parquet"),
        ("prepare", "output"): ("table", "parquet"),
        ("split", "train"): ("table", "parquet"),
        ("split", "test"): ("table", "parquet"),
        ("train", "output"): ("model", "sklearn"),
        ("evaluate", "output"): ("json", "json"),
        ("report", "output"): ("json", "json"),
        ("profile", "output"): ("array", "npy"),
    }
    train = first.step("train")
    assert "INFO churn: training with C=1.0" in (train.log or "")
    assert "preparing 300 rows" in (first.step("prepare").log or "")
    source = train.inputs["train"]
    assert (source.run_id, source.step, source.output) == (first.id, "split", "train")
    assert train.key_parts is not None and train.key_parts["params"] == {"C": 1.0}
    assert train.key_parts["inputs"] == {"train": source.sha256}
    assert "scikit-learn" in train.key_parts["packages"]
    model = load_artifact(registry, first.output("train"))
    assert isinstance(model, LogisticRegression)
    assert load_artifact(registry, first.output("report")) == f"accuracy {accuracy:.3f}"

    second = run_churn(churn, registry)
    assert statuses(second) == dict.fromkeys(STEPS, "cached")
    assert {s.cached_from for s in second.steps} == {first.id}
    for name in STEPS:
        assert second.step(name).outputs == first.step(name).outputs
        assert second.step(name).cache_key == first.step(name).cache_key
    assert second.metrics == first.metrics
    assert second.step("evaluate").metrics == {"accuracy": accuracy}
    assert registry.list_runs().total == 2


def test_a_change_reruns_only_the_steps_it_reaches(
    churn: ChurnProject, sqlite_registry: Registry
) -> None:
    first = run_churn(churn, sqlite_registry)
    changed = run_churn(churn, sqlite_registry, params={"C": "0.5"})
    assert statuses(changed) == {
        "load_table": "cached", "prepare": "cached", "split": "cached", "train": "succeeded",
        "evaluate": "succeeded", "report": "cached", "profile": "cached",
    }  # fmt: skip
    assert changed.step("train").cache_note == "cache miss: parameter C 1.0 -> 0.5"
    assert changed.step("evaluate").cache_note == "cache miss: input model changed"
    # the new model scores the same: evaluate wrote the same bytes, so report is a hit
    assert changed.output("evaluate").sha256 == first.output("evaluate").sha256
    assert changed.output("train").sha256 != first.output("train").sha256

    forced = run_churn(churn, sqlite_registry, force={"prepare"})
    # prepare ran again and wrote the same bytes, so what follows is still a hit
    assert statuses(forced)["prepare"] == "succeeded"
    assert forced.step("prepare").cache_note == "forced"
    assert forced.output("prepare").sha256 == first.output("prepare").sha256
    assert statuses(forced)["split"] == "cached"

    everything = run_churn(churn, sqlite_registry, no_cache=True)
    assert set(statuses(everything).values()) == {"succeeded"}
    for name in STEPS:  # the same artifacts, byte for byte (models included)
        for output, artifact in everything.step(name).outputs.items():
            assert artifact.sha256 == first.step(name).outputs[output].sha256

    churn.data.write_text(churn.data.read_text())  # rewritten, same content: still a hit
    assert statuses(run_churn(churn, sqlite_registry))["load_table"] == "cached"
    lines = churn.data.read_text().splitlines()
    churn.data.write_text("\n".join(lines[:-1]) + "\n")  # one row fewer, same path
    shorter = run_churn(churn, sqlite_registry)
    assert statuses(shorter)["load_table"] == "succeeded"
    assert shorter.step("load_table").cache_note == "cache miss: content of path changed"
    assert shorter.output("load_table").meta["rows"] == 299

    churn.write(
        "features.py", "def add_ratio(table):\n    return table.assign(ratio=table['calls'])\n"
    )
    edited = run_churn(churn, sqlite_registry)
    assert statuses(edited)["load_table"] == "cached"
    assert statuses(edited)["prepare"] == "succeeded"  # a helper in another module changed
    assert edited.step("prepare").cache_note == "cache miss: code changed"
    assert statuses(edited)["profile"] == "succeeded"  # its input changed


def test_a_missing_or_altered_artifact_is_not_a_cache_hit(
    churn: ChurnProject, sqlite_registry: Registry
) -> None:
    first = run_churn(churn, sqlite_registry)
    store = sqlite_registry.artifacts
    model = Path(store.path_of(first.output("train").sha256))
    model.unlink()
    table = Path(store.path_of(first.output("prepare").sha256))
    table.write_bytes(b"not parquet")
    second = run_churn(churn, sqlite_registry)
    assert statuses(second)["train"] == "succeeded"
    assert statuses(second)["prepare"] == "succeeded"
    assert second.step("train").cache_note == f"cache miss: run {first.id}: missing"
    assert second.step("prepare").cache_note == f"cache miss: run {first.id}: altered"
    # the outputs were written again, identical, and what follows them is a hit
    assert statuses(second)["evaluate"] == "cached"
    assert store.get(first.output("train").sha256, label="model")
    assert store.get(first.output("prepare").sha256, label="table")
    assert set(statuses(run_churn(churn, sqlite_registry)).values()) == {"cached"}


def test_a_failing_step_fails_the_run_and_keeps_what_succeeded(
    churn: ChurnProject, registry: Registry
) -> None:
    with pytest.raises(StepFailedError) as exc:
        run_churn(churn, registry, params={"fail_eval": "true"})
    assert "Step 'evaluate' of pipeline 'churn' failed (ValueError: evaluation data is empty)" in (
        str(exc.value)
    )
    assert exc.value.steps == ("evaluate",)
    assert exc.value.run_id is not None
    failed = registry.get_run(exc.value.run_id)
    assert failed.status == "failed"
    from modelyard.pipelines.records import get_pipeline_run

    record = get_pipeline_run(registry, exc.value.run_id)
    assert record is not None
    assert statuses(record) == {
        "load_table": "succeeded", "prepare": "succeeded", "split": "succeeded",
        "train": "succeeded", "evaluate": "failed", "report": "skipped",
        "profile": "succeeded",
    }  # fmt: skip
    evaluate = record.step("evaluate")
    assert evaluate.outputs == {}
    assert evaluate.error is not None
    assert "Traceback (most recent call last)" in evaluate.error
    assert 'pipe.py", line' in evaluate.error and "in evaluate" in evaluate.error
    assert "worker.py" not in evaluate.error
    assert evaluate.error.strip() in (evaluate.log or "")
    assert record.step("report").cache_note == "an upstream step failed"

    fixed = run_churn(churn, registry)
    assert statuses(fixed) == {
        "load_table": "cached", "prepare": "cached", "split": "cached", "train": "cached",
        "evaluate": "succeeded", "report": "succeeded", "profile": "cached",
    }  # fmt: skip
    assert fixed.step("train").cached_from == exc.value.run_id


def test_bad_input_is_refused_before_anything_is_written(
    churn: ChurnProject, sqlite_registry: Registry, tmp_path: Path
) -> None:
    pipeline = churn.load()
    cases = [
        ({"data": str(tmp_path / "nope.csv")}, {},
         f"Input file '{tmp_path / 'nope.csv'}' of step 'load_table' does not exist"),
        ({"data": str(tmp_path)}, {}, "of step 'load_table' is a folder"),
        ({"dat": "x.csv"}, {}, "no parameter 'dat'; its parameters are: data, C, fail_eval, seed"),
        ({"C": "high"}, {}, "Parameter 'C' of pipeline 'churn' expects a float, got 'high'"),
        ({"data": str(churn.data)}, {"force": ["trian"]},
         "no step 'trian'; its steps are: load_table, prepare, split, profile, train"),
    ]  # fmt: skip
    for params, options, message in cases:
        with pytest.raises(PipelineDefinitionError) as exc:
            run(pipeline, params=params, registry=sqlite_registry, **options)
        assert message in str(exc.value)
    assert sqlite_registry.list_runs().total == 0
    assert blob_count(tmp_path / "artifacts") == 0


def refuse_negative(params: Mapping[str, Any]) -> None:
    if params["n"] < 0:
        raise PipelineDefinitionError(f"n must be positive, got {params['n']}.")


@step(check=refuse_negative)
def count(n: int) -> list[int]:
    return list(range(n))


def test_a_step_check_runs_before_anything_is_written(sqlite_registry: Registry) -> None:
    with pytest.raises(PipelineDefinitionError, match="n must be positive, got -1"):
        run(Pipeline("counting", steps=[Node(count, params={"n": -1})]), registry=sqlite_registry)
    assert sqlite_registry.list_runs().total == 0
    done = run(Pipeline("counting", steps=[Node(count, params={"n": 2})]), registry=sqlite_registry)
    assert load_artifact(sqlite_registry, done.output("count")) == [0, 1]


@step(input_files=("path",))
def size(path: Path) -> list[str]:
    return [type(path).__name__, str(path), str(path.stat().st_size)]


def test_input_files_are_resolved_hashed_and_given_as_paths(
    sqlite_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.txt").write_text("12345")
    pipeline = Pipeline("sizes", steps=[Node(size, params={"path": "data.txt"})])
    done = run(pipeline, registry=sqlite_registry)
    record = done.step("size")
    assert load_artifact(sqlite_registry, done.output("size")) == [
        "PosixPath",
        str(tmp_path / "data.txt"),
        "5",
    ]
    assert record.params == {"path": "data.txt"}  # as given; the content is in the key
    assert record.key_parts is not None
    assert record.key_parts["files"] == {"path": hashlib.sha256(b"12345").hexdigest()}


@step
def fit_small() -> LogisticRegression:
    return LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])


@step(cache=False)
def publish(model: LogisticRegression) -> str:
    context = current_step()
    assert context is not None
    registry = context.registry()
    try:
        return registry.register(model, name="small", run=context.run_id).ref
    finally:
        registry.close()


def test_a_step_registers_a_model_linked_to_its_pipeline_run(registry: Registry) -> None:
    pipeline = Pipeline(
        "publishing", steps=[fit_small, Node(publish, inputs={"model": "fit_small"})]
    )
    first = run(pipeline, registry=registry)
    assert load_artifact(registry, first.output("publish")) == "small/1"
    assert registry.get_version("small/1").run_id == first.id
    second = run(pipeline, registry=registry)
    assert second.step("fit_small").status == "cached"
    assert second.step("publish").status == "succeeded"  # cache=False: a side effect
    assert second.step("publish").cache_note == "not cached: @step(cache=False)"
    assert registry.get_version("small/2").run_id == second.id


class Opaque:
    pass


@step
def make_opaque() -> Opaque:
    return Opaque()


@step(allow_pickle=True)
def make_pickled() -> Opaque:
    return Opaque()


def test_outputs_without_a_safe_format_fail_the_step_unless_pickle_is_allowed(
    sqlite_registry: Registry,
) -> None:
    with pytest.raises(StepFailedError, match="which modelyard cannot store safely") as exc:
        run(Pipeline("opaque", steps=[Node(make_opaque)]), registry=sqlite_registry)
    from modelyard.pipelines.records import get_pipeline_run

    record = get_pipeline_run(sqlite_registry, exc.value.run_id or "")
    assert record is not None and record.step("make_opaque").outputs == {}
    done = run(Pipeline("pickled", steps=[Node(make_pickled)]), registry=sqlite_registry)
    assert done.output("make_pickled").format == "pickle"
    assert isinstance(load_artifact(sqlite_registry, done.output("make_pickled")), Opaque)


def test_steps_workers_cannot_import_run_in_process_or_are_refused(
    sqlite_registry: Registry,
) -> None:
    @step
    def one() -> int:
        return 1

    @step
    def two() -> int:
        return 2

    pipeline = Pipeline("local", steps=[one, two])  # two steps that could run at once
    assert pipeline.width == 2
    with pytest.raises(PipelineDefinitionError, match="defined inside a function"):
        run(pipeline, registry=sqlite_registry, executor=LocalExecutor(workers=2))
    assert sqlite_registry.list_runs().total == 0
    done = run(pipeline, registry=sqlite_registry)  # the default executor stays in-process
    assert [s.status for s in done.steps] == ["succeeded", "succeeded"]


def test_worker_processes_give_the_same_artifacts(
    tmp_path: Path, sqlite_registry: Registry
) -> None:
    project = Project(tmp_path / "diamond")
    try:
        project.write("diamond.py", DIAMOND)
        definition = project.load("diamond.py").diamond
        here = run(definition, registry=sqlite_registry, executor=LocalExecutor(workers=1))
        parallel = run(
            definition, registry=sqlite_registry, executor=LocalExecutor(workers=2), no_cache=True
        )
    finally:
        project.close()
    assert set(statuses(parallel).values()) == {"succeeded"}
    assert parallel.step("means").log == "grouping\n"
    outputs = {(s.name, o): a.sha256 for s in here.steps for o, a in s.outputs.items()}
    assert outputs == {(s.name, o): a.sha256 for s in parallel.steps for o, a in s.outputs.items()}
    assert len(outputs) == 5
