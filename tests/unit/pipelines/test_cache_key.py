"""Cache keys: the step's code and the project code it reaches, its packages, parameters and
inputs; a change to any of them changes the key, a comment does not."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sklearn

from modelyard.pipelines.cache import (
    CodeHasher,
    PackageVersions,
    cache_key,
    explain_miss,
    find_project_root,
    key_parts,
)
from tests.unit.pipelines._project import Project

PIPE = """
    import numpy as np
    from helpers import scale
    from modelyard.pipelines import step

    FACTOR = 3

    @step
    def a(x: int = 1) -> int:
        return scale(x) * FACTOR

    @step
    def b(v: int) -> int:
        import helpers2
        from sklearn.linear_model import LinearRegression
        return helpers2.double(v)

    @step
    def c(v: int) -> float:
        return float(np.sqrt(v))
"""
HELPERS = """
    def scale(x):
        return _inner(x)

    def _inner(x):
        return x * 2
"""
HELPERS2 = """
    import util

    def double(v):
        return util.twice(v)
"""
UTIL = """
    def twice(v):
        return v + v
"""


def write(project: Project) -> None:
    project.write("pipe.py", PIPE)
    project.write("helpers.py", HELPERS)
    project.write("helpers2.py", HELPERS2)
    project.write("util.py", UTIL)


def fingerprints(project: Project, versions: Any = None) -> dict[str, Any]:
    module = project.load("pipe.py")
    hasher = CodeHasher(project.root, package_versions=versions)
    return {name: hasher.fingerprint(getattr(module, name).fn) for name in ("a", "b", "c")}


def test_the_key_covers_the_project_code_a_step_reaches(project: Project) -> None:
    write(project)
    first = fingerprints(project)
    assert first == fingerprints(project)  # stable
    sources = set(first["a"].sources)
    assert {"helpers:scale", "helpers:_inner"} <= sources
    assert any(s.endswith(":FACTOR") for s in sources)
    assert {"helpers2:<module>", "util:<module>"} <= set(first["b"].sources)
    assert not any("numpy" in s or "sklearn" in s for s in (*sources, *first["b"].sources))
    step_b = project.step("pipe.py", "b")
    before = CodeHasher(project.root).fingerprint(step_b.fn)
    assert step_b(2) == 4  # imports helpers2 and util
    assert CodeHasher(project.root).fingerprint(step_b.fn) == before  # imported or not

    project.write("helpers.py", HELPERS.replace("x * 2", "x * 2  # doubled\n\n"))
    assert fingerprints(project) == first  # comments and blank lines change nothing

    project.write("helpers.py", HELPERS.replace("x * 2", "x * 4"))
    changed = fingerprints(project)
    assert changed["a"].sha256 != first["a"].sha256  # a helper's helper changed
    assert changed["b"] == first["b"] and changed["c"] == first["c"]

    project.write("helpers.py", HELPERS)
    project.write("util.py", UTIL.replace("v + v", "2 * v"))
    changed = fingerprints(project)
    assert changed["b"].sha256 != first["b"].sha256  # imported inside the step, two modules away
    assert changed["a"] == first["a"]

    project.write("util.py", UTIL)
    project.write("pipe.py", PIPE.replace("FACTOR = 3", "FACTOR = 4"))
    assert fingerprints(project)["a"].sha256 != first["a"].sha256  # a constant it reads


def test_closures_and_defaults_are_hashed_by_value(project: Project) -> None:
    project.write(
        "factory.py",
        """
        from modelyard.pipelines import step

        def threshold_step(limit):
            @step(name="over")
            def over(values: list, scale=2.5) -> int:
                return sum(v * scale > limit for v in values)
            return over
        """,
    )
    module = project.load("factory.py")
    hasher = CodeHasher(project.root)
    one, other = module.threshold_step(1).fn, module.threshold_step(2).fn
    assert hasher.fingerprint(one) == CodeHasher(project.root).fingerprint(
        module.threshold_step(1).fn
    )
    assert hasher.fingerprint(one).sha256 != CodeHasher(project.root).fingerprint(other).sha256


def test_package_versions_come_through_a_replaceable_function(project: Project) -> None:
    write(project)
    asked: list[set[str]] = []

    def fake(version: str) -> Any:
        def versions(modules: Iterable[str]) -> dict[str, str]:
            names = set(modules)
            asked.append(names)
            return {"scikit-learn": version} if "sklearn" in names else {}

        return versions

    old = fingerprints(project, fake("1.0"))["b"]
    new = fingerprints(project, fake("2.0"))["b"]
    assert {"sklearn"} <= asked[1]  # imported inside the step's body
    assert old.sha256 == new.sha256 and old.packages != new.packages

    def key(code: Any) -> str:
        return cache_key(key_parts(code=code, params={"v": 1}, inputs={}, files={},
                                   allow_pickle=False, trusted_types=()))  # fmt: skip

    assert key(old) != key(new)
    real = fingerprints(project)
    assert real["b"].packages["scikit-learn"] == sklearn.__version__
    assert "numpy" in real["c"].packages
    assert PackageVersions()(["yaml", "not_a_module"]) == {
        "PyYAML": PackageVersions()(["yaml"])["PyYAML"]
    }


def test_parameters_and_inputs_change_the_key_and_misses_are_explained(project: Project) -> None:
    write(project)
    code = fingerprints(project)["a"]

    def parts(**changes: Any) -> dict[str, Any]:
        base: dict[str, Any] = {"code": code, "params": {"x": 1}, "inputs": {"t": "aa"},
                                "files": {}, "allow_pickle": False,
                                "trusted_types": ()}  # fmt: skip
        return key_parts(**{**base, **changes})

    same = cache_key(parts())
    assert cache_key(parts()) == same
    assert cache_key(parts(params={"x": 2})) != same
    assert cache_key(parts(params={"x": 1.0})) != same  # JSON keeps 1 and 1.0 apart
    assert cache_key(parts(inputs={"t": "bb"})) != same
    assert cache_key(parts(allow_pickle=True)) != same
    assert explain_miss(None, parts()) == "first run of this step"
    assert explain_miss(parts(), parts(params={"x": 2})) == "parameter x 1 -> 2"
    assert explain_miss(parts(), parts(inputs={"t": "bb"})) == "input t changed"


def test_the_project_root_is_the_nearest_folder_with_a_marker(project: Project) -> None:
    nested = project.root / "pipelines" / "deep"
    nested.mkdir(parents=True)
    (nested / "p.py").write_text("")
    assert find_project_root(nested / "p.py") == nested
    (project.root / "pyproject.toml").write_text("")
    assert find_project_root(nested / "p.py") == project.root
