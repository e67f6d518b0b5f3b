"""Finding the pipeline in a file given as FILE.py or FILE.py:NAME."""

from __future__ import annotations

import os
import py_compile
import sys
from pathlib import Path

import pytest

from modelyard.errors import PipelineDefinitionError
from modelyard.pipelines import Pipeline, PipelineDef
from modelyard.pipelines.loader import load_pipeline, split_target
from modelyard.pipelines.worker import load_module_from_path
from tests.unit.pipelines._project import Project

TWO = """
from modelyard.pipelines import Node, Pipeline, pipeline, step

@step
def one() -> int:
    return 1

@pipeline
def first():
    one()

second = Pipeline("explicit", steps=[Node(one)])
alias = first
"""


def test_a_file_with_several_pipelines_needs_a_name(project: Project) -> None:
    path = project.write("two.py", TWO)
    with pytest.raises(PipelineDefinitionError) as exc:
        load_pipeline(str(path))
    assert f"defines 2 pipelines; choose one: {path}:first, {path}:second" in str(exc.value)
    assert isinstance(load_pipeline(f"{path}:first"), PipelineDef)
    explicit = load_pipeline(f"{path}:explicit")  # by the pipeline's own name
    assert isinstance(explicit, Pipeline) and explicit.name == "explicit"
    with pytest.raises(
        PipelineDefinitionError, match="has no pipeline 'third'; it has: first, second"
    ):
        load_pipeline(f"{path}:third")


def test_files_without_pipelines_or_that_fail_to_import_are_refused(project: Project) -> None:
    empty = project.write("empty.py", "x = 1\n")
    broken = project.write("broken.py", "import not_a_module_anywhere\n")
    cases = [
        (str(empty), "defines no pipeline; decorate a function with @pipeline"),
        (str(broken), "Importing pipeline file"),
        (str(project.root / "missing.py"), "does not exist"),
        (str(project.root / "data.csv"), "is not a Python file"),
    ]
    for target, message in cases:
        with pytest.raises(PipelineDefinitionError, match=message):
            load_pipeline(target)
    assert "ModuleNotFoundError: No module named 'not_a_module_anywhere'" in _message(str(broken))


def _message(target: str) -> str:
    try:
        load_pipeline(target)
    except PipelineDefinitionError as exc:
        return str(exc)
    raise AssertionError("no error")


def test_targets_split_on_the_last_colon_after_a_python_file() -> None:
    assert split_target("a/b.py:train") == (Path("a/b.py"), "train")
    assert split_target("a/b.py")[1] is None
    assert split_target("c:/x.py")[1] is None


def test_a_pipeline_file_is_compiled_from_its_source_not_a_stale_pyc(tmp_path: Path) -> None:
    path = tmp_path / "consts.py"
    path.write_text("FACTOR = 3\n")
    stamp = path.stat().st_mtime_ns
    first = load_module_from_path(path, "_yard_test_consts")
    assert first.FACTOR == 3
    py_compile.compile(str(path))  # the .pyc an ordinary import would have left behind
    path.write_text("FACTOR = 4\n")  # same size, and (below) the same mtime
    os.utime(path, ns=(stamp, stamp))
    try:
        assert load_module_from_path(path, "_yard_test_consts").FACTOR == 4
    finally:
        sys.modules.pop("_yard_test_consts", None)
