"""@step(resources=...): checked when the step is defined (the Ray executor's use of them is in
tests/integration/test_pipelines_ray.py)."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.errors import PipelineDefinitionError
from modelyard.pipelines import step


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ({"cpus": 0}, "Step 'fit' asks for 0 of resource 'cpus'; give a positive number"),
        ({"cpus": "four"}, "Step 'fit' asks for 'four' of resource 'cpus'"),
        ({"gpus": float("nan")}, "Step 'fit' asks for nan of resource 'gpus'"),
    ],
)
def test_bad_resources_are_refused_when_the_step_is_defined(
    resources: dict[str, Any], expected: str
) -> None:
    with pytest.raises(PipelineDefinitionError) as exc:

        @step(resources=resources)
        def fit() -> int:
            return 1

    assert str(exc.value).startswith(expected)


def test_resources_are_kept_as_numbers() -> None:
    @step(resources={"cpus": 4, "trainer": 1})
    def fit() -> int:
        return 1

    assert fit.resources == {"cpus": 4.0, "trainer": 1.0}
    assert fit() == 1  # called as a function, resources change nothing
