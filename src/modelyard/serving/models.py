"""The models a server holds: loading, warm-up, the batch runner, and hot swaps.

A ``ModelSlot`` serves one model name. It follows an alias (``churn@production``) or pins a
version (``churn/3``). When the alias moves, the new version is loaded and warmed beside the old
one, then swapped in with one assignment; requests that already hold the old ``ServedModel``
finish on it, and it closes once its queue is empty. A failed load leaves the old one serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from modelyard.core.refs import ModelRef
from modelyard.errors import (
    BatchTimeoutError,
    InvalidSpecError,
    ModelyardError,
    NotFoundError,
    NotReadyError,
    VersionNotFoundError,
)
from modelyard.flavors import TextPredictor, Tokens, predict_in_groups
from modelyard.serving._classification import labels_of
from modelyard.serving.batching import AdaptiveBatcher, BatchResult, Reply, length_groups
from modelyard.serving.codecs import datatype_for, datatype_of, shown
from modelyard.serving.features import EntityValidator, FeatureJoin
from modelyard.serving.tokenizing import TokenizerThread
from modelyard.serving.validation import RequestValidator, Rows

if TYPE_CHECKING:
    from modelyard.core.types import Signature
    from modelyard.registry import Registry
    from modelyard.registry.loaded import LoadedModel
    from modelyard.serving.deployments import DeploymentRouter
    from modelyard.serving.features import FeatureSource, FeatureSourceFactory
    from modelyard.settings import ServingSettings

logger = logging.getLogger(__name__)

Array = npt.NDArray[Any]
WARM_UP_TIMEOUT_S = 60.0
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class ServedModel:
    """One loaded version: its validator, its batcher and the function that runs a batch.

    A text model (its predictor a ``TextPredictor``) tokenizes each request in a thread of its
    own (``TokenizerThread``), neither the event loop nor the model's thread, so that the next
    requests' texts are tokenized while the model computes; the request's ``Tokens`` travel
    with its rows into the batcher, which caps batches by padded tokens as well as rows.
    Tokenizing is per request, before batching: a text that cannot be tokenized fails its own
    request only.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        settings: ServingSettings,
        *,
        on_batch: Callable[[int, float, float], None] | None = None,
        on_tokenize: Callable[[float], None] | None = None,
        on_close: Callable[[], None] | None = None,
        features: FeatureSource | None = None,
        on_fetch: Callable[[float], None] | None = None,
    ) -> None:
        signature = loaded.version.signature
        if signature is None:
            raise NotReadyError(
                f"Model {loaded.version.ref} has no signature; register it with data= or an "
                "input example so that the server can validate requests."
            )
        self.loaded = loaded
        self.name = loaded.version.name
        self.version = str(loaded.version.version)
        self.signature = signature
        self.validator = RequestValidator(signature, model=self.name)
        #: With online features (``serving.features``): requests carry the entity keys, which
        #: ``validator`` checks; the batcher fetches the features and checks them against the
        #: signature (``features.validator``).
        self.features: FeatureJoin | None = None
        if features is not None:
            self.features = FeatureJoin(features, self.validator, on_fetch=on_fetch)
            self.validator = EntityValidator(features.entity_keys, model=self.name)
        self.outputs = ("predict", "predict_proba") if loaded.predictor.has_proba else ("predict",)
        #: The class of each ``predict_proba`` column as text (the labels of Triton's
        #: classification extension), or ``None``.
        self.class_labels = labels_of(loaded.classes) if loaded.predictor.has_proba else None
        #: The numpy type each numeric output is answered in: the signature's, which the model
        #: metadata states, whatever the runtime computes in (the ONNX twin and the tree kernel
        #: give float32 probabilities, a native XGBoost model float32 too).
        self._output_types = _output_types(signature)
        #: Prometheus label children by route, protocol and the name called (a deployment's
        #: or the model's), cached by the HTTP edge.
        self.metric_children: dict[tuple[str, str, str], Any] = {}
        #: The prediction log's lane of each kind of one-row answer (``ModelServer.finish``).
        self.log_lanes: dict[tuple[Any, ...], Any] = {}
        self._names = signature.column_names
        self.input_names = tuple(self._names)
        #: The resident memory the process grew by while this version loaded and warmed up
        #: (``ModelHub.load`` measures it; the first version of a runtime also carries the
        #: runtime's libraries).
        self.memory_bytes = 0
        self._on_close = on_close
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"model-{self.name}")
        predictor = loaded.predictor
        #: The predictor when it takes text (tokenize, then predict_tokens), else ``None``.
        self.text: TextPredictor | None = None
        self._tokenizer: TokenizerThread | None = None
        if isinstance(predictor, TextPredictor):
            if predictor.text_input not in self._names:
                raise NotReadyError(
                    f"Model {loaded.version.ref} reads text from {predictor.text_input!r}, which "
                    f"its signature lacks (inputs: {', '.join(self._names)}); register it again."
                )
            self.text = predictor
            self._tokenizer = TokenizerThread(
                predictor, self._names.index(predictor.text_input), model=self.name,
                on_tokenize=on_tokenize,
            )  # fmt: skip
        self.batcher = AdaptiveBatcher(
            self.run_batch,
            executor=self._executor,
            max_batch_size=settings.max_batch_size,
            max_batch_delay_ms=settings.max_batch_delay_ms,
            max_queue=settings.max_queue,
            max_batch_tokens=settings.max_batch_tokens if self.text is not None else None,
            on_batch=on_batch,
            prepare=self.features.prepare if self.features is not None else None,
        )
        if self.features is not None and self.text is not None:
            raise NotReadyError(
                f"Model {loaded.version.ref} is a text model; online features serve tabular "
                "models only."
            )
        layout = getattr(loaded.predictor, "layout", None)
        #: Whether validated rows go to the model as the float matrix, uncoerced: a tensor model,
        #: or the ONNX twin of a numeric model; native models get the DataFrame (or array) they
        #: were trained on.
        feature_rows = self.features.validator if self.features is not None else self.validator
        self.matrix_direct = signature.kind == "tensor" or (
            loaded.runtime == "onnx" and layout == "tensor" and feature_rows.numeric
        )

    def run_batch(self, rows: Rows, wanted: tuple[str, ...]) -> dict[str, Array]:
        if self.text is not None and rows.tokens is not None:
            return self._declared(self._run_tokens(self.text, rows.tokens, wanted))
        X = self._model_input(rows)
        predictor = self.loaded.predictor
        out: dict[str, Array] = {}
        both = getattr(predictor, "predict_with_proba", None)
        if both is not None and "predict_proba" in wanted and "predict" in wanted:
            out["predict"], out["predict_proba"] = both(X)
        else:
            if "predict_proba" in wanted:
                out["predict_proba"] = predictor.predict_proba(X)
            if "predict" in wanted:
                out["predict"] = predictor.predict(X)
        return self._declared(out)

    def _declared(self, out: dict[str, Array]) -> dict[str, Array]:
        for name, values in out.items():
            target = self._output_types.get(name)
            if target is not None and values.dtype != target:
                out[name] = _as_declared(values, target)
        return out

    @staticmethod
    def _run_tokens(
        text: TextPredictor, tokens: Tokens, wanted: tuple[str, ...]
    ) -> dict[str, Array]:
        """A text batch; rows of very different lengths run as sub-batches of similar length
        (each padded to its own longest row) and their answers go back in request order."""
        groups = length_groups(tokens.lengths)
        if groups is None:
            return text.predict_tokens(tokens, wanted)
        return predict_in_groups(text, tokens, groups, wanted)

    def _model_input(self, rows: Rows) -> Any:
        if self.matrix_direct and rows.matrix is not None:
            return rows.matrix
        import pandas as pd

        if rows.matrix is not None:
            frame = pd.DataFrame(rows.matrix, columns=self._names, copy=False)
        else:
            assert rows.columns is not None
            frame = pd.DataFrame(dict(zip(self._names, rows.columns, strict=True)), copy=False)
        return self.loaded.prepare(frame)

    def predict(
        self, rows: Rows, outputs: tuple[str, ...], *, timeout_s: float
    ) -> Awaitable[BatchResult]:
        """The batcher's answer for ``rows``. Not a coroutine of its own for rows that need no
        tokenizing: each level of coroutines is walked again every time a request resumes."""
        if self._tokenizer is not None and rows.tokens is None:
            return self._tokenized(rows, outputs, timeout_s)
        return self.batcher.submit(rows, outputs, timeout_s=timeout_s)

    def enqueue(
        self, rows: Rows, outputs: tuple[str, ...], *, timeout_s: float, reply: Reply
    ) -> bool:
        """``predict`` answered through ``reply`` (a callback); ``False`` when the rows need
        tokenizing first, which only ``predict`` does."""
        if self._tokenizer is not None and rows.tokens is None:
            return False
        self.batcher.enqueue(rows, outputs, timeout_s=timeout_s, reply=reply)
        return True

    async def _tokenized(
        self, rows: Rows, outputs: tuple[str, ...], timeout_s: float
    ) -> BatchResult:
        tokenizer = self._tokenizer
        assert tokenizer is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        tokenizer.in_flight += 1  # until it joins the batch queue: close() waits for it
        try:
            rows = await tokenizer.tokenized(rows)
        finally:
            tokenizer.in_flight -= 1
        timeout_s -= loop.time() - started
        if timeout_s <= 0:
            raise BatchTimeoutError("The request's texts took its whole deadline to tokenize.")
        # no await before the request joins the queue (submit's first step)
        return await self.batcher.submit(rows, outputs, timeout_s=timeout_s)

    def metadata(self) -> dict[str, Any]:
        """Open Inference Protocol model metadata, from the signature."""
        sig = self.signature
        inputs = [
            {"name": spec.name, "datatype": datatype_for(spec.dtype), "shape": list(spec.shape)}
            for spec in self.validator.signature.inputs
        ]
        outputs = [
            {"name": spec.name, "datatype": datatype_for(spec.dtype), "shape": list(spec.shape)}
            for spec in sig.outputs if spec.name in self.outputs
        ]  # fmt: skip
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": f"modelyard-{self.loaded.version.flavor}-{self.loaded.runtime}",
            "inputs": inputs,
            "outputs": outputs,
        }

    async def warm(self, timeout_s: float) -> None:
        """One inference on the version's input example through the whole path."""
        example = self.loaded.version.input_example
        if example is None:
            return
        validator = self.features.validator if self.features is not None else self.validator
        if "columns" in example:
            rows = validator.from_split(example["columns"], example["data"])
        else:
            rows = validator.from_rows(example["data"])
        if self.features is not None:
            # the example holds features, not entity keys: the model runs on it directly
            loop = asyncio.get_running_loop()
            outputs = await asyncio.wait_for(
                loop.run_in_executor(self._executor, self.run_batch, rows, self.outputs),
                timeout_s,
            )
        else:
            outputs = (await self.predict(rows, self.outputs, timeout_s=timeout_s)).outputs
        for name, values in outputs.items():
            datatype_of(np.asarray(values))
            if len(values) != rows.n:
                raise NotReadyError(f"Warm-up of {self.loaded.version.ref}: bad {name} length.")

    async def close(self) -> None:
        if self._tokenizer is not None:
            await self._tokenizer.drain()
        await self.batcher.close()
        self._executor.shutdown(wait=False)
        if self.features is not None:
            self.features.source.close()
        if self._tokenizer is not None:
            self._tokenizer.close()
        if self._on_close is not None:
            self._on_close()


