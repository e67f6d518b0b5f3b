"""The registry: immutable model versions, audited aliases, runs.

``Registry`` is the one object the CLI, the server and user code talk to. It owns a metadata
database and an artifact store; create one per process and share it.
"""

from __future__ import annotations

import copy
import getpass
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from modelyard.core.lineage import LineageCollector
from modelyard.core.refs import ModelRef, check_alias, check_name, parse_ref
from modelyard.core.types import AliasEvent, ModelVersion, Page, RegisteredModel, Run
from modelyard.errors import (
    ConflictError,
    InvalidInputError,
    InvalidSpecError,
    ModelyardError,
    UntrustedTypeError,
)
from modelyard.flavors import (
    Artifact,
    Flavor,
    LoadOptions,
    flavor_for_file,
    flavor_for_object,
    get_flavor,
    is_text_model_folder,
    load_text_model,
)
from modelyard.registry import _rows
from modelyard.registry import aliases as _aliases
from modelyard.registry import checks as _checks
from modelyard.registry.runs import (
    ActiveRun,
    RunKind,
    RunMirror,
    clean_metrics,
    clean_strings,
    runs_query,
    start_run,
)
from modelyard.settings import Settings
from modelyard.store.artifacts import ArtifactStore
from modelyard.store.db import Database
from modelyard.store.schema import (
    aliases,
    model_versions,
    models,
    runs,
    version_files,
    version_tags,
)

if TYPE_CHECKING:
    from modelyard.registry._prepare import ConvertTo, Optimize, PreparedVersion
    from modelyard.registry.loaded import LoadedModel, Runtime

logger = logging.getLogger(__name__)
_ModuleT = TypeVar("_ModuleT")

MAX_PAGE_SIZE = 1000
#: Flavors whose stored model is an ONNX export (served by onnxruntime whatever the runtime).
_ONNX_MODELS = frozenset({"torch"})


@dataclass(frozen=True, slots=True)
class FileCheck:
    """One artifact file's verification: ``ok`` or the reason it failed."""

    name: str
    role: str
    sha256: str
    ok: bool
    reason: str | None


