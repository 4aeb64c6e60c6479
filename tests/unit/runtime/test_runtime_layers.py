"""Public Powertools layer ARNs resolve to installed releases."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nubes.runtime import RuntimeManager
from nubes.runtime.layers import PublicLayers, layer_dir, powertools_requirement

V2 = "arn:aws:lambda:eu-west-1:017000801446:layer:AWSLambdaPowertoolsPythonV2:79"


@pytest.mark.parametrize(
    ("arn", "requirement"),
    [
        (
            "arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:18",
            "aws-lambda-powertools[all]>=3,<4",
        ),
        (
            "arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python313-arm64:7",
            "aws-lambda-powertools[all]>=3,<4",
        ),
        (V2, "aws-lambda-powertools[all]>=2,<3"),
        ("arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV2-Arm64:3",
         "aws-lambda-powertools[all]>=2,<3"),
        ("arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPython:40",
         "aws-lambda-powertools>=1,<2"),
        ("arn:aws:lambda:us-east-1:000000000000:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:1", None),
        ("arn:aws:lambda:us-east-1:017000801446:layer:SomethingElse:1", None),
        ("arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV2", None),
        ("not an arn", None),
    ],
)  # fmt: skip
def test_requirement_for_arn(arn: str, requirement: str | None) -> None:
    assert powertools_requirement(arn) == requirement


def test_not_a_public_layer(tmp_path: Path) -> None:
    arn = "arn:aws:lambda:us-east-1:000000000000:layer:mine:1"
    assert asyncio.run(PublicLayers(tmp_path).resolve(arn)) is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_v2_layer_installs_and_shadows_the_platform_copy(
    harness: Any, new_rid: Callable[[], str]
) -> None:
    cache = harness.tmp_path / "layers"
    layers = PublicLayers(cache)
    try:
        directory = asyncio.run(layers.resolve(V2))
    except Exception as exc:  # no package index reachable from this machine
        pytest.skip(f"pip could not install the layer: {exc}")
    assert directory == layer_dir(V2, cache) == cache / "AWSLambdaPowertoolsPythonV2" / "79"
    assert (directory / "python" / "aws_lambda_powertools").is_dir()
    # a second call reuses the cache
    assert asyncio.run(layers.resolve(V2)) == directory
    code = harness.code(
        "from aws_lambda_powertools.shared.version import VERSION\n"
        "def handler(event, context):\n    return VERSION\n"
    )
    spec = harness.spec(code, layer_dirs=(directory,))

    async def scenario(m: RuntimeManager) -> Any:
        return await m.invoke(spec, b"{}", request_id=new_rid())

    version = json.loads(harness.run(scenario).payload)
    assert version.startswith("2.")
