"""Start-up as a user meets it: ``nubes up`` answers once its store is open while the
services finish starting in the background; a request sent at once still gets its
real answer, and a stop during start-up is clean."""

from __future__ import annotations

import io
import json
import signal
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nubes.testing import NubesServer

_HANDLER = "def handler(event, context):\n    return {'echo': event, 'id': context.aws_request_id}\n"


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", _HANDLER)
    return buf.getvalue()


def test_requests_sent_as_soon_as_health_answers_get_real_answers(tmp_path: Path) -> None:
    with NubesServer(tmp_path / "d") as server:  # returns once /_nubes/health answers
        lam = server.client("lambda")
        sts = server.client("sts")
        ssm = server.client("ssm")
        with ThreadPoolExecutor(3) as pool:
            functions = pool.submit(lam.list_functions)
            identity = pool.submit(sts.get_caller_identity)
            put = pool.submit(ssm.put_parameter, Name="/startup/p", Value="v", Type="String")
            assert functions.result()["Functions"] == []
            assert identity.result()["Account"] == "000000000000"
            assert put.result()["Version"] == 1
        lam.create_function(
            FunctionName="echo", Runtime="python3.12", Handler="app.handler",
            Role="arn:aws:iam::000000000000:role/r", Code={"ZipFile": _zip()},
        )  # fmt: skip
        lam.get_waiter("function_active_v2").wait(FunctionName="echo")
        out = lam.invoke(FunctionName="echo", Payload=b'{"a": 1}')
        assert out["StatusCode"] == 200 and "FunctionError" not in out
        assert json.loads(out["Payload"].read())["echo"] == {"a": 1}


def test_a_stop_right_after_start_up_is_clean(tmp_path: Path) -> None:
    server = NubesServer(tmp_path / "d").start()
    assert server.process is not None
    # the function runtime may still be starting: the stop waits for it, then stops it
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(30) == 0
    assert "Traceback" not in server.logs()
    server.close()
