"""``make test`` installs what its tests need outside .venv with ``.ci/setup-system`` (the one copy
``.ci/run`` uses too): Chromium, h2load, promtool and redis-server; without Chromium the browser
tests skip saying why, or fail under CI.

The script runs with a PATH of stand-ins (``apt-get``, ``id``, ``sudo``, ``chromium``) that record
their calls, so the test never installs or removes anything on this machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "setup-system"
BASH = "/bin/bash"


def stand_in(folder: Path, name: str, body: str = "") -> None:
    """An executable ``name`` in ``folder`` that records its arguments in ``calls``, then runs
    ``body``."""
    path = folder / name
    path.write_text(f'#!{BASH}\necho "{name} $*" >> "{folder}/calls"\n{body}\n')
    path.chmod(0o755)


def setup_system(
    tmp_path: Path, *tools: str, uid: int = 0, sudo_works: bool = False
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    stand_in(bin_, "id", f"echo {uid}")
    for tool in tools:
        if tool == "sudo":
            stand_in(bin_, "sudo", f'[ "$2" = true ] && exit {0 if sudo_works else 1}; shift; "$@"')
        else:
            stand_in(bin_, tool)
    out = subprocess.run(
        [BASH, str(SCRIPT)], env={"PATH": str(bin_)}, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    calls = bin_ / "calls"
    recorded = calls.read_text().splitlines() if calls.exists() else []
    return out, [c for c in recorded if not c.startswith("id ")]


def test_nothing_happens_when_chromium_h2load_promtool_and_redis_are_there(tmp_path: Path) -> None:
    out, calls = setup_system(tmp_path, "chromium", "h2load", "promtool", "redis-server", "apt-get")
    assert out.returncode == 0, out.stderr
    assert calls == []  # no apt-get update, nothing installed
    assert out.stderr == ""


def test_root_installs_what_is_missing_with_apt(tmp_path: Path) -> None:
    out, calls = setup_system(tmp_path, "apt-get")
    assert out.returncode == 0, out.stderr
    assert calls == [
        "apt-get update -qq",
        "apt-get install -y -qq chromium nghttp2-client prometheus redis-server",
    ]


def test_only_the_missing_package_is_installed(tmp_path: Path) -> None:
    out, calls = setup_system(tmp_path, "apt-get", "chromium", "promtool", "redis-server")
    assert out.returncode == 0, out.stderr
    assert calls == ["apt-get update -qq", "apt-get install -y -qq nghttp2-client"]


def test_a_user_with_password_less_sudo_installs_through_sudo(tmp_path: Path) -> None:
    out, calls = setup_system(tmp_path, "apt-get", "sudo", uid=1000, sudo_works=True)
    assert out.returncode == 0, out.stderr
    assert calls == [
        "sudo -n true",
        "sudo -n apt-get update -qq",
        "apt-get update -qq",
        "sudo -n apt-get install -y -qq chromium nghttp2-client prometheus redis-server",
        "apt-get install -y -qq chromium nghttp2-client prometheus redis-server",
    ]


@pytest.mark.parametrize(
    ("tools", "uid", "says"),
    [
        (("apt-get", "sudo"), 1000, "installing needs root"),
        (("apt-get",), 1000, "installing needs root"),
        ((), 0, "there is no apt-get"),
    ],
    ids=["sudo-asks-a-password", "no-sudo", "no-apt"],
)
def test_where_it_cannot_install_it_says_so_and_goes_on(
    tmp_path: Path, tools: tuple[str, ...], uid: int, says: str
) -> None:
    out, calls = setup_system(tmp_path, *tools, uid=uid)
    assert out.returncode == 0  # make test goes on; the browser tests skip
    assert says in out.stderr
    needing = "the tests that need chromium nghttp2-client prometheus redis-server will skip"
    assert needing in out.stderr
    assert [c for c in calls if c.startswith("apt-get")] == []


def test_a_failing_install_is_reported_not_fatal(tmp_path: Path) -> None:
    setup_system(tmp_path, "apt-get")  # makes the stand-ins; now apt-get fails
    bin_ = tmp_path / "bin"
    (bin_ / "apt-get").write_text(f"#!{BASH}\nexit 100\n")
    out = subprocess.run(
        [BASH, str(SCRIPT)], env={"PATH": str(bin_)}, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0
    assert "apt-get install chromium nghttp2-client prometheus redis-server failed" in out.stderr


def test_make_test_and_ci_run_use_the_one_set_up() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "system:\n\t.ci/setup-system\n" in makefile
    assert re.search(r"^test: check system\b", makefile, re.M)
    ci_run = (ROOT / ".ci" / "run").read_text()
    assert "apt-get" not in ci_run and "make test" in ci_run  # no second copy


def browser_tests(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The browser tests in a pytest subprocess whose PATH has no ``chromium``."""
    bin_ = tmp_path / "bin"
    bin_.mkdir(exist_ok=True)
    base = {k: v for k, v in os.environ.items() if k != "CI"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "tests/e2e/test_report_browser.py"],
        cwd=ROOT, env={**base, "PATH": str(bin_), **env}, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip


def test_without_chromium_browser_tests_skip_with_the_reason(tmp_path: Path) -> None:
    out = browser_tests(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    # every browser test skips, however many there are
    assert re.search(r"\b\d+ skipped\b", out.stdout) and " passed" not in out.stdout
    assert "chromium is not on PATH" in out.stdout and "make system" in out.stdout


def test_without_chromium_browser_tests_fail_under_ci(tmp_path: Path) -> None:
    out = browser_tests(tmp_path, CI="true")
    assert out.returncode == 1, out.stdout + out.stderr
    assert re.search(r"\b\d+ errors?\b", out.stdout) and " passed" not in out.stdout
    assert "CI=true, so this is a failure" in out.stdout
