"""``yard models``: register, list, show, alias, rollback, history, archive, verify."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from modelyard.cli._output import console, kv, parse_pairs, print_json, slots_dict, table, when
from modelyard.cli._registry import open_registry
from modelyard.core.datasources import fetch_hint
from modelyard.core.types import AliasEvent, ModelVersion

app = typer.Typer(help="Registered models, versions and aliases.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print JSON for scripts.")


@app.command()
def register(
    file: Path = typer.Argument(
        ...,
        help="A .skops, .onnx, XGBoost .json/.ubj, LightGBM .txt "
        "file, an MLflow model directory, or a transformers / sentence-transformers folder.",
    ),
    name: str = typer.Option(..., "--name", "-n", help="The model's name."),
    flavor: str = typer.Option(
        "auto", help="auto|sklearn|xgboost|lightgbm|onnx|transformers|pickle"
    ),
    data: Path | None = typer.Option(None, help="Training data (CSV or Parquet)."),
    target: str | None = typer.Option(None, help="The label column of --data."),
    metric: list[str] = typer.Option([], help="KEY=VALUE, repeatable."),
    param: list[str] = typer.Option([], help="KEY=VALUE, repeatable."),
    tag: list[str] = typer.Option([], help="KEY=VALUE, repeatable."),
    description: str | None = typer.Option(None),
    convert: str | None = typer.Option(None, help="'onnx' to keep a checked ONNX twin."),
    optimize: str | None = typer.Option(
        None, help="'quantize': keep a checked int8 twin of a text model."
    ),
    truncate: bool = typer.Option(
        False, "--truncate", help="A text model cuts texts over its maximum length."
    ),
    run: str | None = typer.Option(None, help="The id of the run this version came from."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow a pickle file."),
    trust_type: list[str] = typer.Option([], help="A skops type to trust, repeatable."),
    json: bool = JSON,
) -> None:
    """Register a saved model file as the next version of NAME."""
    if convert not in (None, "onnx"):
        raise typer.BadParameter("only 'onnx' is supported", param_hint="--convert")
    if optimize not in (None, "quantize"):
        raise typer.BadParameter("only 'quantize' is supported", param_hint="--optimize")
    version = open_registry().register_file(
        file, name=name, flavor=flavor, data=data, target=target,
        metrics=parse_pairs("--metric", metric), params=parse_pairs("--param", param),
        tags=parse_pairs("--tag", tag), description=description, run=run,
        convert="onnx" if convert else None, trust_pickle=trust_pickle, trusted_types=trust_type,
        truncate=truncate, optimize="quantize" if optimize else None,
    )  # fmt: skip
    if json:
        print_json(version)
        return
    console().print(f"registered {version.ref} ({version.flavor})")


@app.command("list")
def list_(
    name: str | None = typer.Argument(None, help="List this model's versions."),
    prefix: str | None = typer.Option(None, help="Models whose name starts with this."),
    tag: str | None = typer.Option(None, help="Versions with tag KEY or KEY=VALUE."),
    alias: str | None = typer.Option(None, help="Versions an alias of this name points to."),
    flavor: str | None = typer.Option(None, help="Versions of this flavor."),
    page: int = typer.Option(1, min=1),
    page_size: int = typer.Option(50, min=1, max=1000),
    json: bool = JSON,
) -> None:
    """List models, or versions (of NAME, or matching --tag/--alias/--flavor), newest first."""
    registry = open_registry()
    if name is None and tag is None and alias is None and flavor is None:
        models = registry.list_models(prefix=prefix, page=page, page_size=page_size)
        if json:
            print_json({"items": models.items, "page": page, "total": models.total})
            return
        table(
            f"models (page {page}, {models.total} in all)",
            ["name", "latest", "aliases", "updated"],
            [(m.name, m.latest_version, kv(m.aliases), when(m.updated_at)) for m in models.items],
        )
        return
    result = registry.search_versions(
        name=name, name_prefix=prefix, tag=tag, alias=alias, flavor=flavor,
        page=page, page_size=page_size,
    )  # fmt: skip
    if json:
        print_json({"items": result.items, "page": page, "total": result.total})
        return
    table(
        f"versions (page {page}, {result.total} in all)",
        ["ref", "flavor", "aliases", "metrics", "tags", "created", "by", "archived"],
        [_version_row(v) for v in result.items],
    )


def _version_row(v: ModelVersion) -> tuple[Any, ...]:
    return (
        v.ref, v.flavor, ", ".join(v.aliases) or "-", kv(v.metrics), kv(v.tags),
        when(v.created_at), v.created_by, "yes" if v.archived else "",
    )  # fmt: skip


@app.command()
def show(ref: str, json: bool = JSON) -> None:
    """Show one version: files, signature, metrics, lineage."""
    v = open_registry().get_version(ref)
    if json:
        print_json(v)
        return
    sig = v.signature
    inputs = ", ".join(f"{s.name}:{s.dtype}" for s in sig.inputs[:12]) if sig else "-"
    if sig and len(sig.inputs) > 12:
        inputs += f", ... ({len(sig.inputs)} in all)"
    dataset = v.lineage.dataset
    rows = [
        ("flavor", v.flavor + (" (untrusted pickle)" if v.untrusted else "")),
        ("aliases", ", ".join(v.aliases) or "-"),
        ("created", f"{when(v.created_at)} by {v.created_by}"),
        ("archived", "yes" if v.archived else "no"),
        ("description", v.description),
        ("inputs", f"{sig.kind}: {inputs}" if sig else "-"),
        ("outputs", ", ".join(f"{o.name}:{o.dtype}{list(o.shape)}" for o in sig.outputs)
         if sig else "-"),
        ("classes", ", ".join(map(str, sig.classes)) if sig and sig.classes else "-"),
        ("metrics", kv(v.metrics)), ("params", kv(v.params)), ("tags", kv(v.tags)),
        ("run", v.run_id),
        ("dataset", f"{dataset.sha256[:16]}... {dataset.rows} rows" if dataset else "-"),
        *_source_rows(v),
        ("git", f"{v.lineage.git_commit}{' (dirty)' if v.lineage.git_dirty else ''}"
         if v.lineage.git_commit else "-"),
        ("python", v.lineage.python), ("packages", kv(v.lineage.packages)),
    ]  # fmt: skip
    model_meta = v.flavor_meta.get("model", {})
    if "import_path" in model_meta:  # a PyTorch module: its class, for load_weights
        rows.append(("module", str(model_meta["import_path"])))
    parity = model_meta.get("parity")
    if isinstance(parity, dict):
        rows.append(("parity", f"ONNX vs the module on {parity.get('rows')} example rows: max "
                               f"difference {parity.get('max_abs_diff', 0):.2g}"))  # fmt: skip
    rows += _text_rows(v.flavor_meta)
    rows += [(f"file {f.role}", f"{f.name} {f.size_bytes} B sha256:{f.sha256}") for f in v.files]
    table(f"model {v.ref}", ["field", "value"], rows)


def _source_rows(v: ModelVersion) -> list[tuple[str, Any]]:
    """Each Delta table or DVC file the training data came from, and how to fetch it again."""
    rows: list[tuple[str, Any]] = []
    for source in v.lineage.data_sources:
        what, fetch = fetch_hint(source)
        rows.append(("data source", what))
        if fetch:
            rows.append(("fetch data", fetch))
    return rows


def _text_rows(meta: dict[str, Any]) -> list[tuple[str, Any]]:
    """A text model's task, export parity and int8 twin, when the version is one."""
    model = meta.get("model", {})
    if "task" not in model:
        return []
    rows: list[tuple[str, Any]] = [
        ("task", f"{model['task']}, max {model['max_length']} tokens, "
         + ("truncates longer texts" if model.get("truncate") else "refuses longer texts")),
    ]  # fmt: skip
    parity = meta.get("parity")
    if parity:
        rows.append(("onnx parity", _numbers(parity)))
    fusion = meta.get("fusion")
    if fusion:
        fused = ", ".join(f"{op} {n}" for op, n in (fusion.get("fused") or {}).items())
        rows.append(("fusion", f"onnxruntime: {fused}" if fusion.get("kept")
                     else f"none ({fusion.get('reason')})"))  # fmt: skip
    twin = meta.get("quantized")
    if twin:
        state = "kept" if twin.get("kept") else f"not kept ({twin.get('reason')})"
        size = twin.get("size_bytes_int8")
        sizes = f"{twin['size_bytes_fp32']} B fp32" + (f" -> {size} B int8" if size else "")
        numbers = {k: v for k, v in twin.items() if k not in ("kept", "reason")}
        rows.append(("int8 twin", f"{state}; {sizes}; {_numbers(numbers)}"))
    return rows


