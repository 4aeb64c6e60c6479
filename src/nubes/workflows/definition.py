"""State machine definitions as validated objects.

:func:`load` validates a definition (``validate.check``) and turns it into a
:class:`StateMachine` of :class:`State` objects the interpreter walks. Nested
machines (Parallel branches, Map item processors) are :class:`StateMachine` too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from nubes.workflows.errors import Diagnostic, InvalidDefinition

JSONPATH = "JSONPath"
JSONATA = "JSONata"

#: marks a field that is absent (``None`` is a meaningful value, e.g. ResultPath null)
ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()


@dataclass(frozen=True)
class Retrier:
    """One ``Retry`` entry."""

    error_equals: tuple[str, ...]
    interval_seconds: float = 1.0
    max_attempts: int = 3
    backoff_rate: float = 2.0
    max_delay_seconds: float | None = None
    jitter_strategy: str = "NONE"


@dataclass(frozen=True)
class Catcher:
    """One ``Catch`` entry."""

    error_equals: tuple[str, ...]
    next: str
    result_path: str | None = "$"
    output: Any = ABSENT
    assign: Any = ABSENT


@dataclass
class State:
    """One state. Fields that a state type does not use stay at their defaults;
    ``raw`` keeps the whole JSON object for type-specific details."""

    name: str
    type: str
    raw: dict[str, Any]
    query_language: str = JSONPATH
    next: str | None = None
    end: bool = False
    # JSONPath mode
    input_path: str | None = "$"
    output_path: str | None = "$"
    parameters: Any = ABSENT
    result_selector: Any = ABSENT
    result_path: str | None = "$"
    # JSONata mode
    arguments: Any = ABSENT
    output: Any = ABSENT
    # both
    assign: Any = ABSENT
    retry: tuple[Retrier, ...] = ()
    catch: tuple[Catcher, ...] = ()
    # Parallel / Map
    branches: tuple[StateMachine, ...] = ()
    processor: StateMachine | None = None

    def get(self, key: str, default: Any = ABSENT) -> Any:
        """A raw field of the state."""
        return self.raw.get(key, default)

    @property
    def terminal(self) -> bool:
        """True for states that end their machine (End, Succeed, Fail)."""
        return self.end or self.type in ("Succeed", "Fail")


@dataclass
class StateMachine:
    """A (possibly nested) machine: start state and states by name."""

    start_at: str
    states: dict[str, State]
    query_language: str = JSONPATH
    timeout_seconds: int | None = None
    comment: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def parse_json(definition: str | dict[str, Any]) -> dict[str, Any]:
    """The definition as a dict, or INVALID_JSON_DESCRIPTION as AWS reports it."""
    if isinstance(definition, dict):
        return definition
    try:
        value = orjson.loads(definition)
    except orjson.JSONDecodeError as exc:
        raise InvalidDefinition(
            [Diagnostic("INVALID_JSON_DESCRIPTION", f"Invalid JSON: {exc}", None)]
        ) from None
    if not isinstance(value, dict):
        raise InvalidDefinition(
            [Diagnostic("SCHEMA_VALIDATION_FAILED", "The definition must be a JSON object", "/")]
        )
    return value


def load(definition: str | dict[str, Any]) -> StateMachine:
    """Validate and build a state machine; raises :class:`InvalidDefinition`."""
    from nubes.workflows import validate

    raw = parse_json(definition)
    diagnostics = validate.check(raw)
    if diagnostics:
        raise InvalidDefinition(diagnostics)
    return build(raw, JSONPATH)


def build(raw: dict[str, Any], inherited_language: str) -> StateMachine:
    """Build a validated machine (no checks here: ``validate.check`` ran first)."""
    language = raw.get("QueryLanguage", inherited_language)
    states = {
        name: _build_state(name, body, language) for name, body in raw["States"].items()
    }
    return StateMachine(
        start_at=raw["StartAt"],
        states=states,
        query_language=language,
        timeout_seconds=raw.get("TimeoutSeconds"),
        comment=raw.get("Comment"),
        raw=raw,
    )


def _build_state(name: str, body: dict[str, Any], machine_language: str) -> State:
    language = body.get("QueryLanguage", machine_language)
    state = State(
        name=name,
        type=body["Type"],
        raw=body,
        query_language=language,
        next=body.get("Next"),
        end=bool(body.get("End", False)),
        input_path=body.get("InputPath", "$"),
        output_path=body.get("OutputPath", "$"),
        parameters=body.get("Parameters", ABSENT),
        result_selector=body.get("ResultSelector", ABSENT),
        result_path=body.get("ResultPath", "$"),
        arguments=body.get("Arguments", ABSENT),
        output=body.get("Output", ABSENT),
        assign=body.get("Assign", ABSENT),
        retry=tuple(_retrier(r) for r in body.get("Retry", ())),
        catch=tuple(_catcher(c) for c in body.get("Catch", ())),
    )
    if state.type == "Parallel":
        state.branches = tuple(build(b, language) for b in body["Branches"])
    elif state.type == "Map":
        processor: dict[str, Any] = body.get("ItemProcessor") or body["Iterator"]
        state.processor = build(processor, language)
    return state


def _retrier(raw: dict[str, Any]) -> Retrier:
    return Retrier(
        error_equals=tuple(raw["ErrorEquals"]),
        interval_seconds=float(raw.get("IntervalSeconds", 1)),
        max_attempts=int(raw.get("MaxAttempts", 3)),
        backoff_rate=float(raw.get("BackoffRate", 2.0)),
        max_delay_seconds=raw.get("MaxDelaySeconds"),
        jitter_strategy=raw.get("JitterStrategy", "NONE"),
    )


def _catcher(raw: dict[str, Any]) -> Catcher:
    return Catcher(
        error_equals=tuple(raw["ErrorEquals"]),
        next=raw["Next"],
        result_path=raw.get("ResultPath", "$"),
        output=raw.get("Output", ABSENT),
        assign=raw.get("Assign", ABSENT),
    )


def processor_mode(state: State) -> str:
    """``INLINE`` or ``DISTRIBUTED`` for a Map state."""
    processor = state.get("ItemProcessor", {})
    if not isinstance(processor, dict):
        return "INLINE"
    config = processor.get("ProcessorConfig", {})
    mode = config.get("Mode", "INLINE") if isinstance(config, dict) else "INLINE"
    return str(mode)
