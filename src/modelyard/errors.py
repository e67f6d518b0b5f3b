"""The exception tree. Every failure a user can trigger is one of these.

Each class carries a protocol-neutral ``kind``; the edges (CLI, HTTP) map ``kind`` to an exit code
or a status in one table. Messages name the thing, the bad value and the next step.
"""

from __future__ import annotations

from typing import ClassVar

#: The longest exception line a message quotes; a longer one ends in "...".
_LINE_CHARS = 200


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (native libraries append stack traces), at most
    200 characters, or the exception's type when it has no message: what a one-line error quotes
    of the failure behind it."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= _LINE_CHARS else line[: _LINE_CHARS - 3] + "..."


class ModelyardError(Exception):
    """Base of every error modelyard raises on purpose."""

    kind: ClassVar[str] = "internal"


class ConfigError(ModelyardError):
    kind = "config"


class NotFoundError(ModelyardError):
    kind = "not_found"


class ModelNotFoundError(NotFoundError):
    pass


class VersionNotFoundError(NotFoundError):
    pass


class AliasNotFoundError(NotFoundError):
    pass


class RunNotFoundError(NotFoundError):
    pass


class DeploymentNotFoundError(NotFoundError):
    """No deployment has the given name."""


class PredictionLogEmptyError(NotFoundError):
    """The prediction log holds nothing for the given name and window."""


class ConflictError(ModelyardError):
    kind = "conflict"


class AlreadyExistsError(ConflictError):
    pass


class ConcurrentUpdateError(ConflictError):
    pass


class ValidationError(ModelyardError):
    kind = "invalid"


class InvalidReferenceError(ValidationError):
    """A model reference that does not parse (``NAME``, ``NAME/VERSION``, ``NAME@ALIAS``...)."""


class SignatureMismatchError(ValidationError):
    """Data whose columns, dtypes or shape do not match the model's signature."""


class InvalidInputError(ValidationError):
    """An input (file, value, argument) that cannot be used as given."""


class InvalidSpecError(ValidationError):
    """A specification (flavor name, option, rule) that is malformed or unknown."""


class UnsupportedFormatError(ValidationError):
    """A model file or object no flavor can handle."""


class IntegrityError(ModelyardError):
    """An artifact whose bytes no longer match their recorded sha256, or that is missing."""

    kind = "integrity"


class UntrustedTypeError(IntegrityError):
    """A model that would need code execution the user has not trusted (pickle, skops types)."""


class ServingError(ModelyardError):
    kind = "serving"


class ModelLoadError(ServingError):
    pass


class PredictionError(ServingError):
    """The model raised while predicting a batch."""

    kind = "model"


class NotReadyError(ServingError):
    """The model is still loading or warming up."""

    kind = "not_ready"


class UnauthorizedError(ModelyardError):
    """No valid token was given."""

    kind = "unauthorized"


class ForbiddenError(ModelyardError):
    """The token's scope does not allow this."""

    kind = "forbidden"


class OverloadedError(ServingError):
    kind = "overloaded"


class BatchTimeoutError(ServingError):
    kind = "timeout"


class PipelineError(ModelyardError):
    kind = "pipeline"


class PipelineDefinitionError(PipelineError):
    """A pipeline that cannot start as given: a cycle, a missing dependency, an unknown or
    malformed parameter, a missing input file, no pipeline in a file. Nothing was run or written
    (the CLI exits 2)."""


class StepFailedError(PipelineError):
    """A step raised (or its worker died); the run is recorded as failed.

    ``run_id`` is the failed run (``yard runs show RUN_ID``), ``steps`` the steps that failed.
    """

    def __init__(
        self, message: str, *, run_id: str | None = None, steps: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.steps = steps


class GateFailedError(PipelineError):
    pass


class StorageError(ModelyardError):
    """A metadata database or artifact store that cannot be reached or written."""

    kind = "storage"
