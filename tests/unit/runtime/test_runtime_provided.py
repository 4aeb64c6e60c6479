"""``provided.*`` runtimes against the Runtime API: a raw bootstrap and real awslambdaric."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import pytest

from nubes.runtime import RuntimeManager

RAW_BOOTSTRAP = f"""#!{sys.executable}
# a custom runtime speaking the Runtime API with nothing but the standard library
import http.client, json, os, sys
api = os.environ["AWS_LAMBDA_RUNTIME_API"]
print("init", os.environ["_HANDLER"], flush=True)
conn = http.client.HTTPConnection(api)
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    resp = conn.getresponse()
    event = json.loads(resp.read())
    h = {{k.lower(): v for k, v in resp.getheaders()}}
    rid = h["lambda-runtime-aws-request-id"]
    print("handling", rid, flush=True)
    if event.get("fail"):
        body = json.dumps({{"errorMessage": "nope", "errorType": "CustomError", "stackTrace": []}})
        conn.request("POST", f"/2018-06-01/runtime/invocation/{{rid}}/error", body,
                     {{"Lambda-Runtime-Function-Error-Type": "CustomError"}})
    elif event.get("exit"):
        sys.exit(2)
    else:
        body = json.dumps({{"event": event, "headers": h, "tmp": os.environ["TMPDIR"]}})
        conn.request("POST", f"/2018-06-01/runtime/invocation/{{rid}}/response", body)
    r = conn.getresponse()
    r.read()
    assert r.status == 202, r.status
"""


def _provided(harness: Any, bootstrap: str, files: dict[str, str] | None = None, **kw: Any) -> Any:
    code = harness.code(bootstrap, filename="bootstrap")
    (code / "bootstrap").chmod(0o755)
    for name, text in (files or {}).items():
        (code / name).write_text(text)
    return harness.spec(code, runtime="provided.al2023", **kw)


def test_raw_runtime_api(harness: Any, new_rid: Callable[[], str]) -> None:
    spec = _provided(harness, RAW_BOOTSTRAP, handler="my.handler")

    async def scenario(m: RuntimeManager) -> Any:
        ok = await m.invoke(
            spec,
            b'{"x": 1}',
            request_id=new_rid(),
            client_context='{"custom": {"a": 1}}',
            identity={"cognitoIdentityId": "i", "cognitoIdentityPoolId": "p"},
        )
        failed = await m.invoke(spec, b'{"fail": true}', request_id=new_rid())
        exited = await m.invoke(spec, b'{"exit": true}', request_id=new_rid())
        after = await m.invoke(spec, b"{}", request_id=new_rid())
        return ok, failed, exited, after

    ok, failed, exited, after = harness.run(scenario)
    assert ok.function_error is None
    body = json.loads(ok.payload)
    assert body["event"] == {"x": 1}
    h = body["headers"]
    assert h["lambda-runtime-aws-request-id"] == ok.request_id
    assert h["lambda-runtime-invoked-function-arn"] == spec.arn
    assert int(h["lambda-runtime-deadline-ms"]) > 0
    assert h["lambda-runtime-trace-id"].startswith("Root=1-")
    assert json.loads(h["lambda-runtime-client-context"]) == {"custom": {"a": 1}}
    assert json.loads(h["lambda-runtime-cognito-identity"]) == {
        "cognitoIdentityId": "i",
        "cognitoIdentityPoolId": "p",
    }
    lines = ok.log_tail.splitlines()
    assert lines[0] == "init my.handler"  # init output precedes START on the first invocation
    assert lines[1].startswith(f"START RequestId: {ok.request_id}")
    assert lines[2] == f"handling {ok.request_id}"
    assert ok.init_duration_ms is not None

    assert failed.function_error == "Unhandled"
    assert json.loads(failed.payload)["errorType"] == "CustomError"
    assert failed.init_duration_ms is None  # the same instance

    assert json.loads(exited.payload) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {exited.request_id} Error: Runtime exited with error: exit status 2",
    }
    assert after.function_error is None and after.init_duration_ms is not None


def test_missing_bootstrap(harness: Any, new_rid: Callable[[], str]) -> None:
    spec = harness.spec(harness.code("x = 1\n"), runtime="provided.al2")

    async def scenario(m: RuntimeManager) -> Any:
        return await m.invoke(spec, b"{}", request_id=new_rid())

    result = harness.run(scenario)
    assert result.function_error == "Unhandled"
    body = json.loads(result.payload)
    assert body["errorType"] == "Runtime.InvalidEntrypoint"
    assert body["errorMessage"] == (
        f"RequestId: {result.request_id} Error: Couldn't find valid bootstrap(s): "
        "[/var/task/bootstrap /opt/bootstrap]"
    )


AWSLAMBDARIC_BOOTSTRAP = f"""#!/bin/sh
exec {sys.executable} -m awslambdaric "$_HANDLER"
"""

APP = """
import logging, os
logger = logging.getLogger()
logger.setLevel(logging.INFO)
INITS = 0
INITS += 1

