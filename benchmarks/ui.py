"""Dashboard benchmark (issue 16): with 10,000 versions across 200 models, 50 deployments and 1M
logged predictions over 7 days, every page's p95 at most 200 ms, and at least 10x faster than the
MLflow UI's corresponding REST calls on the same registry content imported into MLflow.

    .venv/bin/python benchmarks/ui.py --home /tmp/ui-bench-home [--quick] [--skip-mlflow]

The home is seeded once per size (``_ui_seed``; ``--quick`` uses a small one under
``HOME/quick``) and reused. The pages timed are data (``benchmarks/ui_pages.json``, or
``--pages FILE``): a page that answers 404 (not on this branch yet) is skipped with a note. The
dashboard (``create_app`` over the home, one uvicorn worker) and ``mlflow server`` (SQLite
backend, one worker, MLflow in its own virtualenv under the home) run pinned to the same core
when ``taskset`` exists, and this process (the client) on the others; it fetches each page
sequentially on loopback: a warm-up, then ``--fetches`` timed fetches. Also timed in-process:
the service functions behind the pages (``_ui_service``), which run without any page. Writes
JSON to benchmarks/results/ui.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import _harness
import _ui_http
import _ui_seed
import httpx

HERE = Path(__file__).resolve().parent
LIMIT_MS = 200.0
WANTED_RATIO = 10.0


def placeholders(size: _ui_seed.Size) -> dict[str, str]:
    """The model, versions and deployment the pages are asked about: in the middle of the
    seeded content, and a deployment with a canary whose log drifts (its 24h and 7d windows)."""
    model = min(size.models - 1, size.models // 2)
    deployment = 0 if size.deployments <= 2 else 2
    return {
        "model": _ui_seed.model_name(model),
        "version": str(max(1, size.versions // 2)),
        "previous": str(max(1, size.versions // 2 - 1)),
        "deployment": _ui_seed.deployment_name(deployment),
    }


def load_pages(path: Path, size: _ui_seed.Size) -> list[dict[str, str]]:
    pages = json.loads(path.read_text())["pages"]
    fill = placeholders(size)
    return [{**p, "path": p["path"].format(**fill)} for p in pages]


def time_pages(
    home: Path, pages: list[dict[str, str]], *, warmup: int, fetches: int, core: int | None
) -> dict[str, Any]:
    port = _ui_http.free_port()
    base = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {}
    command = _ui_http.dashboard_command(home, port, core)
    with (
        _ui_http.serving(command, f"{base}/ui/static/style.css", log=home / "dashboard.log"),
        httpx.Client(base_url=base, timeout=120) as client,
    ):
        for page in pages:
            timed = _ui_http.time_get(
                client, page["path"], warmup=warmup, fetches=fetches, params=None
            )
            results[page["path"]] = {**timed, "mlflow": page.get("mlflow")}
            print("  " + row(page["path"], timed), flush=True)
    return results


def row(name: str, timed: dict[str, Any]) -> str:
    if timed.get("status") != 200:
        what = "not on this branch" if timed.get("status") == 404 else "not timed"
        return f"{name:<52} {timed.get('status')} ({what})"
    mark = "ok" if timed["p95_ms"] <= LIMIT_MS else f"OVER {LIMIT_MS:.0f} ms"
    if timed.get("computing"):
        mark += f" ({timed['computing']} timed fetches were still 'computing')"
    ready = timed.get("ready_ms", timed["first_ms"])
    waited = f"  ready after {ready / 1000:.1f} s" if ready > timed["first_ms"] + 1 else ""
    return (
        f"{name:<52} p50 {timed['p50_ms']:8.1f} ms  p95 {timed['p95_ms']:8.1f} ms  "
        f"first {timed['first_ms']:8.1f} ms  {timed['bytes'] / 1024:7.1f} KiB  {mark}{waited}"
    )


def ratios(pages: dict[str, Any], mlflow: dict[str, Any]) -> dict[str, Any]:
    """MLflow / modelyard for each page that names an MLflow call and answered."""
    out: dict[str, Any] = {}
    for path, ours in pages.items():
        call = ours.get("mlflow")
        theirs = mlflow.get(call or "")
        if not call or ours.get("status") != 200 or not theirs or theirs.get("status") != 200:
            continue
        out[call] = {
            "page": path,
            "p50": theirs["p50_ms"] / ours["p50_ms"],
            "p95": theirs["p95_ms"] / ours["p95_ms"],
        }
    return out


def versions() -> dict[str, str]:
    names = ("modelyard", "starlette", "uvicorn", "jinja2", "sqlalchemy", "duckdb", "pyarrow")
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, default=Path("/tmp/ui-bench-home"))
    parser.add_argument("--quick", action="store_true", help="a small home, a smoke test")
    parser.add_argument("--pages", type=Path, default=HERE / "ui_pages.json")
    parser.add_argument("--fetches", type=int, default=None, help="timed fetches per page")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--core", type=int, default=1, help="the core servers run on (-1: any)")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--skip-service", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    size = _ui_seed.QUICK if args.quick else _ui_seed.Size()
    home = (args.home / "quick" if args.quick else args.home).resolve()
    fetches = args.fetches or (10 if args.quick else 50)
    cpus = os.cpu_count() or 1
    core = None if args.core < 0 or cpus < 2 else args.core % cpus
    if core is not None and hasattr(os, "sched_setaffinity"):
        # the client (and the in-process timings) on the other cores, as wrk in serving.py
        os.sched_setaffinity(0, {c for c in range(cpus) if c != core})
    print(f"home {home}: {size.label}", flush=True)
    seeded = _ui_seed.ensure_home(home, size)
    pages = load_pages(args.pages, size)
    print(f"\ndashboard pages ({args.warmup} warm-up, {fetches} timed fetches each, "
          f"client-observed on loopback, server on core {core}):", flush=True)  # fmt: skip
    timed = time_pages(home, pages, warmup=args.warmup, fetches=fetches, core=core)
    report: dict[str, Any] = {
        "size": seeded["size"], "seed_timings_s": seeded["timings"], "pages": timed,
        "limit_ms": LIMIT_MS,
    }  # fmt: skip
    if not args.skip_service:
        import _ui_service

        print("\nservice functions behind the pages, in-process (no HTTP, no page):", flush=True)
        report["service"] = _ui_service.measure(
            home, placeholders(size), fetches=max(5, fetches // 2)
        )
    if not args.skip_mlflow:
        import _ui_mlflow

        fill = placeholders(size)
        print("\nMLflow REST calls (same content, mlflow server, SQLite backend):", flush=True)
        theirs = _ui_mlflow.measure(
            home, size, model=fill["model"], version=int(fill["version"]), page_size=50,
            warmup=args.warmup, fetches=fetches, core=core,
            venv=args.home.resolve() / "mlflow-venv",
        )  # fmt: skip
        report["mlflow"] = theirs
        print(f"  MLflow {theirs['version']}; {theirs['check']}")
        for call in ("models list", "version list", "one version"):
            print("  " + row(f"{call}: {theirs[call]['call']}", theirs[call]))
        report["ratios"] = ratios(timed, theirs)
        print(f"\nMLflow / modelyard (wanted >= {WANTED_RATIO:.0f}x):")
        if not report["ratios"]:
            print("  no compared page answered yet (pages not on this branch)")
        for call, r in report["ratios"].items():
            print(f"  {call:<14} ({r['page']}): p50 {r['p50']:.1f}x  p95 {r['p95']:.1f}x")
        if "service" in report:
            report["service_ratios"] = _ui_service.ratios(report["service"], theirs)
            print("  in-process service call instead of page (a bound, not the page):")
            for call, r in report["service_ratios"].items():
                print(f"  {call:<14} ({r['function']}): p50 {r['p50']:.1f}x  p95 {r['p95']:.1f}x")
    report["machine"] = _harness.machine(server_core=core, taskset=_ui_http.pinned(["x"], 0)[0])
    report["versions"] = versions()
    report.update(_harness.git_commit())
    out = args.out or HERE / "results" / ("ui-quick.json" if args.quick else "ui.json")
    _harness.write_report(out, report)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
