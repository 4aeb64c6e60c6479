"""AWS's public Powertools for AWS Lambda (Python) layers, resolved to real releases.

Templates reference layers such as
``arn:aws:lambda:us-east-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:18``.
Those ARNs belong to AWS's account, so nubes cannot download their content;
instead the matching ``aws-lambda-powertools`` release is installed once with pip
into a cached layer directory (``<cache>/<layer name>/<version>/python``), which
the function gets on ``sys.path`` like any layer's ``/opt/python``.

Which release: the layer's major line (``PythonV3`` → 3.x, ``PythonV2`` → 2.x,
``Python`` → 1.x), newest in that line. The layer version number is kept in the
cache path but not mapped to an exact release (AWS publishes that table only in
the Powertools release notes).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

#: the accounts that publish the Powertools layers (commercial regions, China)
POWERTOOLS_ACCOUNTS = frozenset({"017000801446", "498634801083"})
_PIP_TIMEOUT_S = 300.0


class LayerInstallError(RuntimeError):
    """pip could not install the release a public layer stands for."""


def powertools_requirement(layer_arn: str) -> str | None:
    """The pip requirement a public Powertools layer ARN stands for, or None if it is not one."""
    parts = layer_arn.split(":")
    if len(parts) != 8 or parts[2] != "lambda" or parts[5] != "layer":
        return None
    if parts[4] not in POWERTOOLS_ACCOUNTS or not parts[7].isdigit():
        return None
    name = parts[6]
    if name.startswith("AWSLambdaPowertoolsPythonV3"):
        return "aws-lambda-powertools[all]>=3,<4"
    if name.startswith("AWSLambdaPowertoolsPythonV2"):
        return "aws-lambda-powertools[all]>=2,<3"
    if name == "AWSLambdaPowertoolsPython":
        return "aws-lambda-powertools>=1,<2"
    return None


def layer_dir(layer_arn: str, cache_dir: Path) -> Path:
    """Where a public layer's content lives once installed."""
    parts = layer_arn.split(":")
    return cache_dir / parts[6] / parts[7]


class PublicLayers:
    """The cache of installed public layers (one per nubes process, e.g. on the provider)."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self._locks: dict[Path, asyncio.Lock] = {}

    async def resolve(self, layer_arn: str) -> Path | None:
        """Install the layer's release once; returns its directory (None: not a public layer).

        Raises :class:`LayerInstallError` when pip fails (no network, no such release).
        """
        requirement = powertools_requirement(layer_arn)
        if requirement is None:
            return None
        target = layer_dir(layer_arn, self.cache_dir)
        async with self._locks.setdefault(target, asyncio.Lock()):
            if not (target / ".installed").exists():
                await _pip_install(layer_arn, requirement, target)
        return target


async def _pip_install(layer_arn: str, requirement: str, target: Path) -> None:
    """``pip install --target`` into a staging directory, renamed into place when complete."""
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "python").mkdir(parents=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-warn-conflicts", "--target", str(staging / "python"), requirement,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), _PIP_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        shutil.rmtree(staging, ignore_errors=True)
        raise LayerInstallError(f"installing {requirement} for {layer_arn} timed out") from None
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = output.decode(errors="replace").strip()[-500:]
        raise LayerInstallError(f"installing {requirement} for {layer_arn} failed: {tail}")
    (staging / ".installed").write_text(requirement + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