def handler(event, context):
    logger.info("handling %s", context.aws_request_id)
    if event.get("fail"):
        raise KeyError("missing")
    return {
        "event": event,
        "inits": INITS,
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "arn": context.invoked_function_arn,
        "remaining": context.get_remaining_time_in_millis(),
        "memory": context.memory_limit_in_mb,
    }
"""


def test_awslambdaric(harness: Any, new_rid: Callable[[], str]) -> None:
    spec = _provided(harness, AWSLAMBDARIC_BOOTSTRAP, {"app.py": APP}, timeout_s=10)

    async def scenario(m: RuntimeManager) -> Any:
        first = await m.invoke(spec, b'{"k": "v"}', request_id=new_rid())
        second = await m.invoke(spec, b"{}", request_id=new_rid())
        failed = await m.invoke(spec, b'{"fail": true}', request_id=new_rid())
        return first, second, failed

    first, second, failed = harness.run(scenario)
    assert first.function_error is None, first.payload
    body = json.loads(first.payload)
    assert body["event"] == {"k": "v"}
    assert body["request_id"] == first.request_id
    assert body["function_name"] == "fn"
    assert body["arn"] == spec.arn
    assert 9000 < body["remaining"] <= 10000
    assert body["memory"] == "128"
    assert json.loads(second.payload)["inits"] == 1
    assert (
        "[INFO]\t" in first.log_tail
        and f"\t{first.request_id}\thandling {first.request_id}" in first.log_tail
    )

    assert failed.function_error == "Unhandled"
    err = json.loads(failed.payload)
    assert err["errorType"] == "KeyError"
    assert err["errorMessage"] == "'missing'"
    assert err["requestId"] == failed.request_id
    assert any("raise KeyError" in frame for frame in err["stackTrace"])


def test_awslambdaric_import_error(harness: Any, new_rid: Callable[[], str]) -> None:
    spec = _provided(harness, AWSLAMBDARIC_BOOTSTRAP, {}, handler="nomodule.handler", timeout_s=10)

    async def scenario(m: RuntimeManager) -> Any:
        return await m.invoke(spec, b"{}", request_id=new_rid())

    result = harness.run(scenario)
    assert result.function_error == "Unhandled"
    body = json.loads(result.payload)
    assert body["errorType"] == "Runtime.ImportModuleError"
    assert body["errorMessage"] == "Unable to import module 'nomodule': No module named 'nomodule'"


def test_bootstrap_exiting_during_init(harness: Any, new_rid: Callable[[], str]) -> None:
    spec = _provided(harness, '#!/bin/sh\necho "starting in $(pwd)"\nexit 4\n')

    async def scenario(m: RuntimeManager) -> Any:
        return await m.invoke(spec, b"{}", request_id=new_rid())

    result = harness.run(scenario)
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {result.request_id} Error: Runtime exited with error: exit status 4",
    }
    # init output comes first; cwd is the code directory
    assert result.log_tail.startswith(f"starting in {spec.code_dir}\n")


def test_bootstrap_that_cannot_be_executed(harness: Any, new_rid: Callable[[], str]) -> None:
    spec = _provided(harness, "no shebang line, so not an executable format\n")

    async def scenario(m: RuntimeManager) -> Any:
        return await m.invoke(spec, b"{}", request_id=new_rid())

    result = harness.run(scenario)
    body = json.loads(result.payload)
    assert body["errorType"] == "Runtime.InvalidEntrypoint"
    assert body["errorMessage"] == (
        f"RequestId: {result.request_id} Error: fork/exec {spec.code_dir}/bootstrap: exec format error"
    )


def test_provided_code_is_read_only(harness: Any, new_rid: Callable[[], str]) -> None:
    script = (
        "#!/bin/sh\n"
        'if touch "$LAMBDA_TASK_ROOT/new.txt" 2>/dev/null; then echo writable; else echo read-only; fi\n'
        "exit 0\n"
    )
    spec = _provided(harness, script)

    async def scenario(m: RuntimeManager) -> Any:
        return await m.invoke(spec, b"{}", request_id=new_rid())

    result = harness.run(scenario)
    if result.log_tail.startswith("writable"):
        pytest.skip("no mount namespaces for instances on this machine")
    assert result.log_tail.startswith("read-only\n")
    assert not (spec.code_dir / "new.txt").exists()


CURL_BOOTSTRAP = """#!/bin/sh
# the shell + curl custom runtime from AWS's tutorial
set -eu
while true; do
  HEADERS="$(mktemp)"
  EVENT=$(curl -sS -LD "$HEADERS" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  echo "event for $REQUEST_ID"
  BODY="$(mktemp)"
  printf '{"echo": %s, "pad": "' "$EVENT" > "$BODY"
  head -c 2000000 /dev/zero | tr '\\000' x >> "$BODY"
  printf '"}' >> "$BODY"
  curl -sS "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$REQUEST_ID/response" \\
    --data-binary "@$BODY" >/dev/null
done
"""


def test_shell_and_curl_bootstrap(harness: Any, new_rid: Callable[[], str]) -> None:
    import shutil
    import time

    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    spec = _provided(harness, CURL_BOOTSTRAP, timeout_s=5)

    async def scenario(m: RuntimeManager) -> Any:
        started = time.monotonic()
        results = [await m.invoke(spec, b'{"k": 1}', request_id=new_rid()) for _ in range(3)]
        return results, time.monotonic() - started

    results, elapsed = harness.run(scenario)
    for result in results:
        assert result.function_error is None, result.payload
        body = json.loads(result.payload)
        assert body["echo"] == {"k": 1} and len(body["pad"]) == 2_000_000
        assert f"event for {result.request_id}" in result.log_tail
    assert elapsed < 2.5  # no one-second "Expect: 100-continue" stall per response


CHUNKED_BOOTSTRAP = f"""#!{sys.executable}
# posts its response in chunks, with a trailer, as streaming runtimes do
import http.client, os
api = os.environ["AWS_LAMBDA_RUNTIME_API"]
conn = http.client.HTTPConnection(api)
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    resp = conn.getresponse()
    resp.read()
    rid = resp.getheader("Lambda-Runtime-Aws-Request-Id")
    conn.putrequest("POST", f"/2018-06-01/runtime/invocation/{{rid}}/response")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Trailer", "Lambda-Runtime-Function-Error-Type")
    conn.endheaders()
    for part in (b'{{"streamed": ', b'"yes"}}'):
        conn.send(b"%x\\r\\n%s\\r\\n" % (len(part), part))
    conn.send(b"0\\r\\nLambda-Runtime-Function-Error-Type: none\\r\\n\\r\\n")
    r = conn.getresponse()
    r.read()
"""


def test_chunked_response_with_trailer(harness: Any, new_rid: Callable[[], str]) -> None:
    spec = _provided(harness, CHUNKED_BOOTSTRAP)

    async def scenario(m: RuntimeManager) -> Any:
        return [await m.invoke(spec, b"{}", request_id=new_rid()) for _ in range(2)]

    for result in harness.run(scenario):
        assert result.function_error is None, result.payload
        assert json.loads(result.payload) == {"streamed": "yes"}