def resident_bytes() -> int:
    """The process's resident memory now (Linux's ``/proc``; elsewhere its peak so far)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_BYTES
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)


def _output_types(signature: Signature) -> dict[str, np.dtype[Any]]:
    types: dict[str, np.dtype[Any]] = {}
    for spec in signature.outputs:
        if datatype_for(spec.dtype) != "BYTES":
            types[spec.name] = np.dtype(spec.dtype)
    return types


def _as_declared(values: Array, target: np.dtype[Any]) -> Array:
    """``values`` in the output's declared type where that keeps them: float32 -> float64,
    int64 labels -> the int32, uint8 or bool classes they stand for (the ONNX twin gives int64
    labels). Values the declared type would change (fractions for declared ints) are kept as
    they are, and the answer's datatype says what they are."""
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        return array
    with np.errstate(invalid="ignore", over="ignore"):  # checked below: NaN or out of range
        cast = array.astype(target)
    if target.kind == "f" and array.dtype.kind == "f":
        return cast
    return cast if np.array_equal(cast.astype(array.dtype), array) else array


class ModelSlot:
    """A served model name and the version it currently serves."""

    def __init__(self, ref: ModelRef) -> None:
        self.ref = ref
        self.current: ServedModel | None = None
        self.failed_version: int | None = None
        self.swaps = 0

    @property
    def follows_alias(self) -> bool:
        return self.ref.version is None


