"""A modelyard run mirrored to an offline Neptune run (``mirror="neptune"``, Neptune's 1.x
client).

Neptune's client writes each change to a local operation log in
``NEPTUNE_DATA_DIRECTORY/offline/run__ID__*`` (default ``./.neptune``); no API token or project
is needed until ``neptune sync --project WORKSPACE/PROJECT --object offline/ID`` uploads it. The
mode is always ``offline``, whatever ``NEPTUNE_MODE`` says.

Fields, in Neptune's usual namespaces:

- params: ``parameters/KEY`` (strings, as modelyard records them);
- metrics: ``metrics/KEY``, a float series with one point per ``log_metrics`` call;
- tags: ``sys/tags`` as ``key=value`` (a tag set again with a new value replaces the old one);
- the run's name: ``sys/name``; a failed run: ``sys/failed`` true.

Neptune's stdout, stderr, hardware, source-file and git capture are off: modelyard mirrors what
the run logs, not the process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from modelyard.integrations.runs import client_errors, missing_extra

if TYPE_CHECKING:
    from neptune import Run as NeptuneRun

LABEL = "Neptune"
OFFLINE_PREFIX = "offline/"


class NeptuneRunMirror:
    """Sends a run's params, metrics, tags and end to one offline Neptune run (a
    ``RunMirror``); ``run`` is Neptune's run object, for what modelyard does not mirror."""

    name = "neptune"

    def __init__(self, run: NeptuneRun) -> None:
        self.run = run
        url = run.get_url()  # "offline/ID" for an offline run: what 'neptune sync --object' takes
        self.run_id: str = url.removeprefix(OFFLINE_PREFIX)
        self.link_tags = {"neptune.run_id": url}
        self._tags: dict[str, str] = {}

    def log_params(self, params: dict[str, str]) -> None:
        with client_errors(LABEL, f"the params of run {self.run_id}"):
            for key, value in params.items():
                self.run[f"parameters/{key}"] = value

    def log_metrics(self, metrics: dict[str, float]) -> None:
        with client_errors(LABEL, f"the metrics of run {self.run_id}"):
            for key, value in metrics.items():
                self.run[f"metrics/{key}"].append(value)

    def set_tags(self, tags: dict[str, str]) -> None:
        with client_errors(LABEL, f"the tags of run {self.run_id}"):
            replaced = [self._tags[key] for key in tags if key in self._tags]
            if replaced:
                self.run["sys/tags"].remove(replaced)
            self._tags.update({key: f"{key}={value}" for key, value in tags.items()})
            self.run["sys/tags"].add([self._tags[key] for key in tags])

    def end(self, status: Literal["finished", "failed"]) -> None:
        with client_errors(LABEL, f"the end of run {self.run_id}"):
            if status == "failed":
                self.run["sys/failed"] = True
            self.run.stop()


def open_neptune_mirror(name: str | None) -> NeptuneRunMirror:
    """A new offline Neptune run named ``name``."""
    try:
        import neptune
    except ImportError as exc:
        raise missing_extra("neptune", LABEL, exc) from None
    with client_errors(LABEL, f"the start of run {name or '(unnamed)'}"):
        run = neptune.init_run(
            mode="offline", name=name, capture_stdout=False, capture_stderr=False,
            capture_hardware_metrics=False, capture_traceback=False, fail_on_exception=False,
            git_ref=False, source_files=[],
        )  # fmt: skip
    return NeptuneRunMirror(run)
