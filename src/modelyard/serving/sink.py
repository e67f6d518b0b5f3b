"""Where predictions go after the answer is sent. The default sink discards them; the
monitoring capability provides the durable one (a bounded queue and a Parquet writer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__, 1.6 us
# per record on the event loop against 0.58 us (timeit, 11 fields). Nothing mutates a record.
@dataclass(slots=True)
class PredictionRecord:
    request_id: str
    time: float
    model: str
    version: str
    route: str
    inputs: Any
    outputs: dict[str, Any]
    latency_s: float
    #: The signature's input names, in the order of ``inputs``' columns.
    input_names: tuple[str, ...] = ()
    #: The deployment that answered (``None``: the model was served by name).
    deployment: str | None = None
    #: The HTTP status; a failed request is logged with it, ``inputs`` ``None`` and no outputs.
    status: int = 200
    #: CPU time spent on the request (its share of its batch, the event loop's time on it).
    cpu_s: float = 0.0
    #: The resident memory of the model version that answered (``ServedModel.memory_bytes``).
    memory_bytes: int = 0


class PredictionSink(Protocol):
    """Takes the server's records. A sink may also offer ``lane(...)``, a way in for one-row
    answers without a record (``modelyard.monitoring.predlog.ParquetSink.lane``)."""

    def submit(self, record: PredictionRecord) -> None:
        """Take a record without blocking (drop it if full)."""
        ...

    def close(self) -> None:
        """Flush what is held; called once at shutdown."""
        ...


class NullSink:
    """Discards every record."""

    def submit(self, record: PredictionRecord) -> None:
        return None

    def close(self) -> None:
        return None
