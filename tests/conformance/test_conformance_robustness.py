"""Every implemented operation, called with inputs its model allows — including
empty, unicode, large and nested values and garbage pagination tokens — answers
with a result or an AWS error, never a crash (an exception that is not an
``AwsError`` would reach the client as a 500 InternalError).

Operations that create run first and those that delete run last, so the calls
in between find the generated names (``ex0abc``...) often enough to go past the
not-found checks. The wire layer's own handling of malformed requests is
covered by the round-trip tests beside this one.
"""

from __future__ import annotations

import asyncio
import inspect
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nubes.app import App, operation_method_name
from nubes.aws.errors import AwsError
from nubes.aws.spec import service_index
from nubes.services.registry import discover
from nubes.settings import Settings

from .shapes import VARIANTS, Generator

#: members that carry a pagination cursor (or a position in one)
_CURSOR_WORDS = ("Token", "Marker", "Next", "Position", "Cursor")
#: what a client might send as a cursor it made up or mangled
_GARBAGE = ("x", "-5", "0", "99999999999999999999999", "e30=", "bnVsbA==", "W10=", "!!!", "eyJhIjoxfQ==", "%%%")
#: seconds one call may take (long polls answer empty within their wait)
_CALL_TIMEOUT = 10.0
_FIRST = ("Create", "Put", "Register", "Publish", "Import", "Start", "Send", "Add", "Tag", "Enable", "Set", "Upload")
_LAST = ("Delete", "Remove", "Deregister", "Disable", "Untag", "Stop", "Purge", "Cancel")


def _order(name: str) -> tuple[int, str]:
    return (0 if name.startswith(_FIRST) else 2 if name.startswith(_LAST) else 1, name)


class _RequiredOnly(Generator):
    """Only the members a shape requires: past the "not both" validation of
    operations whose optional members exclude each other (DynamoDB's legacy and
    expression parameters), so the calls reach the code behind it."""

    def _structure(self, shape: Any, depth: int) -> dict[str, Any]:
        out = super()._structure(shape, depth)
        if shape.is_tagged_union:
            return out
        return {name: value for name, value in out.items() if name in shape.required_members}


class _Sparse(_RequiredOnly):
    """Every member of the input, but only the required ones of the structures
    inside it: ``Tags=[{}]``, a filter without its name, a key schema element
    without its type — what a model that requires nothing inside lets through."""

    def _structure(self, shape: Any, depth: int) -> dict[str, Any]:
        return Generator._structure(self, shape, depth) if depth == 0 else super()._structure(shape, depth)


def _cases(op: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    if op.input_shape is None:
        yield "empty", {}
        return
    yield "required", _RequiredOnly("basic").value(op.input_shape)
    yield "sparse", _Sparse("basic").value(op.input_shape)
    for variant in VARIANTS:
        params = Generator(variant).value(op.input_shape)
        if "WaitTimeSeconds" in params:
            params["WaitTimeSeconds"] = 0  # an empty long poll proves nothing more for waiting
        yield variant, params
    base = Generator("basic").value(op.input_shape)
    cursors = [k for k, v in base.items() if isinstance(v, str) and any(w in k for w in _CURSOR_WORDS)]
    for garbage in _GARBAGE if cursors else ():
        yield f"cursor={garbage!r}", {**base, **dict.fromkeys(cursors, garbage)}


@pytest.fixture(scope="module")
def running() -> Iterator[tuple[asyncio.AbstractEventLoop, App]]:
    loop = asyncio.new_event_loop()
    with tempfile.TemporaryDirectory(prefix="nubes-robust-") as data_dir:
        app = App(Settings(data_dir=Path(data_dir), tls_port=-1, lambda_keepalive=1))
        loop.run_until_complete(app.start())
        try:
            yield loop, app
        finally:
            loop.run_until_complete(app.stop())
            loop.close()


@pytest.mark.parametrize("model", sorted(discover()))
def test_no_operation_crashes_on_inputs_its_model_allows(model: str, running: tuple[asyncio.AbstractEventLoop, App]) -> None:
    loop, app = running
    provider = app.provider(model)
    index = service_index(model)
    crashes: list[str] = []
    for op_name in sorted(index.model.operation_names, key=_order):
        method = getattr(provider, operation_method_name(op_name), None)
        if method is None or not inspect.iscoroutinefunction(method):
            continue
        op = index.model.operation_model(op_name)
        for case, params in _cases(op):
            ctx = app.context(model, op_name)
            try:
                loop.run_until_complete(asyncio.wait_for(app.dispatch(ctx, params), _CALL_TIMEOUT))
            except AwsError as error:
                # 501 is the explicit "nubes does not do this" answer; other 5xx are faults
                if error.status >= 500 and error.status != 501:
                    crashes.append(f"{op_name} [{case}]: {error.code} {error.status} {error.message[:120]}")
            except TimeoutError:
                crashes.append(f"{op_name} [{case}]: no answer within {_CALL_TIMEOUT:.0f} s")
            except Exception as exc:
                where = traceback.extract_tb(exc.__traceback__)[-1]
                crashes.append(f"{op_name} [{case}]: {type(exc).__name__}: {str(exc)[:120]} at {where.filename}:{where.lineno}")
    assert crashes == []
