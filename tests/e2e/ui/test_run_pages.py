"""The runs and pipelines pages in Chromium: the run list with its filters, a training run with
the versions it produced, a pipeline run's step graph with cache hits and their reasons, its
artifacts and logs, the pipelines; and what unknown or hostile ids get."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from modelyard.pipelines.records import PipelineRun
from modelyard.registry import Registry
from modelyard.store.schema import run_steps
from modelyard.store.schema import runs as runs_table
from tests.e2e.ui.conftest import UIServer, shot
from tests.integration._tiny_pipeline import EDGES, STEPS, TinyPipeline


@dataclass(frozen=True)
class Runs:
    training: str
    hostile: str
    fresh: PipelineRun
    cached: PipelineRun
    changed: PipelineRun
    failed: PipelineRun


@pytest.fixture(scope="module")
def runs(ui_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """A training run, a run with a hostile name, and four runs of the tiny pipeline (about
    2 s): fresh, all cached, one parameter changed, one step failed."""
    with ui_registry.start_run("train-churn", params={"C": 0.5}, tags={"team": "ops"}) as run:
        run.log_metrics({"auc": 0.91})
    hostile = ui_registry.start_run("<script>alert(1)</script>", params={"<b>": "<i>"}).end()
    tiny = TinyPipeline(tmp_path_factory.mktemp("tiny"))
    try:
        fresh = tiny.run(ui_registry)
        cached = tiny.run(ui_registry)
        changed = tiny.run(ui_registry, n=6)
        failed = tiny.run(ui_registry, fail=True)
    finally:
        tiny.close()
    return Runs(run.id, hostile.id, fresh, cached, changed, failed)


@pytest.fixture(scope="module")
def produced(ui_registry: Registry, runs: Runs) -> str:
    """A model version registered from the training run (scikit-learn and skops: about 10 s)."""
    from sklearn.linear_model import LogisticRegression

    X = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.2, 0.9]])
    model = LogisticRegression().fit(X, [0, 1, 1, 0])
    return ui_registry.register(model, name="churn", data=X, run=runs.training).ref


def test_the_run_list_shows_both_kinds_newest_first(
    ui_server: UIServer, runs: Runs, page: Page
) -> None:
    page.goto(f"{ui_server.url}/ui/runs")
    rows = page.locator("table.runs tbody tr")
    assert rows.count() == 6
    assert rows.nth(0).locator("td").nth(2).inner_text() == "pipeline"
    assert runs.failed.id[:12] in rows.nth(0).inner_text()
    training = page.locator("tr", has_text="train-churn")
    assert "training" in training.inner_text() and "C=0.5" in training.inner_text()
    assert "auc=0.91" in training.inner_text()
    assert "<script>alert(1)</script>" in page.locator("table.runs").inner_text()
    assert "<b>=<i>" in page.locator("table.runs").inner_text()
    shot(page, "runs")
    page.select_option("#kind", "pipeline")
    page.fill("#name", "TIN")
    with page.expect_navigation():
        page.click("form.filters button")
    assert page.locator("table.runs tbody tr").count() == 4
    assert page.locator("#kind").input_value() == "pipeline"
    assert page.locator("#name").input_value() == "TIN"


def test_filters_and_pages_by_http(ui_server: UIServer, runs: Runs) -> None:
    training = ui_server.get("/ui/runs", params={"kind": "training"}).text
    assert "train-churn" in training and runs.fresh.id[:12] not in training
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in training
    named = ui_server.get("/ui/runs", params={"name": "CHURN"}).text
    assert "train-churn" in named and "1 in all" in named
    empty = ui_server.get("/ui/runs", params={"page": "9"})
    assert empty.status_code == 200 and "No runs" in empty.text


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"kind": "model"}, "Run kind &#39;model&#39; is unknown; choose training or pipeline"),
        ({"kind": "<script>"}, "Run kind &#39;&lt;script&gt;&#39; is unknown"),
        ({"name": "x" * 201}, "The &#39;name&#39; filter is longer than 200 characters."),
        ({"page": "-1"}, "Page &#39;-1&#39; is not a page number"),
        ({"page": "abc"}, "Page &#39;abc&#39; is not a page number"),
    ],
)
def test_bad_filters_are_400(
    ui_server: UIServer, runs: Runs, query: dict[str, str], message: str
) -> None:
    answer = ui_server.get("/ui/runs", params=query)
    assert answer.status_code == 400
    assert message in answer.text
    assert "<script>" not in answer.text.split("<main", 1)[1]


@pytest.mark.slow
def test_a_training_run_with_the_versions_it_produced(
    ui_server: UIServer, runs: Runs, produced: str, page: Page
) -> None:
    assert produced == "churn/1"
    page.goto(f"{ui_server.url}/ui/runs/{runs.training}")
    text = page.locator("main").inner_text()
    for expected in ("train-churn", "training", "finished", "auc", "0.91", "team", "ops"):
        assert expected in text, expected
    assert page.locator('a[href="/ui/models/churn/versions/1"]').inner_text() == "1"
    assert page.locator('a[href="/ui/models/churn"]').inner_text() == "churn"
    shot(page, "run-training")


def test_a_cached_rerun_shows_cache_hits_with_their_reasons(
    ui_server: UIServer, runs: Runs, page: Page
) -> None:
    page.goto(f"{ui_server.url}/ui/runs/{runs.cached.id}")
    nodes = page.locator("svg.dag a.dag-node")
    assert nodes.count() == len(STEPS)
    assert [nodes.nth(i).get_attribute("data-step") for i in range(nodes.count())] == STEPS
    assert {nodes.nth(i).get_attribute("class") for i in range(4)} == {"dag-node cached"}
    edges = page.locator("svg.dag path.dag-edge")
    found = {(edges.nth(i).get_attribute("data-from"), edges.nth(i).get_attribute("data-to"))
             for i in range(edges.count())}  # fmt: skip
    assert edges.count() == len(EDGES) and found == EDGES
    notes = page.locator("table.steps td.cache-note")
    assert notes.nth(0).inner_text() == f"hit: outputs of run {runs.fresh.id[:12]}"
    assert nodes.nth(0).locator("title").text_content() == (
        f"make · cached · cache hit: outputs of run {runs.fresh.id}"
    )
    artifacts = page.locator("#step-make table.artifacts").inner_text()
    make = runs.fresh.step("make").outputs["output"]
    assert make.sha256 in artifacts and "json/json" in artifacts and "(cached)" in artifacts
    shot(page, "run-pipeline-cached")
    nodes.nth(2).click()
    assert page.url.endswith("#step-total")


def test_a_changed_run_shows_why_each_step_ran(ui_server: UIServer, runs: Runs, page: Page) -> None:
    page.goto(f"{ui_server.url}/ui/runs/{runs.changed.id}")
    notes = page.locator("table.steps td.cache-note").all_inner_texts()
    assert notes[0] == "cache miss: parameter n 5 -> 6"
    assert notes[1] == "cache miss: input values changed"
    nodes = page.locator("svg.dag a.dag-node")
    assert {nodes.nth(i).get_attribute("class") for i in range(4)} == {"dag-node ran"}
    section = page.locator("#step-make").inner_text()
    step = runs.changed.step("make")
    assert step.cache_key is not None and step.cache_key in section
    assert "this run" in section and "B" in page.locator("#step-make table.artifacts").inner_text()
    shot(page, "run-pipeline-changed")


def test_a_failed_run_shows_failed_and_skipped_steps(
    ui_server: UIServer, runs: Runs, page: Page
) -> None:
    page.goto(f"{ui_server.url}/ui/runs/{runs.failed.id}")
    classes = [page.locator(f'svg.dag a[data-step="{s}"]').get_attribute("class") for s in STEPS]
    assert classes == ["dag-node cached", "dag-node cached", "dag-node failed", "dag-node skipped"]
    assert "RuntimeError: cannot total" in page.locator("#step-total pre.error").inner_text()
    shot(page, "run-pipeline-failed")


def test_a_step_log_with_a_script_tag_is_shown_as_text(
    ui_server: UIServer, runs: Runs, page: Page
) -> None:
    page.goto(f"{ui_server.url}/ui/runs/{runs.fresh.id}/steps/shout/log")
    assert (
        page.locator("pre.log")
        .inner_text()
        .startswith("<script>window.pwned = 1</script> and more")
    )
    assert page.evaluate("window.pwned") is None
    shot(page, "step-log")
    cached = ui_server.get(f"/ui/runs/{runs.cached.id}/steps/shout/log").text
    assert f"/ui/runs/{runs.fresh.id}/steps/shout/log" in cached and "A cache hit" in cached


def test_a_long_log_is_cut_with_a_note(
    ui_server: UIServer, ui_registry: Registry, runs: Runs
) -> None:
    with ui_registry.db.write() as conn:
        conn.execute(
            sa.update(run_steps)
            .where(run_steps.c.run_id == runs.changed.id, run_steps.c.name == "report")
            .values(log="A" * 50_000 + "THE END")
        )
    answer = ui_server.get(f"/ui/runs/{runs.changed.id}/steps/report/log")
    assert answer.status_code == 200
    assert "The log has 50,007 characters; the last 32,768 are shown." in answer.text
    shown = answer.text.split('<pre class="log">', 1)[1].split("</pre>", 1)[0]
    assert len(shown) == 32_768 and shown.endswith("THE END")
    short = ui_server.get(f"/ui/runs/{runs.fresh.id}/steps/make/log").text
    assert "characters; the last" not in short


def test_the_pipelines_with_their_latest_runs(ui_server: UIServer, runs: Runs, page: Page) -> None:
    page.goto(f"{ui_server.url}/ui/pipelines")
    rows = page.locator("table.pipelines tbody tr")
    assert rows.count() == 1
    text = rows.nth(0).inner_text()
    assert "tiny" in text and runs.failed.id[:12] in text and "4 (2 cached)" in text
    shot(page, "pipelines")
    with page.expect_navigation():
        page.click("table.pipelines a >> text=tiny")
    assert page.locator("table.runs tbody tr").count() == 4


HOSTILE = ["%3Cscript%3Ealert(1)%3C%2Fscript%3E", "%25", "%27%22", "a.b", "a%20b", "nope"]


@pytest.mark.parametrize("run_id", HOSTILE)
def test_unknown_or_hostile_run_ids_are_404(ui_server: UIServer, run_id: str) -> None:
    for path in (f"/ui/runs/{run_id}", f"/ui/runs/{run_id}/steps/make/log"):
        answer = ui_server.get(path)
        assert answer.status_code == 404, path
        assert "<script>alert" not in answer.text


def test_not_found_pages_name_the_thing_and_the_next_step(ui_server: UIServer, runs: Runs) -> None:
    answer = ui_server.get("/ui/runs/%3Cscript%3E")
    assert answer.status_code == 404
    assert "No run &#39;&lt;script&gt;&#39;; see the runs at /ui/runs." in answer.text
    step = ui_server.get(f"/ui/runs/{runs.fresh.id}/steps/%3Cb%3Ex/log")
    assert step.status_code == 404
    assert (
        f"Run &#39;{runs.fresh.id}&#39; has no step &#39;&lt;b&gt;x&#39;; its steps are: "
        "make, shout, total, report."
    ) in step.text
    training = ui_server.get(f"/ui/runs/{runs.training}/steps/make/log")
    assert training.status_code == 404 and "is a training run and has no steps" in training.text
    assert ui_server.get("/ui/runs/a%2Fb").status_code == 404
    assert ui_server.get("/ui/runs/" + "a" * 65).status_code == 400
    long_step = ui_server.get(f"/ui/runs/{runs.fresh.id}/steps/{'s' * 65}/log")
    assert long_step.status_code == 400


def test_a_running_pipeline_refreshes_its_steps_live(
    ui_server: UIServer, ui_registry: Registry, runs: Runs, page: Page
) -> None:
    record = runs.failed
    step = (run_steps.c.run_id == record.id) & (run_steps.c.name == "report")
    with ui_registry.db.write() as conn:
        conn.execute(sa.update(runs_table).where(runs_table.c.id == record.id)
                     .values(status="running", end_time=None))  # fmt: skip
        conn.execute(sa.update(run_steps).where(step).values(status="running"))
    try:
        page.goto(f"{ui_server.url}/ui/runs/{record.id}")
        live = page.locator("div.steps-live")
        assert live.get_attribute("data-live") == f"/ui/runs/{record.id}/steps"
        report = 'svg.dag a[data-step="report"]'
        assert page.locator(report).get_attribute("class") == "dag-node pending"
        with ui_registry.db.write() as conn:
            conn.execute(sa.update(run_steps).where(step).values(status="skipped"))
        expect(page.locator(report)).to_have_class("dag-node skipped", timeout=10_000)
        assert page.locator("svg.dag").count() == 1 and page.locator("table.steps").count() == 1
    finally:
        with ui_registry.db.write() as conn:
            conn.execute(sa.update(runs_table).where(runs_table.c.id == record.id)
                         .values(status="failed", end_time=record.end_time))  # fmt: skip
            conn.execute(sa.update(run_steps).where(step).values(status="skipped"))
    finished = ui_server.get(f"/ui/runs/{record.id}").text
    assert "data-live" not in finished
    fragment = ui_server.get(f"/ui/runs/{record.id}/steps")
    assert fragment.status_code == 200 and fragment.text.lstrip().startswith("<figure")
    assert ui_server.get(f"/ui/runs/{runs.training}/steps").status_code == 404
    assert ui_server.get("/ui/runs/nope/steps").status_code == 404


def test_the_pages_need_a_read_token_when_auth_is_on(
    ui_auth_server: UIServer, ui_registry: Registry, runs: Runs
) -> None:
    from modelyard.serving.tokens import create_token

    one = f"/ui/runs/{runs.fresh.id}"
    paths = ["/ui/runs", "/ui/pipelines", one, f"{one}/steps", f"{one}/steps/shout/log"]
    for path in paths:
        answer = ui_auth_server.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login")
    text, _ = create_token(ui_registry.db, scope="read", model=None, expires=None, created_by="t")
    for path in paths:
        answer = ui_auth_server.get(path, headers={"authorization": f"Bearer {text}"})
        assert answer.status_code == 200, path


def test_the_step_graph_is_reachable_by_keyboard(
    ui_server: UIServer, runs: Runs, page: Page
) -> None:
    page.goto(f"{ui_server.url}/ui/runs/{runs.fresh.id}")
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.step") == "total":
            break
    else:
        raise AssertionError("Tab never reached the graph's node for step 'total'")
    page.keyboard.press("Enter")
    page.wait_for_url("**#step-total", timeout=5000)  # the hash changes after the key event
    assert page.url.endswith("#step-total")


def test_a_run_with_a_hostile_name_is_shown_as_text(
    ui_server: UIServer, runs: Runs, page: Page
) -> None:
    page.goto(f"{ui_server.url}/ui/runs/{runs.hostile}")
    assert page.locator("h1").inner_text().startswith("Run <script>alert(1)</script>")
    assert page.locator("dl.kv dt", has_text="<b>").count() == 1
    shot(page, "run-hostile-name")
