"""JSONata mode (``QueryLanguage: JSONata``): ``{% expr %}`` strings evaluated with
jsonata-python, with ``$states`` and the workflow variables bound.

A field value is a *template*: objects and arrays are walked, a string that is a
whole ``{% ... %}`` is an expression, any other value is a literal.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson

from nubes.workflows import intrinsics
from nubes.workflows.errors import QUERY_EVALUATION_ERROR, StatesError

if TYPE_CHECKING:
    import jsonata

_lock = threading.Lock()


def is_expression(value: Any) -> bool:
    """Whether ``value`` is a ``{% ... %}`` string."""
    if not isinstance(value, str):
        return False
    text = value.strip()
    return text.startswith("{%") and text.endswith("%}")


def _body(value: str) -> str:
    text = value.strip()
    return text[2:-2].strip()


def _random(seed: Any = None) -> float:
    return random.Random(seed).random() if seed is not None else random.random()


def _parse(text: Any) -> Any:
    if not isinstance(text, str):
        raise StatesError(QUERY_EVALUATION_ERROR, "$parse needs a JSON string")
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise StatesError(QUERY_EVALUATION_ERROR, f"$parse could not parse {text!r}") from None


#: the functions Step Functions adds to JSONata
AWS_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "partition": lambda array, size: intrinsics.FUNCTIONS["ArrayPartition"][0](array, size),
    "range": lambda start, end, step: intrinsics.FUNCTIONS["ArrayRange"][0](start, end, step),
    "hash": lambda data, algorithm: intrinsics.FUNCTIONS["Hash"][0](data, algorithm),
    "random": _random,
    "uuid": lambda: intrinsics.FUNCTIONS["UUID"][0](),
    "parse": _parse,
}


@lru_cache(maxsize=4096)
def _compile(expr: str) -> jsonata.Jsonata:
    # imported on the first JSONata expression, not with the server (~40 ms, ~6 MB)
    import jsonata

    with _lock:
        compiled = jsonata.Jsonata(expr)
        for name, fn in AWS_FUNCTIONS.items():
            compiled.register_lambda(name, fn)
        return compiled


def syntax_problem(value: str) -> str | None:
    """Why a ``{% %}`` string does not compile, or None."""
    if not is_expression(value):
        return "an expression must be enclosed in {% and %}"
    body = _body(value)
    if not body:
        return "the expression is empty"
    try:
        _compile(body)
    except Exception as exc:  # jsonata raises its own JException and others
        return str(exc)
    return None


def evaluate_expression(value: str, bindings: dict[str, Any]) -> Any:
    """Evaluate one ``{% %}`` string; failures are ``States.QueryEvaluationError``."""
    body = _body(value)
    try:
        expr = _compile(body)
        return expr.evaluate(None, bindings)
    except StatesError:
        raise
    except Exception as exc:
        raise StatesError(
            QUERY_EVALUATION_ERROR,
            f"An error occurred while evaluating the expression '{body}': {exc}",
        ) from None


def evaluate(template: Any, bindings: dict[str, Any]) -> Any:
    """Evaluate a template (object/array/literal with ``{% %}`` strings inside)."""
    if isinstance(template, dict):
        out: dict[str, Any] = {}
        for key, item in template.items():
            value = evaluate(item, bindings)
            # a JSONata expression that yields nothing leaves its field out, as on AWS
            if value is not None or not is_expression(item):
                out[key] = value
        return out
    if isinstance(template, list):
        return [evaluate(item, bindings) for item in template]
    if is_expression(template):
        return _plain(evaluate_expression(template, bindings))
    return template


def _plain(value: Any) -> Any:
    """jsonata-python may return its own sequence types; make them JSON values."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def bindings(
    variables: dict[str, Any],
    *,
    input: Any,
    context: Any,
    result: Any = None,
    error_output: Any = None,
    has_result: bool = False,
    has_error: bool = False,
) -> dict[str, Any]:
    """``$states`` plus the visible variables, as one binding map."""
    states: dict[str, Any] = {"input": input, "context": context}
    if has_result:
        states["result"] = result
    if has_error:
        states["errorOutput"] = error_output
    out = dict(variables)
    out["states"] = states
    return out