class Registry:
    """Model versions, aliases and runs in one metadata database and one artifact store."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        database_url: str | None = None,
        artifact_root: str | None = None,
        identity: str | None = None,
    ) -> None:
        base = settings if settings is not None else Settings()
        self.settings = base.with_overrides(
            database_url=database_url, artifact_root=artifact_root, identity=identity
        )
        # the store first: a malformed root is refused before the database is opened or made
        self.artifacts = ArtifactStore(self.settings.resolved_artifact_root)
        self.db = Database(self.settings.resolved_database_url)
        self.identity = self.settings.identity or _os_user()
        self.lineage = LineageCollector()

    def close(self) -> None:
        self.db.close()

    def acting_as(self, identity: str) -> Registry:
        """This registry (the same database and store) recording ``identity`` as the actor of
        what it changes: the dashboard acts for the token that sent each request."""
        other = copy.copy(self)
        other.identity = identity
        return other

    # -- registering -------------------------------------------------------------------------

    def register(
        self,
        model: object,
        *,
        name: str,
        data: Any = None,
        target: Any = None,
        flavor: str = "auto",
        metrics: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
        description: str | None = None,
        run: ActiveRun | str | None = None,
        convert: ConvertTo = None,
        input_example: Any = None,
        trust_pickle: bool = False,
        trusted_types: Sequence[str] = (),
        truncate: bool = False,
        optimize: Optimize = None,
    ) -> ModelVersion:
        """Register an in-memory model as the next version of ``name``.

        ``data`` (a DataFrame, a 2-D array, or a CSV/Parquet path) is the training data: it gives
        the signature, the input example, the reference profile and the dataset fingerprint.
        ``target`` is its label column (or the labels). ``convert="onnx"`` keeps an ONNX twin
        when its outputs match the model's. A ``torch.nn.Module`` needs ``input_example`` (a 2-D
        tensor or array) or ``data``: it is exported to ONNX on it and kept only when the export
        agrees with the module (``flavors._torch``).

        Text models (``flavors._transformers``): a ``SentenceTransformer`` or a
        ``(transformers model, tokenizer)`` pair, exported to ONNX and checked against the eager
        model on the texts of ``input_example`` (a list of strings) or ``data`` (a ``text``
        column), else on ``flavors.REFERENCE_TEXTS``. ``truncate=True`` cuts texts longer than
        the model's maximum instead of refusing them; ``optimize="quantize"`` keeps an int8 twin
        when it agrees with the float32 graph (``flavors._text_checks``).
        """
        from modelyard.registry._prepare import dump_model, prepare_version

        check_name(name)
        options = self._options(trusted_types, trust_pickle)
        chosen = self._flavor(flavor, model=model, trust_pickle=trust_pickle)
        artifact, input_example = dump_model(
            chosen, model, name=name, data=data, target=target, input_example=input_example
        )
        prepared = prepare_version(
            chosen,
            artifact,
            name=name,
            model=model,
            data=data,
            target=target,
            input_example=input_example,
            convert=convert,
            options=options,
            source=None,
            lineage=self.lineage,
            truncate=truncate,
            optimize=optimize,
        )
        return self._commit(
            name, prepared, metrics=metrics, params=params, tags=tags,
            description=description, run=run,
        )  # fmt: skip

    def register_file(
        self,
        path: str | Path,
        *,
        name: str,
        flavor: str = "auto",
        data: Any = None,
        target: Any = None,
        metrics: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
        description: str | None = None,
        run: ActiveRun | str | None = None,
        convert: ConvertTo = None,
        trust_pickle: bool = False,
        trusted_types: Sequence[str] = (),
        input_example: Any = None,
        truncate: bool = False,
        optimize: Optimize = None,
        source: str | None = None,
    ) -> ModelVersion:
        """Register a saved model file (.skops, .onnx, XGBoost .json/.ubj, LightGBM .txt, a
        pickle with ``trust_pickle``), an MLflow model directory (one with an ``MLmodel``) or a
        transformers / sentence-transformers model folder (see ``register`` for text models:
        ``input_example``, ``truncate`` and ``optimize`` apply to them). The lineage's
        ``source`` is the file's path unless ``source`` says where it came from."""
        from modelyard.registry._prepare import prepare_version

        check_name(name)
        p = Path(path)
        options = self._options(trusted_types, trust_pickle)
        if p.is_dir() and (p / "MLmodel").is_file():
            from modelyard.registry._mlflow import read_mlflow_model

            imported = read_mlflow_model(p, options=options)
            chosen, artifact = imported.flavor, imported.artifact
            model = imported.model
            if data is None and imported.input_example is not None:
                example = imported.input_example
            else:
                example = None
            hint = imported.signature if data is None else None
            tags = {**imported.tags, **(tags or {})}
        elif flavor in ("auto", "transformers") and is_text_model_folder(p):
            chosen = get_flavor("transformers")
            model = load_text_model(p)
            artifact = chosen.dump(model)
            example, hint = input_example, None
        else:
            if p.is_dir():
                raise InvalidInputError(
                    f"{str(p)!r} is a folder without an MLmodel file; give a model file or an "
                    "MLflow model directory."
                )
            chosen = (
                flavor_for_file(p, trust_pickle=trust_pickle)
                if flavor == "auto"
                else get_flavor(flavor)
            )
            self._require_trust(chosen, trust_pickle)
            artifact = chosen.read_file(p, options)
            model, example, hint = None, None, None
        prepared = prepare_version(
            chosen,
            artifact,
            name=name,
            model=model,
            data=data,
            target=target,
            input_example=example,
            convert=convert,
            options=options,
            source=source or str(p.resolve()),
            lineage=self.lineage,
            signature_hint=hint,
            truncate=truncate,
            optimize=optimize,
        )
        return self._commit(
            name, prepared, metrics=metrics, params=params, tags=tags,
            description=description, run=run,
        )  # fmt: skip

    def _commit(
        self,
        name: str,
        prepared: PreparedVersion,
        *,
        metrics: dict[str, Any] | None,
        params: dict[str, Any] | None,
        tags: dict[str, Any] | None,
        description: str | None,
        run: ActiveRun | str | None,
    ) -> ModelVersion:
        clean_m = clean_metrics(metrics)
        clean_p = clean_strings("param", params)
        clean_t = clean_strings("tag", tags)
        run_id = run.id if isinstance(run, ActiveRun) else run
        if run_id is not None:
            self.get_run(run_id)
        with self.db.read():
            pass  # fail on an unreachable database before any blob is written
        created: list[str] = []
        try:
            file_rows = []
            for f in prepared.files:
                digest, new = self.artifacts.put(f.data)
                if new:
                    created.append(digest)
                file_rows.append(
                    {"name": f.name, "role": f.role, "sha256": digest, "size_bytes": len(f.data)}
                )
            now = datetime.now(UTC)
            with self.db.write() as conn:
                model_id = _ensure_model(conn, name, now)
                number = conn.execute(
                    sa.update(models)
                    .where(models.c.id == model_id)
                    .values(latest_version=models.c.latest_version + 1, updated_at=now)
                    .returning(models.c.latest_version)
                ).scalar_one()
                version_id = conn.execute(
                    sa.insert(model_versions)
                    .values(
                        model_id=model_id,
                        version=number,
                        flavor=prepared.flavor,
                        untrusted=prepared.untrusted,
                        description=description,
                        signature=_builtins(prepared.signature),
                        input_example=prepared.input_example,
                        flavor_meta=prepared.flavor_meta,
                        metrics=clean_m,
                        params=clean_p,
                        lineage=_builtins(prepared.lineage),
                        run_id=run_id,
                        created_by=self.identity,
                        created_at=now,
                    )
                    .returning(model_versions.c.id)
                ).scalar_one()
                conn.execute(
                    sa.insert(version_files), [{"version_id": version_id, **r} for r in file_rows]
                )
                if clean_t:
                    conn.execute(
                        sa.insert(version_tags),
                        [
                            {"version_id": version_id, "key": k, "value": v}
                            for k, v in clean_t.items()
                        ],
                    )
                return _rows.fetch_version(conn, ModelRef(name, version=number))
        except BaseException:
            self._discard(created)
            raise

    def _discard(self, digests: Iterable[str]) -> None:
        """Remove blobs this call created, unless a committed version references them."""
        for digest in digests:
            try:
                with self.db.read() as conn:
                    used = conn.execute(
                        sa.select(version_files.c.sha256)
                        .where(version_files.c.sha256 == digest)
                        .limit(1)
                    ).first()
            except ModelyardError:
                used = None
            if used is None:
                try:
                    self.artifacts.delete(digest)
                except ModelyardError as exc:  # the store is down: keep the first error
                    logger.warning("Could not remove unreferenced blob %s: %s", digest, exc)

    # -- reading -----------------------------------------------------------------------------

    def get_version(self, ref: str | ModelRef) -> ModelVersion:
        parsed = parse_ref(ref)
        with self.db.read() as conn:
            return _rows.fetch_version(conn, parsed)

    def get_model(self, name: str) -> RegisteredModel:
        with self.db.read() as conn:
            return _rows.registered_model(conn, _rows.model_row(conn, name))

    def list_models(self, *, prefix: str | None = None, page: int = 1, page_size: int = 50) -> Page:
        _check_page(page, page_size)
        query = sa.select(models)
        if prefix:
            query = query.where(models.c.name.startswith(prefix, autoescape=True))
        with self.db.read() as conn:
            total, rows = _page_rows(
                conn, query, (models.c.updated_at.desc(), models.c.id.desc()), page, page_size
            )
            items = tuple(_rows.registered_model(conn, row) for row in rows)
        return Page(items=items, page=page, page_size=page_size, total=total)

    def search_versions(
        self,
        *,
        name: str | None = None,
        name_prefix: str | None = None,
        tag: str | tuple[str, str] | None = None,
        alias: str | None = None,
        flavor: str | None = None,
        include_archived: bool = True,
        page: int = 1,
        page_size: int = 50,
    ) -> Page:
        """Versions matching every filter given, newest first, one page at a time.

        ``tag`` is ``"key"`` (has the tag) or ``"key=value"`` (or a ``(key, value)`` pair).
        """
        _check_page(page, page_size)
        query = sa.select(*_rows.VERSION_COLUMNS).join(
            models, models.c.id == model_versions.c.model_id
        )
        if name is not None:
            query = query.where(models.c.name == name)
        if name_prefix:
            query = query.where(models.c.name.startswith(name_prefix, autoescape=True))
        if flavor is not None:
            query = query.where(model_versions.c.flavor == flavor)
        if not include_archived:
            query = query.where(model_versions.c.archived.is_(False))
        if tag is not None:
            key, value = tag if isinstance(tag, tuple) else _split_tag(tag)
            match = sa.select(version_tags.c.version_id).where(version_tags.c.key == key)
            if value is not None:
                match = match.where(version_tags.c.value == value)
            query = query.where(model_versions.c.id.in_(match))
        if alias is not None:
            query = query.join(
                aliases,
                sa.and_(
                    aliases.c.model_id == model_versions.c.model_id,
                    aliases.c.version == model_versions.c.version,
                    aliases.c.alias == alias,
                ),
            )
        with self.db.read() as conn:
            order = (model_versions.c.created_at.desc(), model_versions.c.id.desc())
            total, rows = _page_rows(conn, query, order, page, page_size)
            items = tuple(_rows.versions_from_rows(conn, rows))
        return Page(items=items, page=page, page_size=page_size, total=total)

    # -- loading -----------------------------------------------------------------------------

    def load(
        self,
        ref: str | ModelRef,
        *,
        runtime: Runtime = "native",
        trust_pickle: bool = False,
        trusted_types: Sequence[str] = (),
        tree_kernel: bool = False,
    ) -> LoadedModel:
        """Load a version after re-checking every file's sha256.

        ``runtime="onnx"`` loads the ONNX twin (``"auto"``: the twin when there is one).
        ``runtime="quantized"`` loads a text model's int8 twin; ``"auto"`` loads it when the
        version kept one (it passed its parity check), and ``"native"`` or ``"onnx"`` the float32
        graph (a text model's own files are ONNX).
        ``tree_kernel`` runs an ONNX tree ensemble on modelyard's compiled kernel when it applies
        (see ``flavors._onnx_trees``); callers pass ``settings.onnx.uses_tree_kernel(...)``.
        """
        from modelyard.registry.loaded import loaded_model

        version = self.get_version(ref)
        if version.untrusted and not trust_pickle:
            raise UntrustedTypeError(
                f"Model {version.ref} was registered as a pickle; loading it runs arbitrary "
                "code: pass trust_pickle=True (--trust-pickle) only if you trust its author."
            )
        role, flavor_name, meta = self._runtime(version, runtime)
        # the int8 twin holds only its graph: the tokenizer and the rest are the model's
        roles = ("model", "quantized") if role == "quantized" else (role,)
        files = {
            f.name.removeprefix(f"{f.role}/"): self.artifacts.get(
                f.sha256, label=f"File {f.name!r} of model {version.ref}"
            )
            for r in roles
            for f in version.files
            if f.role == r
        }
        flavor = get_flavor(flavor_name)
        options = self._options(trusted_types, trust_pickle, tree_kernel=tree_kernel)
        predictor = flavor.load(Artifact(files=files, meta=meta), options)
        if flavor_name in _ONNX_MODELS:
            return loaded_model(version, predictor, "onnx")
        return loaded_model(version, predictor, role if role != "model" else "native")

    def load_weights(self, ref: str | ModelRef, module: _ModuleT) -> _ModuleT:
        """Load the weights a PyTorch version kept (``model.safetensors``, checked against its
        sha256) into ``module``, which you construct: an instance of the class the version's
        ``flavor_meta["model"]["import_path"]`` names, built as it was when registered (modelyard
        never imports that path). Strict: every tensor must fit. Returns ``module``."""
        from modelyard.flavors import load_weights

        version = self.get_version(ref)
        stored = version.file("weights")
        if stored is None:
            raise InvalidSpecError(
                f"Model {version.ref} has no weights file (it is a {version.flavor} model); "
                "only PyTorch versions keep one: load it with load() instead."
            )
        data = self.artifacts.get(stored.sha256, label=f"File {stored.name!r} of {version.ref}")
        import_path = str(version.flavor_meta.get("model", {}).get("import_path", "its class"))
        return load_weights(data, module, source=f"model {version.ref}", import_path=import_path)

    def verify(self, ref: str | ModelRef) -> list[FileCheck]:
        """Re-hash every file of a version; report each file rather than stop at the first. The
        check is recorded (``checks``) with this registry's identity as its actor."""
        version = self.get_version(ref)
        checks = []
        for f in version.files:
            try:
                self.artifacts.get(f.sha256, label=f"File {f.name!r} of model {version.ref}")
            except ModelyardError as exc:
                checks.append(FileCheck(f.name, f.role, f.sha256, ok=False, reason=str(exc)))
            else:
                checks.append(FileCheck(f.name, f.role, f.sha256, ok=True, reason=None))
        failed = [c.name for c in checks if not c.ok]
        with self.db.write() as conn:
            model = _rows.model_row(conn, version.name)
            _checks.record_check(
                conn, model.id, version.version, actor=self.identity, failed=failed
            )
        return checks

    def checks(self, ref: str | ModelRef, *, limit: int = 10) -> list[_checks.VersionCheck]:
        """Who verified a version's files when, and what failed; newest first."""
        parsed = parse_ref(ref)
        with self.db.read() as conn:  # the version's row only, not its files, tags and aliases
            model = _rows.model_row(conn, parsed.name)
            number = _rows.resolve_version_number(conn, parsed, model)
            _rows.version_row(conn, model, number)  # an unknown version is an error, not []
            return _checks.list_checks(conn, model.id, number, limit=limit)

    def read_file(self, ref: str | ModelRef, role: str) -> bytes:
        """The verified bytes of a version's file with ``role`` (``profile``, ``sample``...)."""
        version = self.get_version(ref)
        stored = version.file(role)
        if stored is None:
            raise InvalidSpecError(f"Model {version.ref} has no {role} file.")
        return self.artifacts.get(stored.sha256, label=f"File {stored.name!r} of {version.ref}")

    # -- aliases -----------------------------------------------------------------------------

    def set_alias(
        self, ref: str | ModelRef, alias: str, *, reason: str | None = None
    ) -> AliasEvent:
        """Point ``alias`` at the version ``ref`` names; the move is recorded."""
        parsed = parse_ref(ref)
        check_alias(alias)
        with self.db.write() as conn:
            model = _rows.model_row(conn, parsed.name, lock=True)
            number = _rows.resolve_version_number(conn, parsed, model)
            return _aliases.move_alias(
                conn, model, alias, number, actor=self.identity, reason=reason
            )

    def delete_alias(self, name: str, alias: str, *, reason: str | None = None) -> AliasEvent:
        with self.db.write() as conn:
            model = _rows.model_row(conn, name, lock=True)
            return _aliases.move_alias(conn, model, alias, None, actor=self.identity, reason=reason)

    def rollback(self, name: str, alias: str, *, reason: str | None = None) -> AliasEvent:
        """Move ``alias`` back to the version it pointed at before its last move."""
        check_alias(alias)
        with self.db.write() as conn:
            model = _rows.model_row(conn, name, lock=True)
            return _aliases.rollback_alias(conn, model, alias, actor=self.identity, reason=reason)

    def rollback_target(self, name: str, alias: str) -> tuple[int, int]:
        """``(current, earlier)``: where ``alias`` points and where ``rollback`` would move it
        now; nothing changes (a confirmation shows it before the rollback)."""
        check_alias(alias)
        with self.db.read() as conn:
            return _aliases.rollback_target(conn, _rows.model_row(conn, name), alias)

    def history(self, name: str, *, alias: str | None = None, limit: int = 100) -> list[AliasEvent]:
        """Alias moves of ``name``, newest first."""
        with self.db.read() as conn:
            return _aliases.history(conn, _rows.model_row(conn, name), alias, limit=limit)

    # -- the few mutable fields ----------------------------------------------------------------

    def archive(self, ref: str | ModelRef, *, archived: bool = True) -> ModelVersion:
        """Archive (or unarchive) a version; a version an alias points to cannot be archived."""
        parsed = parse_ref(ref)
        with self.db.write() as conn:
            model = _rows.model_row(conn, parsed.name, lock=True)
            number = _rows.resolve_version_number(conn, parsed, model)
            _rows.version_row(conn, model, number)
            if archived:
                held = sorted(
                    conn.execute(
                        sa.select(aliases.c.alias).where(
                            aliases.c.model_id == model.id, aliases.c.version == number
                        )
                    ).scalars()
                )
                if held:
                    raise ConflictError(
                        f"Version {model.name}/{number} is the target of alias "
                        f"{', '.join(map(repr, held))} and cannot be archived; move the alias "
                        "first."
                    )
            conn.execute(
                sa.update(model_versions)
                .where(model_versions.c.model_id == model.id, model_versions.c.version == number)
                .values(archived=archived)
            )
            return _rows.fetch_version(conn, ModelRef(model.name, version=number))

    def set_tags(self, ref: str | ModelRef, tags: dict[str, Any]) -> ModelVersion:
        clean = clean_strings("tag", tags)
        return self._update_version(ref, tags=clean)

    def delete_tag(self, ref: str | ModelRef, key: str) -> ModelVersion:
        return self._update_version(ref, drop_tag=key)

    def set_description(self, ref: str | ModelRef, description: str | None) -> ModelVersion:
        return self._update_version(ref, description=description, set_description=True)

    def _update_version(
        self,
        ref: str | ModelRef,
        *,
        tags: dict[str, str] | None = None,
        drop_tag: str | None = None,
        description: str | None = None,
        set_description: bool = False,
    ) -> ModelVersion:
        parsed = parse_ref(ref)
        with self.db.write() as conn:
            model = _rows.model_row(conn, parsed.name, lock=True)
            row = _rows.version_row(conn, model, _rows.resolve_version_number(conn, parsed, model))
            for key, value in (tags or {}).items():
                conn.execute(
                    sa.delete(version_tags).where(
                        version_tags.c.version_id == row.id, version_tags.c.key == key
                    )
                )
                conn.execute(
                    sa.insert(version_tags).values(version_id=row.id, key=key, value=value)
                )
            if drop_tag is not None:
                conn.execute(
                    sa.delete(version_tags).where(
                        version_tags.c.version_id == row.id, version_tags.c.key == drop_tag
                    )
                )
            if set_description:
                conn.execute(
                    sa.update(model_versions)
                    .where(model_versions.c.id == row.id)
                    .values(description=description)
                )
            return _rows.fetch_version(conn, ModelRef(model.name, version=row.version))

    # -- runs --------------------------------------------------------------------------------

    def start_run(
        self,
        name: str | None = None,
        *,
        params: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
        mirrors: Sequence[RunMirror] = (),
    ) -> ActiveRun:
        """Start recording a run; use it as a context manager to end it. ``mirrors`` receive
        everything it logs too (``modelyard.start_run(mirror="mlflow")`` builds one)."""
        return start_run(
            self.db, name=name, user=self.identity, params=params, tags=tags, mirrors=mirrors
        )

    def get_run(self, run_id: str) -> Run:
        with self.db.read() as conn:
            return _rows.fetch_run(conn, run_id)

    def list_runs(
        self,
        *,
        kind: RunKind | None = None,
        name: str | None = None,
        page: int = 1,
        page_size: int = 50,
    ) -> Page:
        """Runs newest first; ``kind`` keeps training or pipeline runs, ``name`` those whose
        name contains it (case-insensitive)."""
        _check_page(page, page_size)
        query = runs_query(kind=kind, name=name)
        with self.db.read() as conn:
            order = (runs.c.start_time.desc(), runs.c.id)
            total, rows = _page_rows(conn, query, order, page, page_size)
            items = tuple(_rows.run_record(row) for row in rows)
        return Page(items=items, page=page, page_size=page_size, total=total)

    def run_versions(self, run_id: str, *, limit: int = 100) -> list[ModelVersion]:
        """The model versions run ``run_id`` produced, newest first (at most ``limit``)."""
        with self.db.read() as conn:
            _rows.fetch_run(conn, run_id)
            query = (
                sa.select(*_rows.VERSION_COLUMNS)
                .join(models, models.c.id == model_versions.c.model_id)
                .where(model_versions.c.run_id == run_id)
                .order_by(model_versions.c.created_at.desc(), model_versions.c.id.desc())
                .limit(limit)
            )
            return _rows.versions_from_rows(conn, conn.execute(query).all())

    # -- helpers -----------------------------------------------------------------------------

    def _options(
        self, trusted_types: Sequence[str], trust_pickle: bool, *, tree_kernel: bool = False
    ) -> LoadOptions:
        return LoadOptions(
            trusted_types=tuple(self.settings.trusted_types) + tuple(trusted_types),
            trust_pickle=trust_pickle,
            onnx_intra_op_threads=self.settings.onnx.intra_op_threads,
            onnx_inter_op_threads=self.settings.onnx.inter_op_threads,
            onnx_tree_kernel=tree_kernel,
            onnx_execution_provider=self.settings.onnx.execution_provider,
        )

    def _flavor(self, name: str, *, model: object, trust_pickle: bool) -> Flavor:
        chosen = (
            flavor_for_object(model, trust_pickle=trust_pickle)
            if name == "auto"
            else get_flavor(name)
        )
        self._require_trust(chosen, trust_pickle)
        return chosen

    @staticmethod
    def _require_trust(flavor: Flavor, trust_pickle: bool) -> None:
        if flavor.name == "pickle" and not trust_pickle:
            raise UntrustedTypeError(
                "Pickled models run arbitrary code when loaded; pass trust_pickle=True "
                "(--trust-pickle) if you trust the file, or save the model with skops or ONNX."
            )

    @staticmethod
    def _runtime(version: ModelVersion, runtime: Runtime) -> tuple[str, str, dict[str, Any]]:
        has_quantized = version.file("quantized") is not None
        if runtime == "quantized" and not has_quantized:
            raise InvalidSpecError(
                f"Model {version.ref} has no int8 twin; register it with optimize='quantize' "
                "(--optimize quantize), or load it with runtime='native'."
            )
        if runtime == "quantized" or (runtime == "auto" and has_quantized):
            return "quantized", version.flavor, dict(version.flavor_meta.get("model", {}))
        if version.flavor == "transformers":
            return "model", version.flavor, dict(version.flavor_meta.get("model", {}))
        has_onnx = version.file("onnx") is not None and "onnx" in version.flavor_meta
        if version.flavor in _ONNX_MODELS and runtime in ("auto", "native", "onnx"):
            return "model", version.flavor, dict(version.flavor_meta.get("model", {}))
        if runtime == "onnx" and not has_onnx:
            raise InvalidSpecError(
                f"Model {version.ref} has no ONNX artifact; register it with convert='onnx' "
                "(--convert onnx) or load it with runtime='native'."
            )
        if runtime not in ("auto", "native", "onnx"):
            raise InvalidSpecError(
                f"Unknown runtime {runtime!r}; use 'auto', 'native', 'onnx' or 'quantized'."
            )
        if runtime == "onnx" or (runtime == "auto" and has_onnx):
            return "onnx", "onnx", dict(version.flavor_meta["onnx"])
        return "model", version.flavor, dict(version.flavor_meta.get("model", {}))


