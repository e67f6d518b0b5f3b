"""The exact pins of an image: the packages the served versions were registered with, and
modelyard's own dependency closure as installed where ``yard build`` runs.

The closure is read from the installed distributions' metadata (``importlib.metadata``), with the
environment markers evaluated here: the image's Python has the same major and minor version (its
base image is chosen from this interpreter), so the markers come out the same inside it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata

from modelyard.deploy.target import Target
from modelyard.errors import ConfigError

#: Extras added when everything they need is installed: the image of a team's shared registry
#: reads PostgreSQL and object storage (a baked image ignores both unless configured to use them).
OPTIONAL_EXTRAS = ("postgres", "s3")
#: The extra that serves a flavor's versions where it is not the flavor's own: a text model runs
#: on tokenizers and onnxruntime (``text``), a PyTorch module as its ONNX file (no extra); torch,
#: transformers and sentence-transformers are needed to register them, not to serve them.
SERVING_EXTRAS: dict[str, str | None] = {"transformers": "text", "torch": None}


@dataclass(frozen=True, slots=True)
class Pin:
    """``name==version``; ``note`` says why the version differs from a plain closure pin."""

    name: str
    version: str
    note: str | None = None

    @property
    def key(self) -> str:
        return _canonical(self.name)

    def line(self) -> str:
        text = f"{self.name}=={self.version}"
        return f"{text}  # {self.note}" if self.note else text


def extras_for(target: Target, also: Iterable[str] = ()) -> list[str]:
    """modelyard's extras the target's flavors need (``xgboost``, ``lightgbm``...) and those
    asked for (``also``: an image that follows an alias which may move to another flavor),
    then the optional extras that are installed here."""
    provided = set(metadata.distribution("modelyard").metadata.get_all("Provides-Extra") or ())
    asked = set(also)
    unknown = sorted(asked - provided)
    if unknown:
        raise ConfigError(
            f"modelyard has no extra {unknown[0]!r}; --extras takes {', '.join(sorted(provided))}."
        )
    serving = {SERVING_EXTRAS.get(v.flavor, v.flavor) for v in target.versions} | asked
    needed = sorted(e for e in serving if e is not None and e in provided)
    for extra in needed:
        if not _extra_installed(extra):
            raise ConfigError(
                f"{target.name} needs modelyard's {extra!r} extra, which is not fully installed "
                f"here; run \"pip install 'modelyard[{extra}]'\" and build again."
            )
    return needed + [e for e in OPTIONAL_EXTRAS if e not in needed and _extra_installed(e)]


def requirement_pins(target: Target, extras: Iterable[str]) -> list[Pin]:
    """Every package the image installs but modelyard itself, sorted by name: the closure's
    installed versions, replaced by the version a served model was registered with where one
    was recorded (the model was saved by that version; a conflict surfaces at ``pip check``).
    A recorded package outside the closure is not installed: it was needed to make the model,
    not to serve it (torch and transformers for a text model, which serves on onnxruntime)."""
    pins = {_canonical(name): Pin(name, version) for name, version in _closure(extras).items()}
    pins.pop("modelyard", None)
    for version in target.versions:
        for package, recorded in version.lineage.packages.items():
            key = _canonical(package)
            current = pins.get(key)
            if key == "modelyard" or current is None or current.note:
                continue
            if current.version == recorded:
                continue
            here = f" (installed here: {current.version})"
            pins[key] = Pin(package, recorded, f"recorded with {version.ref}{here}")
    return [pins[k] for k in sorted(pins)]


def render_requirements(pins: list[Pin], *, wheel: str, header: list[str]) -> str:
    """requirements.txt: the header as comments, the modelyard wheel, then one pin a line."""
    lines = [f"# {h}" if h else "#" for h in header]
    lines += [f"./wheels/{wheel}", *(p.line() for p in pins)]
    return "\n".join(lines) + "\n"


def _closure(extras: Iterable[str]) -> dict[str, str]:
    """Installed name -> version for modelyard with ``extras`` and everything it requires."""
    from packaging.requirements import Requirement

    wanted: dict[str, set[str]] = {}
    found: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str], str]] = [("modelyard", frozenset(extras), "")]
    while todo:
        name, extras_needed, parent = todo.pop()
        key = _canonical(name)
        seen = wanted.get(key)
        if seen is not None and extras_needed <= seen:
            continue
        wanted[key] = (seen or set()) | extras_needed
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise ConfigError(
                f"{name} (required by {parent}) is not installed here, so yard build cannot pin "
                f"its version; install it (pip install {name!r}) and build again."
            ) from None
        found[dist.metadata["Name"]] = dist.version
        active = ("", *sorted(wanted[key]))
        for text in dist.requires or ():
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in active):
                todo.append((req.name, frozenset(req.extras), dist.metadata["Name"]))
    return found


def _extra_installed(extra: str) -> bool:
    try:
        _closure([extra])
    except ConfigError:
        return False
    return True


def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))
