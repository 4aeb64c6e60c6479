"""Python functions: payloads, the context object, environment, init, logs, /tmp."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from nubes.runtime import RuntimeManager

ECHO = """
import os, sys, tempfile
INITS = []
INITS.append(1)

def handler(event, context):
    print("got", event)
    context.log("via context.log\\n")
    return {
        "event": event,
        "inits": len(INITS),
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
        "group": context.log_group_name,
        "stream": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        "identity": [context.identity.cognito_identity_id, context.identity.cognito_identity_pool_id],
        "client_context": None if context.client_context is None else {
            "custom": context.client_context.custom,
            "app_title": context.client_context.client.app_title,
        },
        "env": {k: os.environ.get(k) for k in (
            "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_REGION", "AWS_DEFAULT_REGION",
            "_HANDLER", "LAMBDA_TASK_ROOT", "AWS_EXECUTION_ENV", "TZ", "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID", "GREETING", "_X_AMZN_TRACE_ID", "NUBES_DATA_DIR")},
        "cwd": os.getcwd(),
        "tmp": tempfile.gettempdir(),
        "sys_path0": sys.path[0],
    }
"""


def test_echo_context_and_environment(harness: Any, new_rid: Callable[[], str]) -> None:
    code = harness.code(ECHO)
    spec = harness.spec(code, environment={"GREETING": "hi"}, memory_mb=256, timeout_s=5)
    request_id = new_rid()

    async def scenario(m: RuntimeManager) -> Any:
        return await m.invoke(
            spec,
            b'{"a": [1, 2]}',
            request_id=request_id,
            client_context='{"custom": {"k": "v"}, "client": {"app_title": "app"}}',
            identity={"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"},
        )

    result = harness.run(scenario)
    assert result.function_error is None
    body = json.loads(result.payload)
    assert body["event"] == {"a": [1, 2]}
    assert body["request_id"] == request_id == result.request_id
    assert body["function_name"] == "fn"
    assert body["function_version"] == "$LATEST"
    assert body["arn"] == spec.arn
    assert body["memory"] == "256"
    assert body["group"] == "/aws/lambda/fn"
    assert body["stream"] == result.log_stream
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", result.log_stream)
    assert 4000 < body["remaining"] <= 5000
    assert body["identity"] == ["id-1", "pool-1"]
    assert body["client_context"] == {"custom": {"k": "v"}, "app_title": "app"}
    env = body["env"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "fn"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/fn"
    assert env["AWS_LAMBDA_LOG_STREAM_NAME"] == result.log_stream
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["_HANDLER"] == "app.handler"
    assert env["LAMBDA_TASK_ROOT"] == str(code)
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert env["TZ"] == ":UTC"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert env["AWS_ACCESS_KEY_ID"] == "test"
    assert env["GREETING"] == "hi"
    assert env["_X_AMZN_TRACE_ID"].startswith("Root=1-")
    assert env["NUBES_DATA_DIR"] is None  # nubes's own environment does not leak in
    assert body["cwd"] == str(code)
    assert body["sys_path0"] == str(code)
    assert body["tmp"] != "/tmp" and body["tmp"].startswith(str(harness.tmp_path))


def test_init_runs_once_and_logs(harness: Any, new_rid: Callable[[], str]) -> None:
    spec = harness.spec(harness.code(ECHO))
    ids = [new_rid() for _ in range(3)]

    async def scenario(m: RuntimeManager) -> Any:
        return [await m.invoke(spec, b'{"n": 1}', request_id=i) for i in ids]

    results = harness.run(scenario)
    assert [json.loads(r.payload)["inits"] for r in results] == [1, 1, 1]
    assert len({r.log_stream for r in results}) == 1
    first, second = results[0], results[1]
    assert first.init_duration_ms is not None and first.init_duration_ms > 0
    assert second.init_duration_ms is None
    lines = first.log_tail.splitlines()
    assert lines[0] == f"START RequestId: {ids[0]} Version: $LATEST"
    assert lines[1] == "got {'n': 1}"
    assert lines[2] == "via context.log"
    assert lines[3] == f"END RequestId: {ids[0]}"
    assert re.fullmatch(
        rf"REPORT RequestId: {ids[0]}\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\t"
        r"Memory Size: 128 MB\tMax Memory Used: \d+ MB\tInit Duration: \d+\.\d\d ms\t",
        lines[4],
    )
    assert "Init Duration" not in second.log_tail
    assert first.billed_duration_ms >= first.duration_ms
    assert 5 < first.max_memory_used_mb < 128
    # everything went to the function's log stream through on_logs, in order
    assert [name for name, _, _ in harness.logs] == ["fn"] * 3
    stream, events = harness.logs[0][1], harness.logs[0][2]
    assert stream == first.log_stream
    assert [m for _, m in events] == lines
    assert all(isinstance(ts, int) and ts > 1_600_000_000_000 for ts, _ in events)
    assert [r.request_id for _, r in harness.results] == ids


LOGGING = """
import logging, sys
logger = logging.getLogger()
logger.setLevel(logging.INFO)

