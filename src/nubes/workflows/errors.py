"""Errors of the States Language: runtime errors inside an execution and
definition problems found before one starts."""

from __future__ import annotations

from dataclasses import dataclass


class StatesError(Exception):
    """An error raised inside an execution, matched by Retry/Catch ``ErrorEquals``.

    ``error`` is the name (``States.TaskFailed``, a Lambda's ``errorType``, ...) and
    ``cause`` the human/JSON text AWS puts in the ``Cause`` field.
    """

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause
        #: the cause already names the state it happened in (set once, innermost state)
        self.located = False


# The error names AWS defines; kept as constants so a typo is a NameError.
ALL = "States.ALL"
TASK_FAILED = "States.TaskFailed"
TIMEOUT = "States.Timeout"
HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"
DATA_LIMIT_EXCEEDED = "States.DataLimitExceeded"
RUNTIME = "States.Runtime"
PERMISSIONS = "States.Permissions"
RESULT_PATH_MATCH_FAILURE = "States.ResultPathMatchFailure"
PARAMETER_PATH_FAILURE = "States.ParameterPathFailure"
QUERY_EVALUATION_ERROR = "States.QueryEvaluationError"
BRANCH_FAILED = "States.BranchFailed"
NO_CHOICE_MATCHED = "States.NoChoiceMatched"
INTRINSIC_FAILURE = "States.IntrinsicFailure"
EXCEED_TOLERATED_FAILURE = "States.ExceedToleratedFailureThreshold"
ITEM_READER_FAILED = "States.ItemReaderFailed"
RESULT_WRITER_FAILED = "States.ResultWriterFailed"

#: errors ``States.ALL`` does not catch or retry (AWS: terminal for the execution)
NOT_MATCHED_BY_ALL = frozenset({DATA_LIMIT_EXCEEDED, RUNTIME})


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a definition, as ValidateStateMachineDefinition reports it."""

    code: str
    message: str
    location: str | None = None
    severity: str = "ERROR"

    def render(self) -> str:
        """``CODE: message at /location`` — the piece AWS joins into its error text."""
        text = f"{self.code}: {self.message}"
        return f"{text} at {self.location}" if self.location is not None else text


class InvalidDefinition(Exception):
    """A definition AWS would refuse; carries every diagnostic found."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """AWS's text: ``Invalid State Machine Definition: 'A, B'``."""
        joined = ", ".join(d.render() for d in self.diagnostics)
        return f"Invalid State Machine Definition: '{joined}'"
