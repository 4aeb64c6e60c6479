"""How data moves through a state, in both query languages.

JSONPath: ``InputPath`` → ``Parameters`` → task → ``ResultSelector`` → ``ResultPath``
→ ``OutputPath`` (and ``Assign`` from the selected result).
JSONata: ``Arguments`` → task → ``Output`` and ``Assign`` (both see ``$states``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from nubes.workflows import intrinsics, jsonata_mode, jsonpath
from nubes.workflows.definition import ABSENT, JSONATA, State
from nubes.workflows.errors import RUNTIME, StatesError


def iso(ts: float) -> str:
    """Unix seconds as AWS's context timestamp (``2024-01-02T03:04:05.678Z``)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Frame:
    """What a state sees while it runs: the context object and the variables."""

    context: dict[str, Any]
    variables: dict[str, Any] = field(default_factory=dict)
    #: when set (TestState), each data-flow step records its value here
    trace: dict[str, Any] | None = None

    def note(self, step: str, value: Any) -> None:
        """Record one data-flow step for TestState's ``inspectionData``."""
        if self.trace is not None:
            self.trace[step] = value

    def scope(self, value: Any) -> jsonpath.Scope:
        """A JSONPath scope whose ``$`` is ``value``."""
        return jsonpath.Scope(value, self.context, self.variables)

    def bindings(self, input: Any, **extra: Any) -> dict[str, Any]:
        """JSONata bindings (``$states`` and the variables)."""
        return jsonata_mode.bindings(self.variables, input=input, context=self.context, **extra)


def apply_template(template: Any, scope: jsonpath.Scope) -> Any:
    """Resolve a JSONPath payload template: ``"key.$"`` fields read paths or call
    intrinsics, everything else is copied."""
    if isinstance(template, dict):
        out: dict[str, Any] = {}
        for key, value in template.items():
            if key.endswith(".$") and isinstance(value, str):
                out[key[:-2]] = dynamic(value, scope, key)
            else:
                out[key] = apply_template(value, scope)
        return out
    if isinstance(template, list):
        return [apply_template(v, scope) for v in template]
    return template


def dynamic(value: str, scope: jsonpath.Scope, key: str = "") -> Any:
    """The value of one ``.$`` field: an intrinsic call or a path (a path that finds
    nothing is ``States.Runtime``, with AWS's wording)."""
    if intrinsics.is_intrinsic(value):
        return intrinsics.evaluate(value, scope)
    try:
        return jsonpath.read(value, scope)
    except StatesError as err:
        if "No results for path" not in err.cause:
            raise
        source = scope.context if value.startswith("$$") else scope.input
        shown = orjson.dumps(source).decode()
        raise StatesError(RUNTIME, f"The JSONPath '{value}' specified for the field '{key}' "
                          f"could not be found in the input '{shown}'") from None


def select_path(path: str | None, value: Any, frame: Frame) -> Any:
    """InputPath/OutputPath: ``None`` gives ``{}``, a path selects from ``value``."""
    if path is None:
        return {}
    if path == "$":
        return value
    return jsonpath.read(path, frame.scope(value))


def state_input(state: State, raw_input: Any, frame: Frame) -> Any:
    """The value a state works on: JSONPath ``InputPath`` + ``Parameters`` or
    JSONata ``Arguments`` (``Parameters`` in Pass/Map is applied by the caller)."""
    if state.query_language == JSONATA:
        if state.arguments is ABSENT:
            return raw_input
        value = jsonata_mode.evaluate(state.arguments, frame.bindings(raw_input))
        frame.note("afterArguments", value)
        return value
    value = select_path(state.input_path, raw_input, frame)
    frame.note("afterInputPath", value)
    if state.parameters is not ABSENT:
        value = apply_template(state.parameters, frame.scope(value))
        frame.note("afterParameters", value)
    return value


def finish(state: State, raw_input: Any, result: Any, frame: Frame) -> Any:
    """A state's output from its raw input and result; applies ``Assign``."""
    if state.query_language == JSONATA:
        frame.note("result", result)
        bindings = frame.bindings(raw_input, result=result, has_result=True)
        output = result
        if state.output is not ABSENT:
            output = jsonata_mode.evaluate(state.output, bindings)
        if state.assign is not ABSENT:
            assign(state.assign, bindings, frame, jsonata=True)
        return output
    frame.note("result", result)
    if state.result_selector is not ABSENT:
        result = apply_template(state.result_selector, frame.scope(result))
        frame.note("afterResultSelector", result)
    if state.assign is not ABSENT:
        assign(state.assign, frame.scope(result), frame, jsonata=False)
    combined = jsonpath.assign_result(raw_input, state.result_path, result)
    frame.note("afterResultPath", combined)
    return select_path(state.output_path, combined, frame)


def finish_error(
    catcher_result_path: str | None,
    catcher_output: Any,
    catcher_assign: Any,
    state: State,
    raw_input: Any,
    error_output: dict[str, Any],
    frame: Frame,
) -> Any:
    """The output a Catch passes on (error object placed per ResultPath/Output)."""
    if state.query_language == JSONATA:
        bindings = frame.bindings(raw_input, error_output=error_output, has_error=True)
        output: Any = error_output
        if catcher_output is not ABSENT:
            output = jsonata_mode.evaluate(catcher_output, bindings)
        if catcher_assign is not ABSENT:
            assign(catcher_assign, bindings, frame, jsonata=True)
        return output
    if catcher_assign is not ABSENT:
        assign(catcher_assign, frame.scope(error_output), frame, jsonata=False)
    return jsonpath.assign_result(raw_input, catcher_result_path, error_output)


def assign(template: Any, source: Any, frame: Frame, *, jsonata: bool) -> None:
    """Evaluate every ``Assign`` entry first, then set them all (entries never see
    each other's new values, as on AWS)."""
    if jsonata:
        values = jsonata_mode.evaluate(template, source)
    else:
        values = apply_template(template, source)
    if not isinstance(values, dict):
        raise StatesError(RUNTIME, "Assign must evaluate to an object")
    frame.variables.update(values)


def evaluate_field(state: State, value: Any, raw_input: Any, frame: Frame) -> Any:
    """A field that may be a JSONata expression (``TimeoutSeconds``, ``Items``...)."""
    if state.query_language == JSONATA and jsonata_mode.is_expression(value):
        return jsonata_mode.evaluate(value, frame.bindings(raw_input))
    return value


def read_path_field(state: State, key: str, raw_input: Any, frame: Frame) -> Any:
    """The value of ``<key>`` or ``<key>Path`` (JSONPath) / a JSONata expression;
    ``ABSENT`` when neither is given."""
    if key in state.raw:
        return evaluate_field(state, state.raw[key], raw_input, frame)
    path = state.raw.get(key + "Path")
    if path is None:
        return ABSENT
    if intrinsics.is_intrinsic(path):  # ErrorPath/CausePath may call intrinsics
        return intrinsics.evaluate(path, frame.scope(raw_input))
    return jsonpath.read(path, frame.scope(raw_input))