class ModelHub:
    """All models of one server process."""

    def __init__(
        self,
        registry: Registry,
        refs: list[ModelRef],
        settings: ServingSettings,
        *,
        on_batch: Callable[[str, str, int, float, float], None] | None = None,
        on_tokenize: Callable[[str, float], None] | None = None,
        on_load: Callable[[str, str, bool, int], None] | None = None,
        on_unload: Callable[[str, str], None] | None = None,
        on_route: Callable[[str, str, float, bool], None] | None = None,
        deployments: list[str] | None = None,
        features: FeatureSourceFactory | None = None,
        on_fetch: Callable[[str, float], None] | None = None,
    ) -> None:
        """``features`` gives the online feature source of each version that declares one;
        ``on_fetch(model, seconds)`` hears of each batch's fetch."""
        names = [ref.name for ref in refs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InvalidSpecError(
                f"Model {duplicates[0]!r} is named twice; serve each model once."
            )
        self.registry = registry
        self.settings = settings
        self.slots = {ref.name: ModelSlot(ref) for ref in refs}
        self.router: DeploymentRouter | None = None
        if deployments:
            from modelyard.serving.deployments import DeploymentRouter

            clash = sorted(set(deployments) & set(self.slots))
            if clash:
                raise InvalidSpecError(
                    f"{clash[0]!r} is both a model and a deployment here; serve it once."
                )
            self.router = DeploymentRouter(registry, deployments, self, on_route=on_route)
        self._on_batch = on_batch
        self._on_tokenize = on_tokenize
        self._on_load = on_load
        self._on_unload = on_unload
        self._features = features
        self._on_fetch = on_fetch
        self._watch: asyncio.Task[None] | None = None
        self.ready = False
        #: Models loaded before the server answered, whose tree kernel waits for ``serving``.
        self._kernels_due: list[LoadedModel] | None = []

    def get(self, name: str, version: str | None = None) -> ServedModel:
        slot = self.slots.get(name)
        if slot is None and self.router is not None and name in self.router.slots:
            stable = self.router.slots[name].stable
            if version is not None and version != stable.version:
                raise VersionNotFoundError(
                    f"Deployment {name!r} serves version {stable.version} on its stable route."
                )
            return stable
        if slot is None:
            names = [*self.slots, *(self.router.names if self.router else [])]
            served = ", ".join(sorted(names)) or "none"
            # shown: a made-up name may be any length, and is not echoed whole
            raise NotFoundError(f"Model {shown(name)} is not served here (serving: {served}).")
        current = slot.current
        if current is None:
            raise NotReadyError(f"Model {name!r} is still loading; retry shortly.")
        if version is not None and version != current.version:
            raise VersionNotFoundError(
                f"Model {name!r} version {version[:40]}{'...' if len(version) > 40 else ''} "
                f"is not served (serving version "
                f"{current.version})."
            )
        return current

    async def start(self) -> None:
        for slot in self.slots.values():
            slot.current = await self.load(slot.ref)
        if self.router is not None:
            await self.router.start()
        self.ready = True
        self._watch = asyncio.get_running_loop().create_task(self._follow())

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for slot in self.slots.values():
            if slot.current is not None:
                await slot.current.close()
        if self.router is not None:
            await self.router.close()

    async def load(self, ref: ModelRef | str) -> ServedModel:
        """Load, warm and start serving one version."""
        runtime = self.settings.runtime
        started = time.perf_counter()
        resident = resident_bytes()
        loaded = await asyncio.to_thread(
            self.registry.load, ref, runtime=runtime, trust_pickle=self.settings.trust_pickle,
            tree_kernel=self.registry.settings.onnx.uses_tree_kernel("server"),
        )  # fmt: skip
        on_batch = self._on_batch
        on_tokenize = self._on_tokenize
        on_unload = self._on_unload
        name, version = loaded.version.name, str(loaded.version.version)
        source = self._features(loaded.version) if self._features is not None else None
        on_fetch = self._on_fetch
        served = ServedModel(
            loaded,
            self.settings,
            on_batch=(
                (lambda rows, secs, cpu: on_batch(name, version, rows, secs, cpu))
                if on_batch else None
            ),
            on_tokenize=(lambda secs: on_tokenize(name, secs)) if on_tokenize else None,
            on_close=(lambda: on_unload(name, version)) if on_unload else None,
            features=source,
            on_fetch=(lambda secs: on_fetch(name, secs)) if on_fetch else None,
        )  # fmt: skip
        served.batcher.start()
        try:
            await served.warm(max(self.settings.timeout_ms / 1000, WARM_UP_TIMEOUT_S))
        except BaseException:
            await served.close()
            raise
        served.memory_bytes = max(resident_bytes() - resident, 0)
        on = f" on {loaded.provider}" if loaded.provider else ""
        logger.info(
            "serving %s (%s runtime%s) ready in %.0f ms",
            loaded.version.ref, loaded.runtime, on, (time.perf_counter() - started) * 1000,
        )  # fmt: skip
        if self._on_load is not None:
            self._on_load(name, served.version, True, served.memory_bytes)
        if self.registry.settings.onnx.swaps_in_tree_kernel:
            if self._kernels_due is None:
                _swap_in_tree_kernel(loaded)
            else:
                self._kernels_due.append(loaded)
        return served

    def serving(self) -> None:
        """The server answers: build the tree kernels of the models loaded before (importing
        numba holds the interpreter lock for a second or more, which readiness must not wait
        for); models loaded from now on build theirs at once."""
        due, self._kernels_due = self._kernels_due or [], None
        for loaded in due:
            _swap_in_tree_kernel(loaded)

    def load_failed(self, name: str, version: str) -> None:
        """Count a version that could not be loaded (the server keeps serving what it had)."""
        if self._on_load is not None:
            self._on_load(name, version, False, 0)

    async def _follow(self) -> None:
        """Poll the followed aliases; swap in a moved alias's version."""
        interval = self.settings.poll_interval_s
        while True:
            await asyncio.sleep(interval)
            for slot in self.slots.values():
                if slot.follows_alias:
                    await self._check(slot)

    async def _check(self, slot: ModelSlot) -> None:
        try:
            target = await asyncio.to_thread(self.registry.get_version, slot.ref)
        except ModelyardError as exc:
            logger.warning("cannot resolve %s: %s", slot.ref, exc)
            return
        current = slot.current
        if current is None or str(target.version) == current.version:
            return
        if slot.failed_version == target.version:
            return
        try:
            new = await self.load(f"{target.name}/{target.version}")
        except Exception as exc:
            slot.failed_version = target.version
            logger.error(
                "could not swap %s to version %s; still serving version %s: %s",
                slot.ref, target.version, current.version, exc,
            )  # fmt: skip
            self.load_failed(slot.ref.name, str(target.version))
            return
        slot.current = new
        slot.failed_version = None
        slot.swaps += 1
        logger.info("%s moved: version %s -> %s", slot.ref, current.version, new.version)
        await current.close()


def _swap_in_tree_kernel(loaded: LoadedModel) -> None:
    """Move an ONNX tree ensemble onto the compiled tree kernel in a thread of its own, while
    onnxruntime goes on answering (``onnx.tree_kernel = "auto"``). Importing numba and loading
    or compiling the kernel takes seconds, which readiness does not wait for. On a 100-tree
    HistGradientBoosting model the kernel's trees take one row in 7 us (onnxruntime's whole call:
    17 us) and 3,000 rows in 1.7 ms (13.4 ms)."""
    use = getattr(loaded.predictor, "use_tree_kernel", None)
    if use is None:
        return
    ref = loaded.version.ref

    def build() -> None:
        started = time.perf_counter()
        try:
            on = use(ref)
        except Exception:
            logger.warning("%s stays on onnxruntime: building the tree kernel failed", ref,
                           exc_info=True)  # fmt: skip
            return
        if on:
            took = (time.perf_counter() - started) * 1000
            logger.info("%s runs on the tree kernel from now (built in %.0f ms)", ref, took)
        if gc.get_freeze_count():
            # the server froze what it had loaded (ModelServer's startup) so that full
            # collections do not walk it; numba and llvmlite came after: freeze them too (wrk
            # at c=32 measured p99 46 ms before this, 7-9 ms after)
            gc.collect()
            gc.freeze()

    threading.Thread(target=build, name=f"tree kernel for {ref}", daemon=True).start()
