"""``skops.io`` without importing the whole of scikit-learn.

skops builds its default trusted list when ``skops.io`` is first imported: the type names of every
scikit-learn estimator, from ``sklearn.utils.all_estimators()``. That function walks and imports
every scikit-learn module and package (``sklearn.utils._testing`` and so pytest, the array-API
shims and so PyTorch when it is installed): measured on a 2-core machine, 4.1 s of CPU of a native
scikit-learn server's start, when the model itself needs a few of those modules.

skops uses the estimators only for their names (``module.ClassName``). So while ``skops.io`` is
imported, this module hands skops' call (type_filter=None, from the importing thread) a list of
stand-in classes carrying exactly the names scikit-learn's own function gives for the installed
version, kept in ``_sklearn_estimators``: skops computes the very same trusted list. Everything
else stays skops' own: its other defaults, its checks, its loader. The narrow part:

- the quick path runs only for a scikit-learn version whose list is kept there; a test compares
  that list with ``all_estimators()`` and skops' whole default trust (every ``*_TYPE_NAMES``) with
  the normal import's, so a wrong list fails the tests, never widens trust;
- only the importing thread's unfiltered call gets the stand-ins; any other call, thread or
  filter reaches scikit-learn's function, which is put back as soon as the import ends;
- if anything fails, or skops ends up with another list than the one handed to it, the modules
  skops.io imported are forgotten and ``skops.io`` is imported the normal way.

The same import then names every scipy.special ufunc (they have no ``__module__``) with skops'
``whichmodule``: for each, a walk over every loaded module until one holds it, ``getattr`` on
each, which raises and discards an AttributeError per module that does not (230 ufuncs x about
1,800 modules: 0.31 s of CPU measured on the loaded machine). For the same stand-in call, skops'
``whichmodule`` is replaced by ``first_holder``, which gives the same answer (the first module in
``sys.modules`` that holds the object under that name) but reads a plain module's ``__dict__``
instead of raising (0.12 s); modules with their own ``__getattr__``, other module types, dotted
names and objects with a ``__module__`` still go through ``getattr`` or skops' own function.
It is put back when the import ends, and the same equality test covers the ufunc lists.

``python -m modelyard.flavors._skops_io`` prints the installed version's entry for
``_sklearn_estimators``: skops' own list, from the normal (slow) import.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

_LOCK = threading.Lock()
_SKOPS_IO = "skops.io"

Listing = Callable[..., list[tuple[str, type]]]
WhichModule = Callable[[Any, str], str]


def skops_io() -> ModuleType:
    """The ``skops.io`` module, imported the quick way on its first use when possible."""
    with _LOCK:
        if _SKOPS_IO not in sys.modules:
            _import_quickly()
    # the normal import: nothing to do once imported, else the full import
    return importlib.import_module(_SKOPS_IO)


def stand_ins(names: Sequence[str]) -> list[tuple[str, type]]:
    """``all_estimators()``-shaped pairs of classes named ``names`` (``module.ClassName``)."""
    pairs = []
    for name in names:
        module, _, cls_name = name.rpartition(".")
        pairs.append((cls_name, type(cls_name, (), {"__module__": module})))
    return pairs


def listing(
    real: Listing, names: Sequence[str], thread: int, on_call: Callable[[], None] = lambda: None
) -> Listing:
    """``all_estimators`` as the importing ``thread`` sees it during the import: the stand-ins
    for the unfiltered call (after ``on_call()``), the ``real`` function for any other call or
    thread."""
    pairs = stand_ins(names)

    def all_estimators(type_filter: Any = None) -> list[tuple[str, type]]:
        if type_filter is None and threading.get_ident() == thread:
            on_call()
            return list(pairs)
        return real(type_filter)

    return all_estimators


def first_holder(slow: WhichModule) -> WhichModule:
    """skops' ``whichmodule`` (``slow``) without an exception per module that lacks the name."""

    def whichmodule(obj: Any, name: str) -> str:
        if getattr(obj, "__module__", None) is not None or "." in name or hasattr(ModuleType, name):
            return slow(obj, name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # as skops does
            for module_name, module in sys.modules.copy().items():
                if module_name in ("__main__", "__mp_main__") or module is None:
                    continue
                space = getattr(module, "__dict__", None)
                if (
                    type(module) is ModuleType
                    and type(space) is dict
                    and "__getattr__" not in space
                ):
                    found = space.get(name)  # what getattr finds on such a module
                else:
                    try:
                        found = getattr(module, name, None)
                    except (AttributeError, ImportError):
                        continue
                if found is obj:
                    return str(module_name)
        return "__main__"

    return whichmodule


class _Replaced:
    """Module attributes replaced for one import, put back by ``restore``."""

    def __init__(self) -> None:
        self._saved: list[tuple[object, str, object]] = []

    def replace(self, owner: object, name: str, value: object) -> None:
        self._saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    def restore(self) -> None:
        while self._saved:
            owner, name, value = self._saved.pop()
            setattr(owner, name, value)


def _quicker_ufunc_names(replaced: _Replaced) -> None:
    """Called by the stand-in call, once skops.io._utils is imported and before skops names the
    ufuncs: its ``whichmodule`` becomes ``first_holder`` (left alone if it is not there)."""
    utils = sys.modules.get(f"{_SKOPS_IO}._utils")
    slow = getattr(utils, "whichmodule", None)
    if utils is not None and callable(slow) and getattr(slow, "__module__", "") == utils.__name__:
        replaced.replace(utils, "whichmodule", first_holder(slow))


def _import_quickly() -> None:
    """Import ``skops.io`` with the stand-ins, or leave it unimported (the caller imports it the
    normal way) when this scikit-learn's list is not kept or anything goes wrong."""
    try:
        import sklearn
        import sklearn.utils
        from sklearn.utils import discovery

        from modelyard.flavors._sklearn_estimators import ESTIMATORS
    except ImportError:
        return  # the normal import says what is missing
    names = ESTIMATORS.get(sklearn.__version__)
    if names is None:
        logger.debug("skops.io: no estimator list for scikit-learn %s", sklearn.__version__)
        return
    real: Listing = discovery.all_estimators
    if getattr(sklearn.utils, "all_estimators", None) is not real:
        return  # someone else has replaced it: leave it alone
    replaced = _Replaced()
    same = False
    try:
        quick = listing(
            real, names, threading.get_ident(), on_call=lambda: _quicker_ufunc_names(replaced)
        )
        replaced.replace(discovery, "all_estimators", quick)
        replaced.replace(sklearn.utils, "all_estimators", quick)
        import skops.io._trusted_types as trusted

        same = list(trusted.SKLEARN_ESTIMATOR_TYPE_NAMES) == list(names)
    except Exception:
        logger.debug("skops.io: the quick import failed", exc_info=True)
    finally:
        replaced.restore()
    if not same:
        _forget_skops_io()


def _forget_skops_io() -> None:
    for name in [m for m in sys.modules if m == _SKOPS_IO or m.startswith(_SKOPS_IO + ".")]:
        del sys.modules[name]


if __name__ == "__main__":
    import sklearn
    from skops.io._trusted_types import SKLEARN_ESTIMATOR_TYPE_NAMES  # the normal, slow import

    print(f'    "{sklearn.__version__}": (')
    for name in SKLEARN_ESTIMATOR_TYPE_NAMES:
        print(f'        "{name}",')
    print("    ),")
