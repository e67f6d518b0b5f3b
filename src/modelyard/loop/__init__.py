"""Retraining loops: a deployment's model retrained, gated, rolled out and promoted when its
monitoring says so, with every step recorded (``[loops.NAME]`` in ``modelyard.toml``).

A loop's states, one row per deployment in the metadata store (``loop_states``), every
transition recorded with its evidence (``loop_transitions``):

- ``idle``: no loop yet. ``promoted`` and ``rejected`` are where a loop ends; after ``cooldown``
  a trigger starts the next one.
- ``triggered``: a trigger held (a firing alert rule, a metric below its floor, drift, an old
  serving version) or a person ran ``yard loop trigger``; the trigger's key is recorded, and a
  trigger starts one loop at most.
- ``training``: the training table (``training_data`` plus the labelled window, less the gate's
  holdout) is written as Parquet and the pipeline runs with it; the run's id is recorded first,
  so a controller that dies mid-run is resumed without training twice.
- ``gating``: the registered version is gated against the serving one on the holdout.
- ``canary``: the version rolls out as the deployment's candidate (``auto``) until it is
  promoted or rolled back; a rollout controller moves it (the server's, ``yard rollout run``, or
  the loop's own rollout round, whichever holds the rollout lease).
- ``waiting_approval`` (``require_approval``): the candidate passed its last step and waits for
  ``yard loop approve`` (then it is promoted) or ``yard loop reject`` (aborted).
- ``rejected``: ended without promotion, with the reason (a failed pipeline or gate, a rolled-back
  canary, a person's rejection) and an alert through the alert webhooks; the serving version
  stays.

``LoopController`` runs the rounds (``yard loop run``), one controller per loop at a time (the
lease ``loop:NAME``); ``loop_status``, ``trigger``, ``approve`` and ``reject`` are what the CLI
calls.
"""

from modelyard.loop.controller import LoopController, LoopStep, lease_name
from modelyard.loop.policy import LoopPlan, check_policies, check_policy
from modelyard.loop.state import (
    LoopState,
    LoopStatus,
    Transition,
    approve,
    loop_status,
    reject,
    trigger,
)

__all__ = [
    "LoopController",
    "LoopPlan",
    "LoopState",
    "LoopStatus",
    "LoopStep",
    "Transition",
    "approve",
    "check_policies",
    "check_policy",
    "lease_name",
    "loop_status",
    "reject",
    "trigger",
]
