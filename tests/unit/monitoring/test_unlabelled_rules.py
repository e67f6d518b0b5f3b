"""Alert rules on what is known before labels: ``estimated:<metric>`` (CBPE) and
``reconstruction_error`` are accepted; a metric CBPE does not estimate is one line naming it."""

from __future__ import annotations

import pytest

from modelyard.errors import ConfigError
from modelyard.monitoring.alerts import validate_rules
from modelyard.monitoring.unlabelled import part_of
from tests.unit.monitoring.test_alerts import rule


def test_estimated_metrics_and_the_reconstruction_error_are_rule_metrics() -> None:
    rules = validate_rules(
        [
            rule(name=f"e-{m}", metric=f"estimated:{m}", op="<", threshold=0.8)
            for m in ("accuracy", "precision", "recall", "f1", "roc_auc")
        ]
        + [rule(name="structure", metric="reconstruction_error", op=">", threshold=1.2)]
    )
    assert [r.metric for r in rules][-2:] == ["estimated:roc_auc", "reconstruction_error"]
    assert rules[0].holds(0.79) and not rules[0].holds(0.8)


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        ("estimated:log_loss", "'log_loss' is not an estimated metric; use one of accuracy, "
         "precision, recall, f1, roc_auc."),
        ("estimated:", "'' is not an estimated metric"),
        ("reconstruction", "metric 'reconstruction' is unknown; use drift_share, "),
    ],
)  # fmt: skip
def test_a_metric_that_is_not_estimated_is_refused(metric: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        validate_rules([rule(metric=metric)])
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_unknown_metric_message_names_the_new_forms() -> None:
    with pytest.raises(ConfigError, match=r"estimated:<metric>, reconstruction_error or outcome:"):
        validate_rules([rule(metric="latency")])


def test_each_metric_is_read_by_its_part() -> None:
    assert part_of("reconstruction_error") == "reconstruction"
    assert part_of("estimated:accuracy") == part_of("estimated_upper:f1") == "estimation"
    assert part_of("drift_share") is None and part_of("performance:accuracy") is None
