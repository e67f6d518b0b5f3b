"""skops.io imported without all of scikit-learn (flavors/_skops_io.py): the same default trust as
skops' own import, the same refusals, and the normal import whenever the quick one cannot be
sure. Each import runs in a fresh interpreter: an import happens once per process."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import sklearn

from modelyard.flavors._sklearn_estimators import ESTIMATORS
from modelyard.flavors._skops_io import first_holder, listing, stand_ins

# What a process reports: every default-trust list skops built, and whether scikit-learn's own
# all_estimators() ran (it imports sklearn.utils._testing) and was put back.
_REPORT = """
import json, sys
import skops.io._trusted_types as t, skops.io._utils as u
import sklearn.utils, sklearn.utils.discovery as d
print(json.dumps({
    "names": {k: list(getattr(t, k)) for k in dir(t) if k.endswith("_TYPE_NAMES")},
    "walked": "sklearn.utils._testing" in sys.modules,
    "heavy": sorted(m for m in ("torch", "pytest") if m in sys.modules),
    "restored": sklearn.utils.all_estimators is d.all_estimators
    and d.all_estimators.__module__ == "sklearn.utils.discovery"
    and u.whichmodule.__module__ == "skops.io._utils",
}))
"""
_QUICK = "from modelyard.flavors import skops_io\nskops_io()\n"


def _run(code: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", code + _REPORT],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


@pytest.fixture(scope="module")
def normal() -> dict[str, Any]:
    return _run("import skops.io\n")


def test_the_installed_scikit_learn_has_its_list():
    assert sklearn.__version__ in ESTIMATORS, (
        f"no estimator list for scikit-learn {sklearn.__version__}: add the entry that "
        "'python -m modelyard.flavors._skops_io' prints to flavors/_sklearn_estimators.py"
    )


def test_the_kept_list_is_skops_own(normal):
    assert normal["walked"]  # the normal import did walk scikit-learn
    assert list(ESTIMATORS[sklearn.__version__]) == normal["names"]["SKLEARN_ESTIMATOR_TYPE_NAMES"]


def test_quick_import_trusts_exactly_what_the_normal_one_does(normal):
    quick = _run(_QUICK)

    assert quick["names"] == normal["names"]
    assert len(quick["names"]["SKLEARN_ESTIMATOR_TYPE_NAMES"]) > 100
    assert not quick["walked"] and quick["heavy"] == []
    assert quick["restored"]


# Each makes the quick import impossible or unsure; the normal import must follow.
_FALLBACKS = {
    # skops builds its names from the stand-ins; here they come out other than the list handed
    # over, as if skops named classes another way: the quick import is thrown away
    "skops-names-differ": (
        "import modelyard.flavors._skops_io as q\n"
        "real = q.stand_ins\n"
        "q.stand_ins = lambda names: [(n, type(n, (), {'__module__': 'elsewhere'})) "
        "for n, _ in real(names)]\n"
    ),
    "import-fails": (
        "import modelyard.flavors._skops_io as q\n"
        "def broken(*args, **kwargs):\n"
        "    def all_estimators(type_filter=None):\n"
        "        raise RuntimeError('boom')\n"
        "    return all_estimators\n"
        "q.listing = broken\n"
    ),
    "unknown-scikit-learn": (
        "import modelyard.flavors._sklearn_estimators as e\ne.ESTIMATORS.clear()\n"
    ),
}


@pytest.mark.parametrize("case", sorted(_FALLBACKS))
def test_whenever_the_quick_import_cannot_be_sure_skops_imports_normally(case, normal):
    fallen = _run(_FALLBACKS[case] + _QUICK)

    assert fallen["walked"] and fallen["restored"]
    assert fallen["names"] == normal["names"]


def test_after_a_quick_import_untrusted_types_are_still_refused():
    code = (
        "import numpy as np\n"
        "from sklearn.datasets import load_iris\n"
        "from sklearn.ensemble import HistGradientBoostingClassifier\n"
        "from sklearn.pipeline import make_pipeline\n"
        "from sklearn.preprocessing import FunctionTransformer\n"
        "from modelyard.errors import UntrustedTypeError\n"
        "from modelyard.flavors import LoadOptions, SklearnFlavor\n"
        "X, y = load_iris(return_X_y=True)\n"
        "flavor = SklearnFlavor()\n"
        "hgb = HistGradientBoostingClassifier(max_iter=5).fit(X, y)\n"
        "served = flavor.load(flavor.dump(hgb), LoadOptions())\n"
        "assert (served.predict(X) == hgb.predict(X)).all()\n"
        "rounding = make_pipeline(FunctionTransformer(np.round), "
        "HistGradientBoostingClassifier(max_iter=5)).fit(X, y)\n"
        "try:\n"
        "    flavor.load(flavor.dump(rounding), LoadOptions())\n"
        "except UntrustedTypeError as e:\n"
        "    assert 'numpy.round' in str(e), e\n"
        "else:\n"
        "    raise SystemExit('numpy.round was loaded without being trusted')\n"
    )
    quick = _run(code)  # the flavor's first skops use imports skops.io the quick way

    assert not quick["walked"]


def test_stand_ins_carry_the_names_skops_reads():
    ((name, cls),) = stand_ins(["sklearn.ensemble._forest.RandomForestClassifier"])

    assert name == "RandomForestClassifier"
    assert (cls.__module__, cls.__name__) == ("sklearn.ensemble._forest", name)


def test_only_the_importing_threads_unfiltered_call_gets_the_stand_ins():
    calls = []

    def real(type_filter=None):
        calls.append(type_filter)
        return [("real", int)]

    quick = listing(real, ["sklearn.a.B"], threading.get_ident())
    elsewhere: list[Any] = []
    thread = threading.Thread(target=lambda: elsewhere.append(quick()))
    thread.start()
    thread.join()

    assert [n for n, _ in quick()] == ["B"]
    assert quick("classifier") == [("real", int)]
    assert elsewhere == [[("real", int)]]
    assert calls == [None, "classifier"]  # the other thread, then the filtered call


class _Lazy(types.ModuleType):
    """A module type of its own whose attributes come from a method."""

    def __getattr__(self, name: str) -> object:
        return _THING if name == "thing" else None


_THING = object()  # no __module__: whichmodule walks the modules for it


@pytest.fixture
def holders() -> Iterator[list[str]]:
    """Modules that hold _THING as ``thing``: under another name, through a module
    ``__getattr__``, through a module type's ``__getattr__``, plainly; in that order."""
    made = {
        "_t_other_name": {"other": _THING},
        "_t_module_getattr": {"__getattr__": lambda n: _THING if n == "thing" else None},
        "_t_plain": {"thing": _THING},
    }
    names = []
    for name, attrs in made.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
        names.append(name)
    sys.modules["_t_lazy"] = _Lazy("_t_lazy")
    names.append("_t_lazy")
    yield names
    for name in names:
        sys.modules.pop(name, None)


def test_first_holder_answers_as_skops_whichmodule(holders):
    from skops.io._utils import whichmodule

    quick = first_holder(whichmodule)
    for expected in ("_t_module_getattr", "_t_plain", "_t_lazy"):
        assert quick(_THING, "thing") == whichmodule(_THING, "thing") == expected
        del sys.modules[expected]  # the next holder answers
    assert quick(_THING, "thing") == whichmodule(_THING, "thing") == "__main__"
    assert quick(_THING, "missing") == "__main__"
    add = np.add  # it has a __module__: skops' own function answers
    assert quick(add, "add") == whichmodule(add, "add") == "numpy"