def handler(event, context):
    logger.info("info line")
    logging.getLogger("child").warning("two\\nlines")
    sys.stderr.write("to stderr\\n")
    sys.stdout.buffer.write(b"raw bytes\\n")
    print("no newline", end="")
    return None
"""


def test_logging_format_and_stdout_capture(harness: Any, new_rid: Callable[[], str]) -> None:
    spec = harness.spec(harness.code(LOGGING))
    request_id = new_rid()

    async def scenario(m: RuntimeManager) -> Any:
        return await m.invoke(spec, b"{}", request_id=request_id)

    result = harness.run(scenario)
    assert result.payload == b"null"
    events = [m for _, m in harness.logs[0][2]]
    assert re.fullmatch(
        rf"\[INFO\]\t\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z\t{request_id}\tinfo line", events[1]
    )
    assert events[2].startswith("[WARNING]\t") and events[2].endswith(f"\t{request_id}\ttwo\nlines")
    assert events[3:6] == ["to stderr", "raw bytes", "no newline"]


TMP_WRITER = """
import os, tempfile
def handler(event, context):
    if event.get("write"):
        with open(os.path.join(tempfile.gettempdir(), "secret.txt"), "w") as f:
            f.write("mine")
    return sorted(os.listdir(tempfile.gettempdir()))
"""


def test_tmp_is_private_per_function(harness: Any, new_rid: Callable[[], str]) -> None:
    a = harness.spec(harness.code(TMP_WRITER, name="a"), name="a")
    b = harness.spec(harness.code(TMP_WRITER, name="b"), name="b")

    async def scenario(m: RuntimeManager) -> Any:
        wrote = await m.invoke(a, b'{"write": true}', request_id=new_rid())
        again = await m.invoke(a, b"{}", request_id=new_rid())
        other = await m.invoke(b, b"{}", request_id=new_rid())
        return wrote, again, other

    wrote, again, other = harness.run(scenario)
    assert json.loads(wrote.payload) == ["secret.txt"]
    assert json.loads(again.payload) == ["secret.txt"]  # /tmp survives warm invocations
    assert json.loads(other.payload) == []


def test_binary_and_unicode_results(harness: Any, new_rid: Callable[[], str]) -> None:
    code = harness.code(
        """
        from decimal import Decimal
        def handler(event, context):
            if event == "bytes":
                return b"\\x00raw"
            return {"price": Decimal("1.5"), "n": Decimal("3"), "s": "h\\u00e9"}
        """
    )
    spec = harness.spec(code)

    async def scenario(m: RuntimeManager) -> Any:
        return (
            await m.invoke(spec, b'"bytes"', request_id=new_rid()),
            await m.invoke(spec, b"", request_id=new_rid()),
        )

    raw, dec = harness.run(scenario)
    assert raw.payload == b"\x00raw"
    assert json.loads(dec.payload) == {"price": 1.5, "n": 3, "s": "hé"}
    assert "hé".encode() in dec.payload  # python3.12+: ensure_ascii=False, as on AWS


def test_any_python3_runtime_name_and_layers(harness: Any, new_rid: Callable[[], str]) -> None:
    layer = harness.tmp_path / "layer"
    (layer / "python").mkdir(parents=True)
    (layer / "python" / "shared_lib.py").write_text("VALUE = 42\n")
    code = harness.code(
        """
        import shared_lib
        def handler(event, context):
            return shared_lib.VALUE
        """
    )
    specs = [
        harness.spec(code, name=f"f{i}", runtime=rt, layer_dirs=(layer,))
        for i, rt in enumerate(["python3.12", "python3.13", "python3.14", "python3.9"])
    ]

    async def scenario(m: RuntimeManager) -> Any:
        return [await m.invoke(s, b"{}", request_id=new_rid()) for s in specs]

    assert [r.payload for r in harness.run(scenario)] == [b"42"] * 4


AWS_NAMES = """
import socket, urllib.request

