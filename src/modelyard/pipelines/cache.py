"""Cache keys: what a step's result depends on, hashed.

A step's key is the sha256 of the canonical JSON of its *key parts*:

- ``code``: a hash of the step function's source and of the project code it reaches: functions,
  classes and modules defined under the project root (not in site-packages or the standard
  library), followed transitively through globals, closures, default values and imports inside
  function bodies, in a fixed order. Sources are hashed as their syntax tree, so comments,
  blank lines and moving a function within its file change nothing; module-level constants a
  function reads are hashed by value.
- ``packages``: the installed versions of the third-party distributions that code imports
  (import names mapped to distributions by ``importlib.metadata.packages_distributions``).
- ``params``: the step's parameters (defaults filled in) as canonical JSON.
- ``inputs``: the sha256 of each input artifact's stored bytes; ``files``: the sha256 of the
  content of each ``input_files`` parameter.
- ``python``, ``artifact_format``, ``allow_pickle``, ``trusted_types`` and the ``scheme`` version.

The project root is the nearest folder above the pipeline's file holding ``pyproject.toml``,
``setup.py``, ``setup.cfg`` or ``.git``, else the file's own folder.
"""

from __future__ import annotations

import ast
import dis
import hashlib
import importlib.machinery
import importlib.util
import inspect
import linecache
import site
import sys
import sysconfig
import textwrap
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from modelyard.pipelines.artifacts import ARTIFACT_FORMAT
from modelyard.pipelines.params import canonical_json
from modelyard.pipelines.steps import Step

__all__ = [
    "KEY_SCHEME",
    "CodeFingerprint",
    "CodeHasher",
    "PackageVersions",
    "cache_key",
    "explain_miss",
    "find_project_root",
    "key_parts",
]

KEY_SCHEME = 1
_ROOT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")
_CONSTANTS = (type(None), bool, int, float, str, bytes)

PackageVersionsFn = Callable[[Iterable[str]], dict[str, str]]
"""Top-level import names -> ``{distribution: version}`` (the seam tests replace)."""


class PackageVersions:
    """Installed versions of the distributions that provide import names, read once."""

    def __init__(self) -> None:
        self._providers: Mapping[str, list[str]] | None = None
        self._versions: dict[str, str | None] = {}

    def __call__(self, modules: Iterable[str]) -> dict[str, str]:
        if self._providers is None:
            self._providers = metadata.packages_distributions()
        out: dict[str, str] = {}
        for module in modules:
            for dist in self._providers.get(module, ()):
                if dist not in self._versions:
                    try:
                        self._versions[dist] = metadata.version(dist)
                    except metadata.PackageNotFoundError:
                        self._versions[dist] = None
                version = self._versions[dist]
                if version is not None:
                    out[dist] = version
        return dict(sorted(out.items()))


@dataclass(frozen=True, slots=True)
class CodeFingerprint:
    sha256: str
    #: What was hashed: ``module:qualname`` of functions and classes, ``module:NAME`` of modules.
    sources: tuple[str, ...]
    packages: dict[str, str]


def find_project_root(path: Path) -> Path:
    start = path.resolve()
    folder = start if start.is_dir() else start.parent
    for candidate in (folder, *folder.parents):
        if any((candidate / marker).exists() for marker in _ROOT_MARKERS):
            return candidate
    return folder


class CodeHasher:
    """Fingerprints step functions against one project root; memoizes per instance."""

    def __init__(self, project_root: Path, *, package_versions: PackageVersionsFn | None = None):
        self.root = project_root.resolve()
        self._versions = package_versions if package_versions is not None else PackageVersions()
        paths = sysconfig.get_paths()
        outside = {sys.prefix, sys.base_prefix, sys.exec_prefix, paths["stdlib"], paths["purelib"]}
        outside.update(site.getsitepackages())
        self._outside = tuple(Path(p).resolve() for p in outside if p)
        self._is_project: dict[str, bool] = {}
        linecache.checkcache()

    def fingerprint(self, fn: Callable[..., Any]) -> CodeFingerprint:
        walk = _Walk(self)
        walk.function(fn, add_source=True)
        if not walk.sources:  # a callable object rather than a function
            walk.sources[f"<callable>:{type(fn).__qualname__}"] = _source(type(fn))
        digest = hashlib.sha256()
        for key in sorted(walk.sources):
            digest.update(key.encode() + b"\0" + walk.sources[key].encode() + b"\0")
        packages = self._versions(sorted(walk.packages))
        return CodeFingerprint(digest.hexdigest(), tuple(sorted(walk.sources)), packages)

    def is_project_file(self, file: str | None) -> bool:
        if not file:
            return False
        if file not in self._is_project:
            path = Path(file).resolve()
            self._is_project[file] = path.is_relative_to(self.root) and not any(
                path.is_relative_to(o) for o in self._outside
            )
        return self._is_project[file]


