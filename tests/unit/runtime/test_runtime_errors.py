"""Each way a Python function can fail gets AWS's error payload, and nothing else breaks."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from nubes.runtime import RuntimeManager


def _invoke_twice(
    harness: Any, spec: Any, new_rid: Callable[[], str], payload: bytes = b"{}"
) -> Any:
    async def scenario(m: RuntimeManager) -> Any:
        first = await m.invoke(spec, payload, request_id=new_rid())
        second = await m.invoke(spec, payload, request_id=new_rid())
        return first, second, m.stats()

    return harness.run(scenario)


def test_handler_exception(harness: Any, new_rid: Callable[[], str]) -> None:
    code = harness.code(
        """
        def helper():
            raise ValueError("bad value")

        def handler(event, context):
            helper()
        """
    )
    first, second, stats = _invoke_twice(harness, harness.spec(code), new_rid)
    assert first.function_error == "Unhandled"
    body = json.loads(first.payload)
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"] == "bad value"
    assert body["requestId"] == first.request_id
    assert len(body["stackTrace"]) == 2
    assert body["stackTrace"][0].startswith(f'  File "{code}/app.py", line 6, in handler')
    assert "raise ValueError" in body["stackTrace"][1]
    assert "[ERROR] ValueError: bad value\nTraceback (most recent call last):" in first.log_tail
    # an exception does not cost the instance: the second invocation is warm
    assert second.init_duration_ms is None
    assert stats["fn"]["instances"] == 1


@pytest.mark.parametrize(
    ("handler", "source", "error_type", "message"),
    [
        (
            "nodot",
            "",
            "Runtime.MalformedHandlerName",
            "Bad handler 'nodot': not enough values to unpack (expected 2, got 1)",
        ),
        (
            "missing.handler",
            "",
            "Runtime.ImportModuleError",
            "Unable to import module 'missing': No module named 'missing'",
        ),
        (
            "app.handler",
            "import requests_not_here\n",
            "Runtime.ImportModuleError",
            "Unable to import module 'app': No module named 'requests_not_here'",
        ),
        (
            "app.nothere",
            "x = 1\n",
            "Runtime.HandlerNotFound",
            "Handler 'nothere' missing on module 'app'",
        ),
        (
            "app.handler",
            "def handler(:\n",
            "Runtime.UserCodeSyntaxError",
            "Syntax error in module 'app': invalid syntax (app.py, line 1)",
        ),
        (
            "sys.handler",
            "",
            "Runtime.BuiltInModuleConflict",
            "Cannot use built-in module sys as a handler module",
        ),
        ("app.handler", "raise RuntimeError('init broke')\n", "RuntimeError", "init broke"),
    ],
)
def test_init_errors(
    harness: Any,
    new_rid: Callable[[], str],
    handler: str,
    source: str,
    error_type: str,
    message: str,
) -> None:
    spec = harness.spec(harness.code(source), handler=handler)
    first, second, _ = _invoke_twice(harness, spec, new_rid)
    for result in (first, second):
        assert result.function_error == "Unhandled"
        body = json.loads(result.payload)
        assert body["errorType"] == error_type
        assert body["errorMessage"] == message
        assert f"[ERROR] {error_type}: {message}" in result.log_tail
        assert "Status: error" in result.log_tail
    # a failed init is retried with a fresh instance, as AWS does
    assert second.init_duration_ms is not None
    assert second.log_stream != first.log_stream


def test_marshal_and_unmarshal_errors(harness: Any, new_rid: Callable[[], str]) -> None:
    spec = harness.spec(harness.code("def handler(event, context):\n    return {1, 2}\n"))

    async def scenario(m: RuntimeManager) -> Any:
        return (
            await m.invoke(spec, b"{}", request_id=new_rid()),
            await m.invoke(spec, b"{not json", request_id=new_rid()),
        )

    marshal, unmarshal = harness.run(scenario)
    body = json.loads(marshal.payload)
    assert marshal.function_error == "Unhandled"
    assert body["errorType"] == "Runtime.MarshalError"
    assert (
        body["errorMessage"]
        == "Unable to marshal response: Object of type set is not JSON serializable"
    )
    body = json.loads(unmarshal.payload)
    assert body["errorType"] == "Runtime.UnmarshalError"
    assert body["errorMessage"].startswith("Unable to unmarshal input: Expecting property name")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("print('bye'); sys.exit(1)", "exit status 1"),
        ("print('bye'); os._exit(3)", "exit status 3"),
        ("sys.exit()", "exit status 0"),
        ("ctypes.string_at(0)", "signal: segmentation fault"),
        ("os.kill(os.getpid(), signal.SIGKILL)", "signal: killed"),
    ],
)
def test_crash_gives_exit_error_and_replaces_instance(
    harness: Any, new_rid: Callable[[], str], body: str, status: str
) -> None:
    code = harness.code(
        f"""
        import ctypes, os, signal, sys
        def handler(event, context):
            if event.get("crash"):
                {body}
            return os.getpid()
        """
    )
    spec = harness.spec(code)

    async def scenario(m: RuntimeManager) -> Any:
        before = await m.invoke(spec, b"{}", request_id=new_rid())
        crash = await m.invoke(spec, b'{"crash": true}', request_id=new_rid())
        after = await m.invoke(spec, b"{}", request_id=new_rid())
        return before, crash, after

    before, crash, after = harness.run(scenario)
    assert crash.function_error == "Unhandled"
    assert json.loads(crash.payload) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {crash.request_id} Error: Runtime exited with error: {status}",
    }
    assert "Status: error\tError Type: Runtime.ExitError" in crash.log_tail
    if "print" in body:
        assert "\nbye\n" in crash.log_tail  # output before the exit is not lost
    # the next invocation gets a new instance (a new process, a new init)
    assert after.function_error is None
    assert after.init_duration_ms is not None
    assert json.loads(after.payload) != json.loads(before.payload)


SLEEPER = """
import os, subprocess, time
def handler(event, context):
    print("about to sleep", event.get("sleep", 0))
    if event.get("child_pid_file"):
        child = subprocess.Popen(["sleep", "30"])
        with open(event["child_pid_file"], "w") as f:
            f.write(str(child.pid))
    time.sleep(event.get("sleep", 0))
    return os.getpid()
