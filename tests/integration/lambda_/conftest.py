"""Helpers for Lambda integration tests."""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import Callable
from typing import Any

import pytest

from nubes.testing.server import NubesServer

ROLE = "arn:aws:iam::000000000000:role/lambda"


def make_zip(files: dict[str, str]) -> bytes:
    """A zip of ``{name: source}``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buf.getvalue()


@pytest.fixture
def make_function(nubes: NubesServer) -> Callable[..., str]:
    """Create a python3.12 function from ``{file: source}``; returns its (unique) name."""
    lam = nubes.client("lambda")

    def create(files: dict[str, str], handler: str = "app.handler", **kwargs: Any) -> str:
        name = kwargs.pop("name", None) or f"fn-{uuid.uuid4().hex[:10]}"
        lam.create_function(FunctionName=name, Runtime="python3.12", Handler=handler, Role=ROLE,
                            Code={"ZipFile": make_zip(files)}, **kwargs)  # fmt: skip
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 200})
        return name

    return create
