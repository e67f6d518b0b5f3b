"""A modelyard run mirrored to an offline Weights & Biases run (``mirror="wandb"``).

W&B's client writes the run to ``WANDB_DIR/wandb/offline-run-*`` (``WANDB_DIR`` defaults to the
working directory); ``wandb sync`` on that folder uploads it later. The mode is always
``offline``, whatever ``WANDB_MODE`` says, so no run data reaches W&B's servers from here
(``wandb-core`` still reports its own crashes unless ``WANDB_ERROR_REPORTING=false``, an
environment variable only W&B reads).

- params go to the run's config (a param logged again with a new value replaces it, as in
  modelyard's record);
- each ``log_metrics`` call is one step of the run's history, so the summary holds the last
  values;
- tags become W&B tags ``key=value``; W&B allows at most 64 characters per tag, so a longer one
  goes to the summary as ``tags/KEY`` instead;
- the run finishes with exit code 0, or 1 for a failed run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from modelyard.integrations.runs import client_errors, missing_extra

if TYPE_CHECKING:
    from wandb.sdk.wandb_run import Run as WandbRun

LABEL = "W&B"
MAX_TAG_CHARS = 64


class WandbRunMirror:
    """Sends a run's params, metrics, tags and end to one offline W&B run (a ``RunMirror``);
    ``run`` is W&B's run object, for what modelyard does not mirror (images, tables)."""

    name = "wandb"

    def __init__(self, run: WandbRun) -> None:
        self.run = run
        self.run_id: str = run.id
        self.offline_dir = str(run.settings.sync_dir)
        self.link_tags = {"wandb.run_id": self.run_id, "wandb.offline_dir": self.offline_dir}
        self._tags: dict[str, str] = {}

    def log_params(self, params: dict[str, str]) -> None:
        with client_errors(LABEL, f"the params of run {self.run_id}"):
            # wandb 0.31's Config.update has no annotations
            self.run.config.update(params, allow_val_change=True)  # type: ignore[no-untyped-call]

    def log_metrics(self, metrics: dict[str, float]) -> None:
        with client_errors(LABEL, f"the metrics of run {self.run_id}"):
            self.run.log(metrics)

    def set_tags(self, tags: dict[str, str]) -> None:
        long = {}
        for key, value in tags.items():
            label = f"{key}={value}"
            if len(label) <= MAX_TAG_CHARS:
                self._tags[key] = label
            else:
                self._tags.pop(key, None)
                long[f"tags/{key}"] = value
        with client_errors(LABEL, f"the tags of run {self.run_id}"):
            self.run.tags = tuple(self._tags.values())
            if long:
                self.run.summary.update(long)

    def end(self, status: Literal["finished", "failed"]) -> None:
        with client_errors(LABEL, f"the end of run {self.run_id}"):
            self.run.finish(exit_code=0 if status == "finished" else 1)


def open_wandb_mirror(name: str | None, *, project: str | None) -> WandbRunMirror:
    """A new offline W&B run named ``name`` in ``project`` (``PROJECT`` or ``ENTITY/PROJECT``;
    ``None``: ``WANDB_PROJECT``/``WANDB_ENTITY`` or W&B's default). Other W&B runs of the process
    are left alone (``reinit="create_new"``); console capture is off, since modelyard mirrors
    what the run logs, not the process's output."""
    try:
        import wandb
    except ImportError as exc:
        raise missing_extra("wandb", LABEL, exc) from None
    entity, _, project_name = (project or "").rpartition("/")
    with client_errors(LABEL, f"the start of run {name or '(unnamed)'}"):
        run = wandb.init(
            mode="offline", project=project_name or None, entity=entity or None, name=name,
            reinit="create_new", settings=wandb.Settings(console="off"),
        )  # fmt: skip
    return WandbRunMirror(run)
