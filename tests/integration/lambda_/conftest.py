"""Helpers for Lambda integration tests."""

from __future__ import annotations

import io
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

    def create(files: dict[str, str], handler: str = "app.handler", **kwargs: Any) -> str:
        name: str = nubes.create_function(files, handler=handler, Role=ROLE, **kwargs)["FunctionName"]
        return name

    return create