class _Walk:
    def __init__(self, hasher: CodeHasher) -> None:
        self.hasher = hasher
        self.sources: dict[str, str] = {}
        self.packages: set[str] = set()
        self._seen: set[int] = set()

    def function(self, fn: Any, *, add_source: bool) -> None:
        fn = inspect.unwrap(fn.fn if isinstance(fn, Step) else fn)
        if id(fn) in self._seen or not isinstance(fn, types.FunctionType):
            return
        self._seen.add(id(fn))
        if add_source:
            self.sources[f"{fn.__module__}:{fn.__qualname__}"] = _source(fn)
        names, imports = _code_names(fn.__code__)
        namespace = fn.__globals__
        for name in names:
            if name in namespace:
                self.value(namespace[name], name, fn.__module__)
        where = f"{fn.__qualname__}.<locals>"
        for var, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True):
            try:
                self.value(cell.cell_contents, f"{where}.{var}", fn.__module__)
            except ValueError:  # an empty cell
                continue
        defaults = {
            **{str(i): v for i, v in enumerate(fn.__defaults__ or ())},
            **(fn.__kwdefaults__ or {}),
        }
        for key, default in defaults.items():
            self.value(default, f"{where}.<default {key}>", fn.__module__)
        for module in imports:
            self.imported(module)

    def value(self, value: Any, name: str, owner: str) -> None:
        if isinstance(value, Step):
            self.function(value.fn, add_source=True)
        elif isinstance(value, types.ModuleType):
            self.module(value)
        elif inspect.isfunction(value) or inspect.isclass(value):
            if self.hasher.is_project_file(_file_of(value)):
                if inspect.isclass(value):
                    self.cls(value)
                else:
                    self.function(value, add_source=True)
            else:
                self.note_package(getattr(value, "__module__", None))
        elif isinstance(value, _CONSTANTS) or _constant_tuple(value):
            if name:
                self.sources[f"{owner}:{name}"] = repr(value)
        else:
            cls = type(value)
            if self.hasher.is_project_file(_file_of(cls)):
                self.cls(cls)
            else:
                self.note_package(cls.__module__)

    def cls(self, cls: type) -> None:
        if id(cls) in self._seen:
            return
        self._seen.add(id(cls))
        self.sources[f"{cls.__module__}:{cls.__qualname__}"] = _source(cls)
        for member in vars(cls).values():
            target = member.__func__ if isinstance(member, classmethod | staticmethod) else member
            if isinstance(target, property):
                target = target.fget
            if inspect.isfunction(target):
                self.function(target, add_source=False)

    def module(self, module: types.ModuleType) -> None:
        """A project module is hashed from its file with what it imports, read from its syntax
        tree: the same whether or not it has been imported yet."""
        file = getattr(module, "__file__", None)
        if file and self.hasher.is_project_file(file):
            self.project_module(module.__name__, Path(file), is_package=hasattr(module, "__path__"))
        else:
            self.note_package(module.__name__)

    def imported(self, name: str) -> None:
        """A module imported by name (read from its file when it is not imported yet)."""
        if not name:
            return
        loaded = sys.modules.get(name)
        if loaded is not None:
            self.module(loaded)
            return
        top = name.partition(".")[0]
        if top in sys.stdlib_module_names:
            return
        spec = _find_spec(top)  # a top-level name: nothing gets imported
        if spec is None or not self.hasher.is_project_file(spec.origin):
            self.note_package(top)
            return
        if name != top:  # inside a project package (whose __init__ this imports)
            spec = _find_spec(name)
        if spec is not None and spec.origin:
            self.project_module(name, Path(spec.origin), is_package=spec.parent == name)

    def project_module(self, name: str, file: Path, *, is_package: bool) -> None:
        key = f"{name}:<module>"
        if key in self.sources:
            return
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            self.sources[key] = f"<unreadable {file.name}>"
            return
        self.sources[key] = ast.dump(tree)
        package = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.imported(alias.name)
            elif isinstance(node, ast.ImportFrom):
                target = "." * node.level + (node.module or "")
                try:
                    self.imported(importlib.util.resolve_name(target, package or None))
                except (ImportError, ValueError):
                    continue

    def note_package(self, module: str | None) -> None:
        if not module:
            return
        top = module.partition(".")[0]
        if top and top not in sys.stdlib_module_names and top not in ("builtins", "__main__"):
            self.packages.add(top)


