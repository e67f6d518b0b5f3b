"""Every bad ``[loops.NAME]`` policy is refused before anything runs, in one line naming the key,
the bad value and the fix; a good one is read into a plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import ConfigError
from modelyard.loop import check_policies
from modelyard.settings import AlertRule, Settings

PIPELINE = """
from modelyard.pipelines import pipeline


@pipeline
def retrain(data: str = "train.csv", max_iter: int = 100):
    pass
"""


def settings(tmp_path: Path, **loop: Any) -> Settings:
    (tmp_path / "pipeline.py").write_text(PIPELINE)
    (tmp_path / "train.csv").write_text("x,target\n1,0\n")
    policy: dict[str, Any] = {
        "train": {"pipeline": str(tmp_path / "pipeline.py"),
                  "training_data": str(tmp_path / "train.csv")},
    }  # fmt: skip
    for key, value in loop.items():
        if isinstance(value, dict) and isinstance(policy.get(key), dict):
            policy[key] = {**policy[key], **value}
        else:
            policy[key] = value
    rule = AlertRule(name="churn-cbpe", deployment="churn", metric="drift_share", threshold=0.5)
    return Settings(
        home=tmp_path, monitoring={"alerts": {"rules": [rule]}}, loops={"churn": policy}
    )


def test_a_good_policy_is_read_into_a_plan(tmp_path: Path) -> None:
    plans = check_policies(
        settings(
            tmp_path, cooldown="1h", require_approval=True,
            trigger={"alerts": ["churn-cbpe"], "metric": "performance:accuracy", "below": 0.85,
                     "window": "2h", "drift_share": 0.5, "max_age": "30d"},
            train={"labelled_window": "7d", "params": {"max_iter": 200}},
            gate={"holdout": 0.25, "thresholds": [{"metric": "f1", "threshold": 0.7}]},
            rollout={"steps": [10, 50, 100], "bake": "30s", "policy": {"min_requests": 50}},
        )
    )  # fmt: skip
    plan = plans["churn"]
    assert (plan.cooldown_s, plan.require_approval, plan.alerts) == (3600.0, True, ("churn-cbpe",))
    assert plan.metric_rule is not None
    assert (plan.metric_rule.metric, plan.metric_rule.op, plan.metric_rule.threshold) == (
        "performance:accuracy", "<", 0.85)  # fmt: skip
    assert plan.metric_rule.window_s == 7200.0
    assert plan.drift_rule is not None and plan.drift_rule.op == ">="
    assert (plan.max_age_s, plan.labelled_window_s, plan.holdout) == (30 * 86400.0, 7 * 86400.0,
                                                                      0.25)  # fmt: skip
    assert plan.thresholds[0].metric == "f1" and plan.thresholds[0].threshold == 0.7
    assert (plan.steps, plan.bake_s, plan.policy.min_requests) == ((10.0, 50.0, 100.0), 30.0, 50)


BAD = [
    ({"trigger": {"alerts": ["churn-typo"]}},
     "loops.churn.trigger.alerts[0] = 'churn-typo' names no alert rule (rules: churn-cbpe)"),
    ({"trigger": {"metric": "accuracy", "below": 0.8}},
     "loops.churn.trigger.metric: metric 'accuracy' is unknown; use drift_share"),
    ({"trigger": {"metric": "performance:accuracy"}},
     "loops.churn.trigger.metric is given without trigger.below; give both"),
    ({"trigger": {"below": 0.8}}, "loops.churn.trigger.below is given without trigger.metric"),
    ({"trigger": {"metric": "performance:accuracy", "below": 0.8, "window": "an hour"}},
     "loops.churn.trigger.window: window 'an hour' is not a duration"),
    ({"trigger": {"drift_share": 1.5}}, "loops.churn.trigger.drift_share = 1.5 is outside (0, 1]"),
    ({"trigger": {"max_age": "a month"}},
     "loops.churn.trigger.max_age = 'a month' is not a duration; use e.g. max_age = \"30d\""),
    ({"cooldown": "soon"}, "loops.churn.cooldown = 'soon' is not a duration; use e.g. cooldown"),
    ({"train": {"pipeline": "missing.py"}},
     "loops.churn.train.pipeline = 'missing.py': no such file; give the pipeline file"),
    ({"train": {"pipeline": "pipeline.txt"}},
     "loops.churn.train.pipeline = 'pipeline.txt' is not a Python file"),
    ({"train": {"training_data": "nowhere.csv"}},
     "loops.churn.train.training_data = 'nowhere.csv': no such file"),
    ({"train": {"training_data": None}}, "loops.churn.train has nothing to train on"),
    ({"train": {"labelled_window": "a week"}},
     "loops.churn.train.labelled_window = 'a week' is not a duration"),
    ({"train": {"data_param": "the data"}},
     "loops.churn.train.data_param = 'the data' is not a parameter name"),
    ({"train": {"data_param": "table"}},
     "loops.churn.train.pipeline = '{root}/pipeline.py': Pipeline 'retrain' has no parameter "
     "'table'; its parameters are: data, max_iter."),
    ({"train": {"params": {"max_iter": "many"}}},
     "loops.churn.train.pipeline = '{root}/pipeline.py': Parameter 'max_iter' of pipeline "
     "'retrain' expects an int, got 'many'"),
    ({"train": {"pipeline": "{root}/pipeline.py:other"}},
     "loops.churn.train.pipeline = '{root}/pipeline.py:other': '{root}/pipeline.py' has no "
     "pipeline 'other'; it has: retrain."),
    ({"gate": {"holdout": 1.0}}, "loops.churn.gate.holdout = 1.0 is outside (0, 1); give"),
    ({"gate": {"holdout": 0.0}}, "loops.churn.gate.holdout = 0.0 is outside (0, 1)"),
    ({"gate": {"thresholds": []}}, "loops.churn.gate.thresholds is empty; give at least one"),
    ({"gate": {"thresholds": [{"metric": "acuracy"}]}},
     "loops.churn.gate.thresholds[0].metric = 'acuracy' is not a gate metric; use one of"),
    ({"gate": {"thresholds": [{"metric": "accuracy", "minimum": 1}]}},
     "loops.churn.gate.thresholds[0] is invalid"),
    ({"rollout": {"steps": [50, 10]}},
     "loops.churn.rollout.steps is invalid: Steps 50,10 do not increase"),
    ({"rollout": {"steps": [0, 50]}}, "loops.churn.rollout.steps is invalid: Step 0.0 is outside"),
    ({"rollout": {"steps": []}}, "loops.churn.rollout.steps is invalid: Steps are empty"),
    ({"rollout": {"bake": "forever"}}, "loops.churn.rollout.bake is invalid: Invalid duration"),
    ({"rollout": {"mode": "blue-green"}},
     "loops.churn.rollout.mode is invalid: Unknown rollout mode 'blue-green'"),
    ({"rollout": {"mode": "ab"}}, "loops.churn.rollout.mode = 'ab' needs a sticky key"),
    ({"rollout": {"policy": {"min_requests": 0}}},
     "loops.churn.rollout.policy is invalid: Invalid rollout policy: min_requests 0"),
    ({"rollout": {"policy": {"max_latency": 3}}},
     "loops.churn.rollout.policy is invalid: Invalid rollout policy (Object contains unknown"),
]  # fmt: skip


@pytest.mark.parametrize(("loop", "message"), BAD, ids=[m.split(" ")[0] for _, m in BAD])
def test_a_bad_policy_is_one_line_naming_the_key_and_the_fix(
    tmp_path: Path, loop: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    train = loop.get("train", {})
    if "pipeline" in train:
        loop = {**loop, "train": {**train, "pipeline": train["pipeline"].format(root=tmp_path)}}
    with pytest.raises(ConfigError) as caught:
        check_policies(settings(tmp_path, **loop))
    text = str(caught.value)
    message = message.format(root=tmp_path)
    assert text.startswith("Loop setting loops.churn."), text
    assert message in text, text
    assert "\n" not in text