"""


def test_timeout_kills_only_that_instance(
    harness: Any, new_rid: Callable[[], str], tmp_path: Any
) -> None:
    spec = harness.spec(harness.code(SLEEPER), timeout_s=1.0)
    pid_file = tmp_path / "child.pid"
    slow_payload = json.dumps({"sleep": 10, "child_pid_file": str(pid_file)}).encode()

    async def scenario(m: RuntimeManager) -> Any:
        import asyncio

        started = time.monotonic()
        slow, fast = await asyncio.gather(
            m.invoke(spec, slow_payload, request_id=new_rid()),
            m.invoke(spec, b'{"sleep": 0.2}', request_id=new_rid()),
        )
        elapsed = time.monotonic() - started
        again = await m.invoke(spec, b"{}", request_id=new_rid())
        return slow, fast, again, elapsed, m.stats()

    slow, fast, again, elapsed, stats = harness.run(scenario)
    assert elapsed < 3
    assert slow.function_error == "Unhandled"
    assert json.loads(slow.payload) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {slow.request_id} Error: Task timed out after 1.00 seconds",
    }
    assert f"{slow.request_id} Task timed out after 1.00 seconds" in slow.log_tail
    assert "Status: timeout" in slow.log_tail
    assert "\nabout to sleep 10\n" in slow.log_tail  # printed before the hang, not lost
    assert slow.duration_ms >= 1000
    assert slow.max_memory_used_mb > 5  # measured before the kill, not after
    assert fast.function_error is None
    # the other instance survived and serves the next request warm
    assert again.payload == fast.payload and again.init_duration_ms is None
    assert stats["fn"]["instances"] == 1
    # the whole process group died, including the function's own child process
    child = int(pid_file.read_text())
    time.sleep(0.2)
    assert not _running(child)


def _running(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie waiting for its (new) parent to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_memory_limit_kills_with_out_of_memory(harness: Any, new_rid: Callable[[], str]) -> None:
    code = harness.code(
        """
        import time
        def handler(event, context):
            hog = b"x" * (event["mb"] * 1024 * 1024)
            time.sleep(0.5)
            return len(hog)
        """
    )
    spec = harness.spec(code, memory_mb=128, timeout_s=5)

    async def scenario(m: RuntimeManager) -> Any:
        ok = await m.invoke(spec, b'{"mb": 20}', request_id=new_rid())
        oom = await m.invoke(spec, b'{"mb": 300}', request_id=new_rid())
        return ok, oom

    ok, oom = harness.run(scenario)
    assert ok.function_error is None
    assert oom.function_error == "Unhandled"
    body = json.loads(oom.payload)
    assert body["errorType"] == "Runtime.OutOfMemory"
    assert (
        body["errorMessage"]
        == f"RequestId: {oom.request_id} Error: Runtime exited with error: signal: killed"
    )
    assert oom.max_memory_used_mb == 128
    assert "Status: error\tError Type: Runtime.OutOfMemory" in oom.log_tail


def test_exit_during_init_and_exit_message(harness: Any, new_rid: Callable[[], str]) -> None:
    init_exit = harness.spec(
        harness.code("print('starting')\nimport sys\nsys.exit(0)\n", name="a"), name="a"
    )
    text_exit = harness.spec(
        harness.code("import sys\ndef handler(e, c):\n    sys.exit('fatal: gone')\n", name="b"),
        name="b",
    )

    async def scenario(m: RuntimeManager) -> Any:
        return (
            await m.invoke(init_exit, b"{}", request_id=new_rid()),
            await m.invoke(text_exit, b"{}", request_id=new_rid()),
        )

    init_result, text_result = harness.run(scenario)
    assert json.loads(init_result.payload) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {init_result.request_id} Error: Runtime exited with error: exit status 0",
    }
    assert init_result.log_tail.startswith("starting\n")
    assert json.loads(text_result.payload)["errorMessage"].endswith("exit status 1")
    assert "\nfatal: gone\n" in text_result.log_tail


def test_large_logs_and_response_limit(harness: Any, new_rid: Callable[[], str]) -> None:
    code = harness.code(
        """
        def handler(event, context):
            if event.get("big"):
                return "x" * (7 * 1024 * 1024)
            for i in range(20000):
                print(f"line {i:05d} " + "y" * 40)
            return "done"
        """
    )
    spec = harness.spec(code, timeout_s=10)

    async def scenario(m: RuntimeManager) -> Any:
        return (
            await m.invoke(spec, b"{}", request_id=new_rid()),
            await m.invoke(spec, b'{"big": true}', request_id=new_rid()),
        )

    logs, big = harness.run(scenario)
    assert logs.payload == b'"done"'
    lines = [m for m in logs.log_tail.splitlines() if m.startswith("line ")]
    assert len(lines) == 20000
    assert [int(line.split()[1]) for line in lines] == list(range(20000))  # in order
    assert big.function_error == "Unhandled"
    assert json.loads(big.payload) == {
        "errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
        "errorType": "Function.ResponseSizeTooLarge",
    }


def test_init_timeout(harness: Any, new_rid: Callable[[], str], monkeypatch: Any) -> None:
    from nubes.runtime import python_worker

    monkeypatch.setattr(python_worker, "INIT_TIMEOUT_S", 0.5)
    spec = harness.spec(harness.code("import time\nprint('loading')\ntime.sleep(30)\n"))

    async def scenario(m: RuntimeManager) -> Any:
        return await m.invoke(spec, b"{}", request_id=new_rid())

    started = time.monotonic()
    result = harness.run(scenario)
    assert time.monotonic() - started < 5
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload) == {
        "errorType": "Sandbox.Timedout",
        "errorMessage": f"RequestId: {result.request_id} Error: Task timed out after 0.50 seconds",
    }
    assert "Status: timeout" in result.log_tail
    assert result.log_tail.startswith("loading\n")
    assert result.init_duration_ms is not None and result.init_duration_ms >= 500


def test_memory_of_child_processes_counts(harness: Any, new_rid: Callable[[], str]) -> None:
    code = harness.code(
        f"""
        import subprocess
        def handler(event, context):
            hog = "import time; x = b'x' * (300 * 1024 * 1024); time.sleep(3)"
            subprocess.run(["{sys.executable}", "-c", hog])
            return "survived"
        """
    )
    spec = harness.spec(code, memory_mb=128, timeout_s=10)

    async def scenario(m: RuntimeManager) -> Any:
        return await m.invoke(spec, b"{}", request_id=new_rid())

    result = harness.run(scenario)
    assert result.function_error == "Unhandled", result.payload
    assert json.loads(result.payload)["errorType"] == "Runtime.OutOfMemory"