def _find_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def _code_names(code: types.CodeType) -> tuple[set[str], set[str]]:
    """Global names and imported modules a code object (and the code nested in it) uses."""
    names: set[str] = set(code.co_names)
    imports: set[str] = set()
    for instruction in dis.get_instructions(code):
        if instruction.opname == "IMPORT_NAME" and isinstance(instruction.argval, str):
            imports.add(instruction.argval)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            inner_names, inner_imports = _code_names(const)
            names |= inner_names
            imports |= inner_imports
    return names, imports


def _file_of(obj: Any) -> str | None:
    try:
        return inspect.getsourcefile(obj)
    except TypeError:  # built-in, or a class defined in __main__ of an interactive session
        return None


def _source(obj: Any) -> str:
    """The syntax tree of ``obj``'s source (comments and layout ignored), or its bytecode when
    the source cannot be read (a function typed into a REPL)."""
    try:
        text = inspect.getsource(obj)
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        if code is None:
            return f"<no source: {type(obj).__qualname__}>"
        return repr((code.co_code, code.co_consts, code.co_names))
    try:
        return ast.dump(ast.parse(textwrap.dedent(text)))
    except SyntaxError:  # a lambda in the middle of an expression
        return text.strip()


def _constant_tuple(value: Any) -> bool:
    return isinstance(value, tuple | frozenset) and all(isinstance(v, _CONSTANTS) for v in value)


def key_parts(
    *,
    code: CodeFingerprint,
    params: Mapping[str, Any],
    inputs: Mapping[str, str],
    files: Mapping[str, str],
    allow_pickle: bool,
    trusted_types: Iterable[str],
) -> dict[str, Any]:
    return {
        "scheme": KEY_SCHEME,
        "artifact_format": ARTIFACT_FORMAT,
        "python": f"{sys.implementation.name}-{sys.version_info[0]}.{sys.version_info[1]}",
        "code": code.sha256,
        "packages": dict(sorted(code.packages.items())),
        "params": dict(params),
        "inputs": dict(sorted(inputs.items())),
        "files": dict(sorted(files.items())),
        "allow_pickle": allow_pickle,
        "trusted_types": sorted(trusted_types),
    }


def cache_key(parts: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()


def explain_miss(before: Mapping[str, Any] | None, now: Mapping[str, Any]) -> str:
    """Why a key differs from the last one this step had, in a few words."""
    if not before:
        return "first run of this step"
    reasons = []
    if before.get("code") != now.get("code"):
        reasons.append("code changed")
    reasons += _diff("parameter", before.get("params", {}), now.get("params", {}), values=True)
    reasons += _diff("input", before.get("inputs", {}), now.get("inputs", {}), values=False)
    reasons += _diff("content of", before.get("files", {}), now.get("files", {}), values=False)
    reasons += _diff("package", before.get("packages", {}), now.get("packages", {}), values=True)
    for part in ("python", "artifact_format", "allow_pickle", "trusted_types", "scheme"):
        if before.get(part) != now.get(part):
            reasons.append(f"{part} changed")
    return "; ".join(reasons) or "same key, but no earlier run's outputs are usable"


def _diff(
    what: str, before: Mapping[str, Any], now: Mapping[str, Any], *, values: bool
) -> list[str]:
    out = []
    for name in sorted(set(before) | set(now)):
        old, new = before.get(name, "-"), now.get(name, "-")
        if old == new:
            continue
        if values:
            out.append(f"{what} {name} {canonical_json(old)} -> {canonical_json(new)}")
        else:
            out.append(f"{what} {name} changed")
    return out
