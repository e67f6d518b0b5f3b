"""Tokenizing a text model's requests in a thread of its own, before they are batched.

Neither the event loop nor the model's thread tokenizes: the next requests' texts are tokenized
while the model computes. Requests that arrive while the thread is busy are tokenized together
in its next run (one call, one handover of the GIL and one wake-up of the loop for all of them,
not one per request). Tokenizing is per request all the same: when a run's texts fail together,
each request is tokenized alone, so that a text that cannot be tokenized fails only its own
request, with an error that names its row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from modelyard.errors import (
    InvalidInputError,
    ModelyardError,
    OverloadedError,
    PredictionError,
    first_line,
)
from modelyard.flavors import TextPredictor, Tokens
from modelyard.serving.codecs import json_shown
from modelyard.serving.validation import Rows

logger = logging.getLogger(__name__)

#: How often ``drain`` looks whether the requests being tokenized have reached the batcher.
_DRAIN_POLL_S = 0.001
_Outcome = tuple[Tokens, float] | ModelyardError


@dataclass(slots=True)
class _Job:
    rows: Rows
    future: asyncio.Future[tuple[Tokens, float]]


class TokenizerThread:
    """Tokenizes the text column (``column``) of a text model's requests for ``ServedModel``;
    ``on_tokenize`` gets the seconds each request's tokenizing took (its run's)."""

    def __init__(
        self,
        predictor: TextPredictor,
        column: int,
        *,
        model: str,
        on_tokenize: Callable[[float], None] | None = None,
    ) -> None:
        self.predictor = predictor
        self._column = column
        self._on_tokenize = on_tokenize
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"tokenize-{model}")
        self._jobs: list[_Job] = []
        self._running = False
        self._closed = False
        #: Requests between their arrival here and their batch queue (``ServedModel.predict``
        #: counts them; ``drain`` waits for them before the batcher closes).
        self.in_flight = 0

    async def tokenized(self, rows: Rows) -> Rows:
        """``rows`` with the tokens of their text column."""
        if self._closed:
            raise OverloadedError("The model is shutting down; retry on another replica.")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Tokens, float]] = loop.create_future()
        self._jobs.append(_Job(rows, future))
        if not self._running:
            self._start(loop)
        tokens, seconds = await future
        if self._on_tokenize is not None:
            self._on_tokenize(seconds)
        return Rows(rows.n, rows.matrix, rows.columns, tokens)

    async def drain(self) -> None:
        """Wait until every request being tokenized has joined the batch queue (or failed)."""
        while self.in_flight > 0:
            await asyncio.sleep(_DRAIN_POLL_S)

    def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=False)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        jobs, self._jobs = self._jobs, []
        self._running = True
        self._executor.submit(self._run, loop, jobs)

    def _finish(
        self, loop: asyncio.AbstractEventLoop, jobs: list[_Job], outcomes: list[_Outcome]
    ) -> None:
        """On the loop: hand each request its tokens or error; start the next run."""
        for job, outcome in zip(jobs, outcomes, strict=True):
            if job.future.done():
                continue
            if isinstance(outcome, ModelyardError):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
        self._running = False
        if self._jobs:
            self._start(loop)

    def _run(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        """In the tokenizer thread: one run over the requests that were waiting."""
        try:
            outcomes = self._outcomes(jobs)
        except BaseException as exc:  # never leave a request waiting on a future
            logger.exception("tokenizing %d requests failed", len(jobs))
            outcomes = [PredictionError(f"Tokenizing failed: {exc}.") for _ in jobs]
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(self._finish, loop, jobs, outcomes)

    def _outcomes(self, jobs: list[_Job]) -> list[_Outcome]:
        started = time.perf_counter()
        outcomes: list[_Outcome | None] = [None] * len(jobs)
        texts: list[list[str]] = []
        for i, job in enumerate(jobs):
            try:
                texts.append(self._texts(job.rows))
            except ModelyardError as exc:
                outcomes[i] = exc
                texts.append([])
        pending = [i for i, outcome in enumerate(outcomes) if outcome is None]
        if len(pending) > 1:
            try:
                together = self._tokenize([t for i in pending for t in texts[i]])
            except ModelyardError:
                pass  # one request's text: tokenize each alone, below, to name it
            else:
                seconds = time.perf_counter() - started
                ends = np.cumsum([len(texts[i]) for i in pending]).tolist()
                for i, start, end in zip(pending, [0, *ends], ends, strict=False):
                    outcomes[i] = (together.take(slice(start, end)), seconds)
                pending = []
        for i in pending:
            try:
                outcomes[i] = (self._tokenize(texts[i]), time.perf_counter() - started)
            except ModelyardError as exc:
                outcomes[i] = exc
        return [outcome for outcome in outcomes if outcome is not None]

    def _texts(self, rows: Rows) -> list[str]:
        assert rows.columns is not None
        texts: list[str] = rows.columns[self._column].tolist()
        bad = next((i for i, value in enumerate(texts) if type(value) is not str), None)
        if bad is not None:
            raise InvalidInputError(
                f"Input '{self.predictor.text_input}' takes text, but row {bad} is "
                f"{json_shown(texts[bad])}; send one string per row."
            )
        return texts

    def _tokenize(self, texts: list[str]) -> Tokens:
        name = self.predictor.text_input
        try:
            tokens = self.predictor.tokenize(texts)
        except ModelyardError:
            raise
        except Exception as exc:
            logger.exception("tokenizing %d texts of %r failed", len(texts), name)
            raise PredictionError(
                f"The model's tokenizer failed on input '{name}': {first_line(exc)}."
            ) from None
        if tokens.n != len(texts):
            raise PredictionError(
                f"The model's tokenizer gave {tokens.n} rows for {len(texts)} texts of '{name}'."
            )
        return tokens