def _ensure_model(conn: Connection, name: str, now: datetime) -> int:
    """The model row's id, created when missing (safe when two writers race to create it)."""
    existing = conn.execute(sa.select(models.c.id).where(models.c.name == name)).scalar()
    if existing is not None:
        return int(existing)
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(
            pg_insert(models)
            .values(name=name, created_at=now, updated_at=now, latest_version=0)
            .on_conflict_do_nothing(index_elements=["name"])
        )
    else:
        conn.execute(
            sa.insert(models).values(name=name, created_at=now, updated_at=now, latest_version=0)
        )
    return int(conn.execute(sa.select(models.c.id).where(models.c.name == name)).scalar_one())


def _builtins(value: Any) -> Any:
    return msgspec.to_builtins(value) if value is not None else None


def _split_tag(text: str) -> tuple[str, str | None]:
    key, sep, value = text.partition("=")
    return key, (value if sep else None)


def _page_rows(
    conn: Connection, query: sa.Select[Any], order: tuple[Any, ...], page: int, page_size: int
) -> tuple[int, list[Any]]:
    """The total count of ``query``'s rows and the rows of one page in ``order``."""
    total = conn.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    rows = conn.execute(
        query.order_by(*order).limit(page_size).offset((page - 1) * page_size)
    ).all()
    return int(total), list(rows)


def _check_page(page: int, page_size: int) -> None:
    if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInputError(
            f"Page {page} of size {page_size} is out of range; pages start at 1 and hold 1 to "
            f"{MAX_PAGE_SIZE} items."
        )


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