def handler(event, context):
    url = "http://abc123.execute-api.us-east-1.amazonaws.com/prod/items?x=1"
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = resp.read().decode()
    with socket.create_connection(("cognito-idp.us-east-1.amazonaws.com", 443), timeout=5) as s:
        s.sendall(b"tls-port")
        tls = s.recv(100).decode()
    return {
        "http": body,
        "tls": tls,
        "resolved": socket.gethostbyname("s3.amazonaws.com"),
        "other": socket.getaddrinfo("localhost", 80)[0][4][0],
    }
"""


def test_aws_host_names_reach_nubes(harness: Any, new_rid: Callable[[], str]) -> None:
    import asyncio

    spec = harness.spec(harness.code(AWS_NAMES), timeout_s=10)

    async def http_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        request_line = head.split("\r\n")[0]
        host = next(
            h.split(":", 1)[1].strip() for h in head.split("\r\n") if h.lower().startswith("host:")
        )
        body = f"{request_line}|{host}".encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
        )
        await writer.drain()
        writer.close()

    async def tls_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(100)
        writer.write(b"got " + data)
        await writer.drain()
        writer.close()

    async def main() -> Any:
        from nubes.runtime import RuntimeManager
        from nubes.settings import Settings

        http = await asyncio.start_server(http_server, "127.0.0.1", 0)
        tls = await asyncio.start_server(tls_server, "127.0.0.1", 0)
        routes = {
            80: ("127.0.0.1", http.sockets[0].getsockname()[1]),
            443: ("127.0.0.1", tls.sockets[0].getsockname()[1]),
        }
        m = RuntimeManager(
            Settings(data_dir=harness.tmp_path / "data"), platform_env={}, aws_hosts=routes
        )
        await m.start()
        try:
            return await m.invoke(spec, b"{}", request_id=new_rid())
        finally:
            await m.stop()
            http.close()
            tls.close()

    result = asyncio.run(main())
    assert result.function_error is None, result.payload
    body = json.loads(result.payload)
    assert body["http"] == "GET /prod/items?x=1 HTTP/1.1|abc123.execute-api.us-east-1.amazonaws.com"
    assert body["tls"] == "got tls-port"
    assert body["resolved"] == "127.0.0.86"
    assert body["other"] in ("127.0.0.1", "::1")


JSON_LOGS = """
import logging
logger = logging.getLogger()

def handler(event, context):
    logger.debug("hidden at INFO")
    logger.info("order %s", "o-1", extra={"order_id": "o-1"})
    try:
        1 / 0
    except ZeroDivisionError:
        logger.exception("failed")
    print("plain")
    return 1
"""


def test_json_log_format(harness: Any, new_rid: Callable[[], str]) -> None:
    spec = harness.spec(harness.code(JSON_LOGS), log_format="JSON")
    request_id = new_rid()

    async def scenario(m: RuntimeManager) -> Any:
        return await m.invoke(spec, b"{}", request_id=request_id)

    result = harness.run(scenario)
    events = [m for _, m in harness.logs[0][2]]
    start = json.loads(events[0])
    assert start["type"] == "platform.start"
    assert start["record"] == {"requestId": request_id, "version": "$LATEST"}
    info = json.loads(events[1])
    assert info["level"] == "INFO" and info["message"] == "order o-1"
    assert info["logger"] == "root" and info["requestId"] == request_id
    assert info["order_id"] == "o-1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["timestamp"])
    error = json.loads(events[2])
    assert error["level"] == "ERROR" and error["errorType"] == "ZeroDivisionError"
    assert error["errorMessage"] == "division by zero" and error["stackTrace"]
    assert events[3] == "plain"
    report = json.loads(events[4])
    assert report["type"] == "platform.report"
    assert report["record"]["requestId"] == request_id
    assert report["record"]["status"] == "success"
    assert report["record"]["metrics"]["memorySizeMB"] == 128
    assert "initDurationMs" in report["record"]["metrics"]
    assert len(events) == 5  # the DEBUG record is filtered out at the default INFO level
    assert result.log_tail.splitlines() == events


def test_layer_built_for_another_python_version(harness: Any, new_rid: Callable[[], str]) -> None:
    layer = harness.tmp_path / "layer312"
    site = layer / "python" / "lib" / "python3.12" / "site-packages"
    site.mkdir(parents=True)
    (site / "vendored.py").write_text("NAME = 'from 3.12 layer'\n")
    code = harness.code("import vendored\ndef handler(event, context):\n    return vendored.NAME\n")
    spec = harness.spec(code, runtime="python3.12", layer_dirs=(layer,))

    async def scenario(m: RuntimeManager) -> Any:
        return await m.invoke(spec, b"{}", request_id=new_rid())

    assert json.loads(harness.run(scenario).payload) == "from 3.12 layer"
