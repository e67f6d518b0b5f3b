"""Defining pipelines: tracing, explicit graphs, parameters; every mistake refused before a run."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, NamedTuple

import pytest

from modelyard.errors import PipelineDefinitionError
from modelyard.pipelines import Node, Pipeline, pipeline, step


class Halves(NamedTuple):
    left: list[int]
    right: list[int]


@step
def numbers(n: int = 4) -> list[int]:
    return list(range(n))


@step
def halve(values: list[int]) -> Halves:
    middle = len(values) // 2
    return Halves(values[:middle], values[middle:])


@step
def pair(values: list[int]) -> tuple[int, int]:
    return min(values), max(values)


@step
def total(values: list[int], scale: float = 1.0) -> float:
    return sum(values) * scale


@step
def text() -> str:
    return "x"


@pipeline
def arithmetic(n: int = 4, scale: float = 1.0) -> None:
    halves = halve(numbers(n))
    total(halves.left, scale=scale)
    total(halves.right)
    pair(halves.right)


def test_tracing_builds_the_graph_with_named_outputs_and_unique_names() -> None:
    built = arithmetic.build({"n": "6"})
    assert [n.name for n in built.nodes] == ["numbers", "halve", "total", "total_2", "pair"]
    assert built.params == {"n": 6, "scale": 1.0}
    assert built.node("total").inputs == {"values": "halve.left"}
    assert built.params_of["total"] == {"scale": 1.0}
    assert built.params_of["total_2"] == {"scale": 1.0}
    assert built.params_of["numbers"] == {"n": 6}
    assert built.upstream["halve"] == ("numbers",)
    assert pair.outputs.names == ("output_0", "output_1")
    assert halve.outputs.names == ("left", "right")
    assert built.downstream("halve") == {"total", "total_2", "pair"}
    assert built.width == 3
    assert built.source == Path(__file__).resolve()


def test_steps_called_outside_a_pipeline_are_plain_functions() -> None:
    assert total([1, 2], scale=2.0) == 6.0
    assert halve([1, 2, 3]) == Halves([1], [2, 3])


def test_unknown_and_bad_parameters_name_the_known_ones() -> None:
    with pytest.raises(PipelineDefinitionError) as exc:
        arithmetic.build({"sacle": "2"})
    assert "no parameter 'sacle'" in str(exc.value)
    assert "its parameters are: n, scale" in str(exc.value)
    with pytest.raises(
        PipelineDefinitionError, match="'n' of pipeline 'arithmetic' expects an int"
    ):
        arithmetic.build({"n": "four"})


@pipeline
def typed(
    path: Path = Path("a.csv"),
    flag: bool = False,
    mode: Literal["fast", "slow"] = "fast",
    cols: list[str] | None = None,
    limit: int | None = 3,
    ratio=0.5,  # no annotation: converted by the default's type
) -> None:
    text()


def test_command_line_strings_are_converted_by_annotation() -> None:
    params = typed.resolve_params(
        {"path": "b.csv", "flag": "yes", "mode": "slow", "cols": '["a", "b"]', "limit": "none",
         "ratio": "0.25"}
    )  # fmt: skip
    assert params == {"path": Path("b.csv"), "flag": True, "mode": "slow", "cols": ["a", "b"],
                      "limit": None, "ratio": 0.25}  # fmt: skip
    assert typed.build({"path": "c.csv"}).params["path"] == "c.csv"  # recorded as JSON
    with pytest.raises(PipelineDefinitionError, match="choose one of fast, slow"):
        typed.resolve_params({"mode": "medium"})
    with pytest.raises(PipelineDefinitionError, match="use true or false"):
        typed.resolve_params({"flag": "maybe"})


@pipeline
def needs_value(size: int) -> None:
    numbers(size)


def test_a_parameter_without_default_is_required() -> None:
    with pytest.raises(PipelineDefinitionError, match=r"needs parameter 'size'.*--param size="):
        needs_value.build()
    assert needs_value.build({"size": 2}).params == {"size": 2}


def test_an_explicit_cycle_is_refused_naming_the_steps() -> None:
    with pytest.raises(PipelineDefinitionError) as exc:
        Pipeline(
            "loop",
            steps=[
                Node(numbers),
                Node(halve, name="a", inputs={"values": "b.output"}),
                Node(total, name="b", inputs={"values": "c"}),
                Node(total, name="c", inputs={"values": "a.left"}),
            ],
        )
    message = str(exc.value)
    assert "form a cycle" in message
    assert "a -> c -> b -> a" in message


def test_missing_dependencies_are_refused_naming_the_steps() -> None:
    cases = [
        ([Node(total, inputs={"values": "numbrs"})], "no step is named 'numbrs'"),
        ([Node(numbers), Node(total, inputs={"values": "numbers.out"})],
         "step 'numbers' has no output 'out'; its outputs are: output"),
        ([Node(numbers), Node(halve, inputs={"values": "numbers"}),
          Node(total, inputs={"values": "halve"})],
         "name one: 'halve.left', 'halve.right'"),
        ([Node(total)], "Step 'total' needs argument 'values'"),
        ([Node(numbers, params={"m": 3})], "no argument 'm'; its arguments are: n"),
        ([Node(numbers), Node(numbers)], "two steps named 'numbers'"),
        ([Node(numbers), Node(text, name="a.b")], "Step name 'a.b'"),
    ]  # fmt: skip
    for steps, expected in cases:
        with pytest.raises(PipelineDefinitionError, match=expected.replace("(", r"\(")):
            Pipeline("p", steps=steps)


def test_declared_types_that_cannot_match_are_refused() -> None:
    with pytest.raises(PipelineDefinitionError) as exc:
        Pipeline("p", steps=[Node(text), Node(total, inputs={"values": "text"})])
    assert "declares 'values' as list, but it takes 'text.output', declared str" in str(exc.value)


def test_step_parameters_must_be_json_values() -> None:
    with pytest.raises(PipelineDefinitionError, match="Argument 'values' of step 'total' is a"):
        Pipeline("p", steps=[Node(total, params={"values": object()})])


@pipeline
def branches_on_output() -> None:
    if numbers():
        text()


@pipeline
def nested_handle() -> None:
    total(values=[numbers()])


@pipeline
def broken_body(n: int = 1) -> None:
    raise KeyError("oops")


def test_misusing_placeholders_and_failing_bodies_give_clear_errors() -> None:
    with pytest.raises(PipelineDefinitionError, match="can branch on its parameters, not on step"):
        branches_on_output.build()
    with pytest.raises(PipelineDefinitionError, match="inside a container"):
        nested_handle.build()
    with pytest.raises(PipelineDefinitionError, match="its body raised KeyError: 'oops'"):
        broken_body.build()


def test_bad_step_definitions_are_refused() -> None:
    def varargs(*values: int) -> int:
        return 0

    with pytest.raises(PipelineDefinitionError, match=r"takes \*values"):
        step(varargs)
    with pytest.raises(PipelineDefinitionError, match="input_files \\['file'\\]"):
        step(input_files=["file"])(text.fn)
    with pytest.raises(PipelineDefinitionError, match="Step name 'a b'"):
        step(name="a b")(text.fn)
