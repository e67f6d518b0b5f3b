"""Run mirrors: a modelyard run whose params, metrics, tags and end go to other trackers too
(``modelyard.start_run(..., mirror=["mlflow", "wandb", "neptune"])``).

A mirror is named ``TOOL`` or ``TOOL:TARGET``: ``mlflow:EXPERIMENT``, ``wandb:PROJECT`` or
``wandb:ENTITY/PROJECT``. Without a target, MLflow's experiment is ``MLFLOW_EXPERIMENT_NAME``
(default ``Default``) and W&B's project is ``[runs] wandb_project`` in the settings, else the
client's own ``WANDB_PROJECT``/``WANDB_ENTITY``, else W&B's default. W&B and Neptune always run
offline: their clients write files locally (``WANDB_DIR``, default ``./wandb``;
``NEPTUNE_DATA_DIRECTORY``, default ``./.neptune``) for a later ``wandb sync`` or
``neptune sync``, and nothing goes over the network. An offline Neptune run gets its project when
it is synced (``neptune sync --project WORKSPACE/PROJECT``), so ``neptune`` takes no target.

Every mirror is opened before modelyard's run starts: a mirror that cannot be opened (a missing
extra, an MLflow server that does not answer) is refused and no run is started anywhere. Each
mirrored run is tagged ``modelyard.run_id``, and modelyard's run is tagged with each mirror's run
id (``mlflow.run_id``, ``wandb.run_id``, ``neptune.run_id``). Once the run is going, a mirror that
fails is detached (``registry.runs.ActiveRun``).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from modelyard.errors import ConfigError, InvalidSpecError, ModelyardError, StorageError, first_line

if TYPE_CHECKING:
    from modelyard.registry import ActiveRun, Registry

logger = logging.getLogger(__name__)

MIRROR_TOOLS: tuple[str, ...] = ("mlflow", "neptune", "wandb")
_WANDB_PROJECT = re.compile(r"^(?:[\w.-]{1,128}/)?[^/\\#?%:]{1,128}$")


@dataclass(frozen=True)
class MirrorSpec:
    """One mirror: the tool and where its runs go (``None``: the tool's settings or default)."""

    tool: str
    target: str | None = None


@dataclass(frozen=True)
class MirrorDefaults:
    """Targets read from the settings and the environment at the edge (``modelyard._api``)."""

    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str | None = None
    wandb_project: str | None = None


class OpenedMirror(Protocol):
    """A ``RunMirror`` whose run exists already; ``link_tags`` go on modelyard's run."""

    name: str
    link_tags: dict[str, str]

    def log_params(self, params: dict[str, str]) -> None: ...

    def log_metrics(self, metrics: dict[str, float]) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def end(self, status: Literal["finished", "failed"]) -> None: ...


def parse_mirrors(mirror: str | Sequence[str] | None) -> tuple[MirrorSpec, ...]:
    """``mirror`` as specs, each tool at most once; refused in one line before anything starts."""
    if mirror is None:
        return ()
    names = [mirror] if isinstance(mirror, str) else list(mirror)
    specs: list[MirrorSpec] = []
    for name in names:
        if not isinstance(name, str):
            raise InvalidSpecError(
                f"A run mirror must be a string like 'wandb', got {name!r}; use one of "
                f"{_tool_list()} or a list of them."
            )
        tool, _, target = name.strip().partition(":")
        if tool not in MIRROR_TOOLS:
            raise InvalidSpecError(
                f"Unknown run mirror {name[:80]!r}; use {_tool_list()} (or a list of them)."
            )
        if any(spec.tool == tool for spec in specs):
            raise InvalidSpecError(f"Run mirror {tool!r} is named twice; name each tool once.")
        specs.append(MirrorSpec(tool, _check_target(tool, target.strip()) if target else None))
    return tuple(specs)


def start_mirrored_run(
    registry: Registry,
    name: str | None,
    specs: Sequence[MirrorSpec],
    *,
    defaults: MirrorDefaults,
    params: dict[str, object] | None = None,
    tags: dict[str, object] | None = None,
) -> ActiveRun:
    """A modelyard run mirrored to a new run in each of ``specs``' tools."""
    from modelyard.registry.runs import clean_strings

    clean_strings("param", params)  # a bad key is refused before any tracker has a run
    clean_strings("tag", tags)
    opened = open_mirrors(specs, name, defaults=defaults)
    link_tags = link_tags_of(opened)
    try:
        run = registry.start_run(name, params=params, tags={**(tags or {}), **link_tags},
                                 mirrors=opened)  # fmt: skip
    except BaseException:
        end_quietly(opened)
        raise
    recorded = run.info()  # the values as start_run cleaned them
    user_tags = {k: v for k, v in recorded.tags.items() if k not in link_tags}
    run.send_to_mirrors(params=recorded.params, tags=user_tags)
    return run


def open_mirrors(
    specs: Sequence[MirrorSpec], name: str | None, *, defaults: MirrorDefaults
) -> tuple[OpenedMirror, ...]:
    """A new run named ``name`` in each tool of ``specs``; if one cannot be opened, those opened
    already are ended as failed and the error is raised."""
    opened: list[OpenedMirror] = []
    try:
        for spec in specs:
            opened.append(_open(spec, name, defaults))
    except BaseException:
        end_quietly(opened)
        raise
    return tuple(opened)


def link_tags_of(mirrors: Sequence[OpenedMirror]) -> dict[str, str]:
    """The tags that name each mirrored run on modelyard's run (``wandb.run_id``...)."""
    return {key: value for mirror in mirrors for key, value in mirror.link_tags.items()}


def _open(spec: MirrorSpec, name: str | None, defaults: MirrorDefaults) -> OpenedMirror:
    if spec.tool == "mlflow":
        from modelyard.integrations.mlflow_runs import open_mlflow_mirror

        return open_mlflow_mirror(
            name, tracking_uri=defaults.mlflow_tracking_uri,
            experiment=spec.target or defaults.mlflow_experiment,
        )  # fmt: skip
    if spec.tool == "wandb":
        from modelyard.integrations.wandb_runs import open_wandb_mirror

        project = spec.target or _checked_default("wandb", defaults.wandb_project)
        return open_wandb_mirror(name, project=project)
    from modelyard.integrations.neptune_runs import open_neptune_mirror

    return open_neptune_mirror(name)


def _check_target(tool: str, target: str) -> str:
    if tool == "neptune":
        raise InvalidSpecError(
            f"Run mirror 'neptune:{target[:80]}' takes no project: an offline Neptune run gets "
            "one when synced; write mirror='neptune' and run 'neptune sync --project "
            "WORKSPACE/PROJECT'."
        )
    if tool == "wandb" and not _WANDB_PROJECT.match(target):
        raise InvalidSpecError(
            f"Run mirror 'wandb:{target[:80]}' names no W&B project; write wandb:PROJECT or "
            "wandb:ENTITY/PROJECT."
        )
    return target


def _checked_default(tool: str, target: str | None) -> str | None:
    return _check_target(tool, target) if target else None


def end_quietly(opened: Sequence[OpenedMirror]) -> None:
    """End the mirrors already opened as failed when a later step refused the run."""
    for mirror in opened:
        try:
            mirror.end("failed")
        except ModelyardError as exc:
            logger.warning("Could not end the %s mirror run: %s", mirror.name, exc)


def _tool_list() -> str:
    return ", ".join(repr(tool) for tool in MIRROR_TOOLS[:-1]) + f" or {MIRROR_TOOLS[-1]!r}"


def missing_extra(tool: str, label: str, exc: ImportError) -> ConfigError:
    """The error for a mirror whose client is not installed."""
    return ConfigError(
        f"The {label} run mirror needs {exc.name or tool} (not installed); run "
        f"pip install 'modelyard[{tool}]'."
    )


@contextlib.contextmanager
def client_errors(label: str, what: str) -> Iterator[None]:
    """A tracker client's exceptions inside as a ``StorageError`` naming ``label`` and ``what``.

    The W&B and Neptune clients raise their own classes, ``ValueError``, ``OSError`` and more:
    this is the edge between modelyard and a third-party client, so anything but a
    ``ModelyardError`` is caught here (and kept, with its traceback, at DEBUG)."""
    try:
        yield
    except ModelyardError:
        raise
    except Exception as exc:
        logger.debug("%s failed during %s", label, what, exc_info=True)
        raise StorageError(
            f"{label} failed during {what} ({type(exc).__name__}: {first_line(exc)}); check its "
            "offline folder and disk."
        ) from None