def _numbers(values: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in values.items()
        if not k.startswith("size_bytes")
    )


@app.command()
def alias(
    ref: str,
    alias_name: str = typer.Argument(..., metavar="ALIAS"),
    reason: str | None = typer.Option(None, help="Why; kept in the audit log."),
    json: bool = JSON,
) -> None:
    """Point ALIAS at the version REF names (recorded in the audit log)."""
    _print_event(open_registry().set_alias(ref, alias_name, reason=reason), json)


@app.command()
def rollback(
    name: str,
    alias_name: str = typer.Argument(..., metavar="ALIAS"),
    reason: str | None = typer.Option(None, help="Why; kept in the audit log."),
    json: bool = JSON,
) -> None:
    """Move ALIAS back to the version it pointed at before its last move."""
    _print_event(open_registry().rollback(name, alias_name, reason=reason), json)


def _print_event(event: AliasEvent, json: bool) -> None:
    if json:
        print_json(event)
        return
    before = f"version {event.from_version}" if event.from_version else "nothing"
    console().print(
        f"{event.name}@{event.alias}: {before} -> version {event.to_version}"
        + (f" ({event.reason})" if event.reason else "")
    )


@app.command()
def history(
    name: str,
    alias_name: str | None = typer.Option(None, "--alias", help="Only this alias."),
    limit: int = typer.Option(100, min=1),
    json: bool = JSON,
) -> None:
    """The audit log of NAME's alias moves, newest first."""
    events = open_registry().history(name, alias=alias_name, limit=limit)
    if json:
        print_json(events)
        return
    table(
        f"alias history of {name}",
        ["when", "alias", "from", "to", "who", "reason"],
        [(when(e.at), e.alias, e.from_version, e.to_version, e.actor, e.reason) for e in events],
    )


@app.command()
def archive(ref: str, json: bool = JSON) -> None:
    """Archive a version (one an alias points to cannot be archived)."""
    version = open_registry().archive(ref)
    print_json(version) if json else console().print(f"archived {version.ref}")


@app.command()
def unarchive(ref: str, json: bool = JSON) -> None:
    """Take a version out of the archive."""
    version = open_registry().archive(ref, archived=False)
    print_json(version) if json else console().print(f"unarchived {version.ref}")


@app.command()
def verify(ref: str, json: bool = JSON) -> None:
    """Re-hash every file of a version; exit 1 when any is missing or altered."""
    registry = open_registry()
    version = registry.get_version(ref)
    checks = registry.verify(version.ref)
    if json:
        print_json([slots_dict(c) for c in checks])
    else:
        table(
            f"verify {version.ref}",
            ["file", "role", "sha256", "status"],
            [(c.name, c.role, c.sha256[:16] + "...", "ok" if c.ok else c.reason) for c in checks],
        )
    if not all(c.ok for c in checks):
        raise typer.Exit(1)
