"""The report in the eight sections an ML engineer writes, as Markdown and as one self-contained,
autoescaped HTML page; the architecture diagram is drawn from what the store records."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modelyard.assess import attest
from modelyard.assess.report import render_html, render_markdown, render_text, write_report
from modelyard.errors import InvalidInputError
from tests.unit.assess._golden import DRIFT_RULE, assessed, open_registry, served_project

SECTIONS = [
    "1. Current state assessment",
    "2. Recommended architecture",
    "3. Implementation plan",
    "4. Technology stack",
    "5. Monitoring strategy",
    "6. Deployment strategy",
    "7. Maintenance plan",
    "8. Risk mitigation",
]
HOSTILE = '<script>alert("x")</script> | pipe'


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    project = served_project(tmp_path / "served", monkeypatch)
    with (project / "modelyard.toml").open("a") as toml:
        toml.write(DRIFT_RULE)
    registry = open_registry(project, monkeypatch)
    try:
        attest(registry, "model-7", by="Ada", note=HOSTILE)
    finally:
        registry.close()
    return project


def test_the_markdown_report_has_the_eight_sections_in_order(
    served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = assessed(served, monkeypatch)
    text = render_markdown(a)
    assert re.findall(r"^## (\d\. .+)$", text, re.M) == SECTIONS
    assert f"**Final score {a.score:g}**" in text
    assert "| Monitor 3: Training and serving are not skewed. | automated | 1 |" in text
    assert "```mermaid\nflowchart LR" in text
    rule = "| churn-drift | churn | drift_share >= 0.5 over 1h for 10m | modelyard.toml:7 | no |"
    assert rule in text
    assert HOSTILE not in text  # a raw pipe would split the table's cell
    assert HOSTILE.replace("|", "\\|") in text
    assert "scikit-learn" in text  # the stack, from the version's lineage
    assert "not measured" in text  # the cost placeholder


def test_the_html_report_is_self_contained_and_escapes_what_it_shows(
    served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = render_html(assessed(served, monkeypatch))
    assert "<script" not in page  # the hostile note is text, and the page has no script
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page
    assert 'data-status="automated"' in page and 'id="monitor-3"' in page


def test_the_architecture_shows_data_model_deployment_log_and_alerts(
    served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    diagram = assessed(served, monkeypatch).architecture
    lines = diagram.splitlines()
    assert lines[0] == "flowchart LR"
    for label in (
        "registry: churn",
        "churn/1 sklearn @production",
        "deployment churn",
        "prediction log",
        "alert churn-drift: drift_share #gt;= 0.5",
        "rows)",
    ):
        assert label in diagram, label
    assert any("-->|stable 1|" in line for line in lines)


def test_write_report_picks_the_format_by_suffix_and_refuses_others(
    served: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    a = assessed(served, monkeypatch)
    assert write_report(a, tmp_path / "r.md").read_text().startswith("# Production readiness")
    assert write_report(a, tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(InvalidInputError, match=r"ending in \.md .* or \.html"):
        write_report(a, tmp_path / "r.pdf")
    with pytest.raises(InvalidInputError, match="does not exist"):
        write_report(a, tmp_path / "nowhere" / "r.md")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("r")) == [
        "r.html",
        "r.md",
    ]


def test_the_text_summary_leads_with_the_score_and_the_plan(
    served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = assessed(served, monkeypatch)
    text = render_text(a)
    assert text.splitlines()[0].startswith(f"ML Test Score: {a.score:g} (band {a.band.range})")
    assert "Next (most points per effort first):" in text
    assert f"+{a.plan[0].gain:g} {a.plan[0].label}:" in text


def test_a_measured_cost_section_renders_as_a_table(
    served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shape ``modelyard.assess.cost.collect_cost`` fills once the server measures cost."""
    import msgspec

    from modelyard.assess.types import CostReport

    rows = ({"model": "churn/1", "cpu_s_per_1k": 0.81234, "memory_mb": 120.0},
            {"model": "churn/2", "cpu_s_per_1k": 1.5, "cost_per_1k": None})  # fmt: skip
    cost = CostReport(status="measured", detail="per 1,000 predictions", currency="USD",
                      models=rows)  # fmt: skip
    a = msgspec.structs.replace(assessed(served, monkeypatch), cost=cost)
    text = render_markdown(a)
    assert "| model | cpu_s_per_1k | memory_mb | cost_per_1k |" in text
    assert "| churn/1 | 0.8123 | 120 | - |" in text and "| churn/2 | 1.5 | - | - |" in text
    page = render_html(a)
    table = page.split('data-testid="cost-table"')[1]
    assert table.count("<td>churn/") == 2 and "<td>0.8123</td>" in table
