"""Private /tmp and read-only code through a mount namespace, where Linux allows it."""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nubes.runtime import RuntimeManager

PROBE = """
import errno, os
def handler(event, context):
    if event.get("write"):
        with open(os.path.join("/tmp", event["write"]), "w") as f:
            f.write(context.function_name)
    try:
        with open(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "new.txt"), "w") as f:
            f.write("x")
        code_writable = True
    except OSError as e:
        code_writable = e.errno != errno.EROFS
    return {"tmp": sorted(os.listdir("/tmp")), "code_writable": code_writable}
"""


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A work directory outside /tmp (binding over /tmp must not hide the code)."""
    base = Path(tempfile.mkdtemp(prefix=".nubes-runtime-test-", dir=Path.home()))
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_private_tmp_and_read_only_code(
    harness: Any, new_rid: Callable[[], str], outside_tmp: Path
) -> None:
    harness.tmp_path = outside_tmp
    a = harness.spec(harness.code(PROBE, name="a"), name="a")
    b = harness.spec(harness.code(PROBE, name="b"), name="b")
    marker = f"nubes-{uuid.uuid4().hex}"
    secret = f"secret-{uuid.uuid4().hex}.txt"  # unique: a stray /tmp/secret.txt proves nothing

    async def scenario(m: RuntimeManager) -> Any:
        wrote = await m.invoke(a, json.dumps({"write": secret}).encode(), request_id=new_rid())
        other = await m.invoke(b, b"{}", request_id=new_rid())
        instances = [i for pool in m._pools.values() for i in pool.instances]
        isolated = [getattr(i, "isolated", {}) for i in instances]
        assert m.isolation == all(i.get("read_only") for i in isolated)
        return wrote, other, isolated

    Path("/tmp", marker).write_text("host file")
    try:
        wrote, other, isolated = harness.run(scenario)
    finally:
        Path("/tmp", marker).unlink()
    leaked = Path("/tmp", secret)
    if not all(i.get("tmp") and i.get("read_only") for i in isolated):
        leaked.unlink(missing_ok=True)  # without a private /tmp the probe wrote the host's
        pytest.skip(f"no mount namespaces for instances here: {isolated}")
    try:
        first, second = json.loads(wrote.payload), json.loads(other.payload)
        assert first == {"tmp": [secret], "code_writable": False}
        assert second == {"tmp": [], "code_writable": False}
        assert not leaked.exists()  # the host's /tmp never saw it
        assert not (a.code_dir / "new.txt").exists()
    finally:
        leaked.unlink(missing_ok=True)
