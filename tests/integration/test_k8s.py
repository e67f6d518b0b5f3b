"""``yard k8s`` as a user runs it: manifests that pass the schemas, how to make the Secret, and a
one-line error (nothing written) for each bad input."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.linear_model import LogisticRegression

from modelyard.registry import Registry
from modelyard.rollout import deploy, start_candidate
from modelyard.settings import Settings
from tests.integration._server import YARD
from tests.unit.deploy._schemas import K8S_VERSIONS, validate_builtin, validate_custom


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A registry home with churn/1 (production) and deployment ``web``, which the CLI sees."""
    for key in list(os.environ):
        if key.startswith("MODELYARD_"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    monkeypatch.setenv("MODELYARD_HOME", str(home))
    registry = Registry(Settings(home=home), identity="setup")
    X = np.random.default_rng(1).normal(size=(30, 3))
    registry.register(LogisticRegression().fit(X, (X[:, 0] > 0).astype(int)), name="churn", data=X)
    registry.set_alias("churn/1", "production")
    deploy(registry, "web", model_ref="churn@production")
    registry.close()
    yield home


def in_process(*args: str) -> int | str | None:
    """``yard ARGS`` in this process (its exit code): a CLI start costs seconds here."""
    from modelyard.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(list(args))
    return exited.value.code


def test_yard_k8s_writes_valid_manifests_and_says_how_to_make_the_secret(
    home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "manifests"
    done = subprocess.run(
        [YARD, "k8s", "churn@production", "-o", str(out), "--replicas", "2", "--kserve",
         "--image", "ghcr.io/acme/churn:1", "--secret", "churn-db", "--namespace", "ml",
         "--monitoring-label", "release=prometheus"],
        env=os.environ, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    secret_line = (
        "  kubectl create secret generic churn-db -n ml "
        "--from-literal=database-url='postgresql+psycopg://USER:PASSWORD@HOST:5432/DB' "
        "--from-literal=artifact-root='s3://BUCKET/PREFIX'"
    )
    assert secret_line in done.stdout.splitlines()
    docs = [d for p in sorted(out.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]
    kinds = {d["kind"] for d in docs}
    assert kinds == {"InferenceService", "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule"}
    for doc in docs:
        if doc["kind"] == "PodDisruptionBudget":
            validate_builtin(doc, K8S_VERSIONS[-1])
        else:
            validate_custom(doc)
        assert doc["metadata"]["namespace"] == "ml"
        if doc["kind"] in ("ServiceMonitor", "PrometheusRule"):
            assert doc["metadata"]["labels"]["release"] == "prometheus"


def test_a_deployment_in_process(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "web"
    assert in_process("k8s", "--deployment", "web", "-o", str(out), "--image", "web:1") == 0
    deployment = yaml.safe_load((out / "deployment.yaml").read_text())
    assert deployment["metadata"]["name"] == "web"
    validate_builtin(deployment, K8S_VERSIONS[0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope@production"], "error: No model named 'nope' is registered"),
        (["--deployment", "nope"], "error: No deployment named 'nope'"),
        (["churn@production", "--deployment", "web"], "error: Give a model reference"),
        (["churn@production", "--replicas", "0"], "error: --replicas 0 is below 1"),
        (["churn@production", "--image", "Churn:latest"], "error: Image 'Churn:latest' is not"),
        (["churn@production", "--cpu-limit", "two"], "error: --cpu-limit 'two' is not a"),
        (["churn@production", "--cpu-request", "0"], "error: --cpu-request 0 is zero"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    out = tmp_path / "out"
    assert in_process("k8s", *args, "-o", str(out)) == 1
    err = capsys.readouterr().err
    assert err.startswith(message), err
    assert err.count("\n") == 1
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["home"]


def test_a_folder_with_files_needs_force(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert in_process("k8s", "churn@production", "-o", str(out)) == 0
    printed = capsys.readouterr().out
    assert "image churn:1" in printed  # the default: SLUG:VERSION
    assert "the alerts link to RUNBOOK.md#<alert>: give --runbook-url the address" in printed
    assert in_process("k8s", "churn@production", "-o", str(out)) == 1
    err = capsys.readouterr().err
    assert err == (
        f"error: Output folder '{out}' is not empty; pass --force to replace it or choose "
        "another -o.\n"
    )
    assert in_process("k8s", "churn@production", "-o", str(out), "--force", "--kserve") == 0
    assert (out / "inferenceservice.yaml").exists() and not (out / "deployment.yaml").exists()


def test_force_leaves_a_folder_yard_k8s_did_not_write_alone(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main")
    (repo / "src").mkdir()
    (repo / "src" / "main.py").write_text("print('mine')")
    assert in_process("k8s", "churn@production", "-o", str(repo), "--force") == 1
    assert capsys.readouterr().err == (
        f"error: Output folder '{repo}' is not one yard k8s wrote (no .yard-generated of it "
        "inside), so --force leaves it alone; remove it yourself or choose another -o.\n"
    )
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*")) == [
        ".git",
        ".git/HEAD",
        "src",
        "src/main.py",
    ]
    assert (repo / "src" / "main.py").read_text() == "print('mine')"


def test_yard_k8s_deploys_the_image_yard_build_tags(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], modelyard_wheel: Path
) -> None:
    """The default --image is the tag 'yard build' prints for the same target: for a deployment
    with a candidate, build said web:1-2 while the pods were to run web:1, never built."""
    registry = Registry(Settings(home=home), identity="setup")
    X = np.random.default_rng(2).normal(size=(30, 3))
    registry.register(LogisticRegression().fit(X, (X[:, 1] > 0).astype(int)), name="churn", data=X)
    deploy(registry, "web2", model_ref="churn/1")
    start_candidate(registry, "web2", ref="churn/2", mode="canary", weight=10)
    registry.close()
    cases = {
        "churn:2": ["churn/2"],
        "churn:1": ["churn@production"],
        "web:1": ["--deployment", "web"],
        "web2:1-2": ["--deployment", "web2"],
    }
    for i, (tag, target) in enumerate(cases.items()):
        ctx, manifests, kserve = (tmp_path / f"{kind}{i}" for kind in ("ctx", "k8s", "kserve"))
        wheel = ["--wheel", str(modelyard_wheel)]
        assert in_process("build", *target, "-o", str(ctx), *wheel) == 0, capsys.readouterr().err
        built = capsys.readouterr().out
        assert f"next: docker build -t {tag} {ctx}" in built, (tag, built)
        assert in_process("k8s", *target, "-o", str(manifests)) == 0, capsys.readouterr().err
        assert f"image {tag};" in capsys.readouterr().out
        pod = yaml.safe_load((manifests / "deployment.yaml").read_text())["spec"]["template"]
        assert pod["spec"]["containers"][0]["image"] == tag
        assert in_process("k8s", *target, "-o", str(kserve), "--kserve") == 0
        service = yaml.safe_load((kserve / "inferenceservice.yaml").read_text())
        assert service["spec"]["predictor"]["containers"][0]["image"] == tag
        capsys.readouterr()


def test_runbook_url_means_what_it_means_for_yard_observability(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "https://wiki.example.com/modelyard/RUNBOOK.md"
    out, bundle = tmp_path / "k8s", tmp_path / "observability"
    assert in_process("k8s", "churn@production", "-o", str(out), "--runbook-url", url) == 0
    assert "--runbook-url" not in capsys.readouterr().out
    assert in_process("observability", "-o", str(bundle), "--runbook-url", url) == 0
    rule = yaml.safe_load((out / "prometheusrule.yaml").read_text())
    rules = yaml.safe_load((bundle / "modelyard-alerts.yaml").read_text())
    assert rule["spec"]["groups"] == rules["groups"]
    assert rules["groups"][0]["rules"][0]["annotations"]["runbook_url"].startswith(f"{url}#")
    capsys.readouterr()
    assert (
        in_process("k8s", "churn@production", "-o", str(tmp_path / "x"), "--runbook-url", "a b")
        == 1
    )
    assert capsys.readouterr().err.startswith("error: Runbook URL 'a b' must be an address")
    assert not (tmp_path / "x").exists()
