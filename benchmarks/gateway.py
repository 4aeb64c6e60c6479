"""SSM GetParameter through the whole stack (routing, SigV4, parse, store, serialize)
with a raw keep-alive HTTP client, against a bare HTTP app answering the same bytes,
MiniStack and moto's server — all in the same run.

    python -m benchmarks.gateway [--duration 5]
    python -m benchmarks.gateway --startup-only [--repeat 3] [--against OTHER_CHECKOUT/src] [--no-bytecode-cache]

``--startup-only`` measures only what ``nubes up`` costs before and just after it
answers: the time to its first answer and its idle RSS (median of ``--repeat``
fresh starts, against a bare uvicorn app started the same way in the same run),
and the first request to each service (which loads that service's model) against
the same request sent again. Processes cache their compiled modules (as an installed
nubes has them) unless ``--no-bytecode-cache``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import tempfile
import textwrap
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore import xform_name

from benchmarks.harness import PYTHON, Server, emit, free_port, load, rss_mb, signed_request, start

BODY = b'{"Name": "/bench/param"}'
TARGET = "AmazonSSM.GetParameter"

BARE_APP = textwrap.dedent(
    """
    import sys, uvicorn
    BODY = open(sys.argv[2], "rb").read()
    HEADERS = [(b"content-type", b"application/x-amz-json-1.1"), (b"content-length", str(len(BODY)).encode())]
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http="httptools", loop="uvloop", log_level="warning", access_log=False)
    """
)


def _seed(server: Server) -> bytes:
    ssm = boto3.client("ssm", endpoint_url=f"http://127.0.0.1:{server.port}", region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip
    ssm.put_parameter(Name="/bench/param", Value="v" * 64, Type="String", Overwrite=True)
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}/", data=BODY, method="POST")
    raw = signed_request(server.port, "ssm", TARGET, BODY)
    head, _, _ = raw.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.decode().partition(": ")
        req.add_header(k, v)
    with urllib.request.urlopen(req) as resp:
        answer: bytes = resp.read()
        return answer


#: one cheap read per served service (model name, operation, input): its first
#: request after start-up loads that service's model
FIRST_REQUESTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("ssm", "DescribeParameters", {}),
    ("sts", "GetCallerIdentity", {}),
    ("secretsmanager", "ListSecrets", {}),
    ("kms", "ListKeys", {}),
    ("dynamodb", "ListTables", {}),
    ("dynamodbstreams", "ListStreams", {}),
    ("sqs", "ListQueues", {}),
    ("sns", "ListTopics", {}),
    ("s3", "ListBuckets", {}),
    ("lambda", "ListFunctions", {}),
    ("logs", "DescribeLogGroups", {}),
    ("events", "ListEventBuses", {}),
    ("scheduler", "ListSchedules", {}),
    ("iam", "ListRoles", {}),
    ("cloudformation", "ListStacks", {}),
    ("stepfunctions", "ListStateMachines", {}),
    ("apigateway", "GetRestApis", {}),
    ("apigatewayv2", "GetApis", {}),
    ("cloudwatch", "ListMetrics", {}),
    ("cognito-idp", "ListUserPools", {"MaxResults": 10}),
    ("ses", "ListIdentities", {}),
    ("sesv2", "ListEmailIdentities", {}),
)


class _Captured(Exception):
    """Raised from botocore's before-send hook: the request, signed and not sent."""

    def __init__(self, request: Any) -> None:
        super().__init__("captured")
        self.request = request


def _prepared(port: int, service: str, operation: str, params: dict[str, Any]) -> tuple[str, str, bytes, dict[str, str]]:
    """(method, path, body, headers) of one request as botocore signs it for ``port``."""
    client = boto3.client(service, endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip

    def capture(request: Any, **_: Any) -> None:
        raise _Captured(request)

    client.meta.events.register("before-send", capture)
    method = getattr(client, xform_name(operation))
    try:
        method(**params)
    except _Captured as captured:
        req = captured.request
        body = req.body or b""
        url = req.url.split(f":{port}", 1)[1] or "/"
        return req.method, url, body if isinstance(body, bytes) else body.encode(), dict(req.headers.items())
    raise RuntimeError(f"{service} {operation} was not sent")


def _timed(port: int, request: tuple[str, str, bytes, dict[str, str]]) -> tuple[float, int]:
    """Send one request on a new connection: (seconds to the whole answer, status)."""
    method, path, body, headers = request
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        began = time.perf_counter()
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return time.perf_counter() - began, resp.status
    finally:
        conn.close()


@dataclass
class _Starts:
    """What fresh ``nubes up`` processes of one source tree measured."""

    starts: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    first: dict[str, list[float]] = field(default_factory=dict)
    again: dict[str, list[float]] = field(default_factory=dict)


def _start_nubes(into: _Starts, data_dir: Path, env: dict[str, str] | None, first_requests: bool) -> None:
    """Start ``nubes up`` once: time to its first answer, idle RSS, first requests."""
    port = free_port()
    requests = [(svc, _prepared(port, svc, op, params)) for svc, op, params in FIRST_REQUESTS] if first_requests else []
    nubes = start("nubes", [PYTHON, "-m", "nubes", "up", "--port", str(port), "--data-dir", str(data_dir)],
                  port, env=env, ready_path="/_nubes/health")  # fmt: skip
    try:
        into.starts.append(nubes.started_in * 1000)
        time.sleep(1.0)  # what it keeps once start-up work in the background is done
        into.rss.append(rss_mb(nubes.pid))
        for svc, request in requests:
            took, status = _timed(port, request)
            if status >= 400:
                raise RuntimeError(f"{svc}: first request answered {status}")
            into.first.setdefault(svc, []).append(took * 1000)
            into.again.setdefault(svc, []).append(_timed(port, request)[0] * 1000)
    finally:
        nubes.stop()


def _startup(repeat: int, tmp: Path, against: str | None, bytecode_cache: bool) -> None:
    """Time to the first answer and idle RSS of fresh ``nubes up`` processes (and, with
    ``against``, of another checkout's ``src`` directory, interleaved), then the first
    request to each service against the same request again.

    With ``bytecode_cache`` every process may cache compiled modules (under ``tmp``,
    filled by one untimed start of each tree first), as an installed nubes has them;
    without it the environment is used as it is (``PYTHONDONTWRITEBYTECODE=1`` here,
    so a source checkout compiles every module at every start).
    """
    bare_app = tmp / "bare.py"
    bare_app.write_text(BARE_APP)
    answer = tmp / "answer.json"
    answer.write_bytes(b"{}")
    env: dict[str, str] = {}
    if bytecode_cache:
        env = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(tmp / "pycache")}
    against_env = {**env, "PYTHONPATH": against} if against is not None else None
    if bytecode_cache:
        _start_nubes(_Starts(), tmp / "warm-up", env, first_requests=True)
        if against_env is not None:
            _start_nubes(_Starts(), tmp / "warm-up-against", against_env, first_requests=True)
    ours, theirs, bare = _Starts(), _Starts(), _Starts()
    for i in range(repeat):
        _start_nubes(ours, tmp / f"nubes-{i}", env, first_requests=True)
        if against_env is not None:
            _start_nubes(theirs, tmp / f"against-{i}", against_env, first_requests=True)
        bare_port = free_port()
        server = start("bare", [PYTHON, str(bare_app), str(bare_port), str(answer)], bare_port, env=env)
        bare.starts.append(server.started_in * 1000)
        time.sleep(1.0)
        bare.rss.append(rss_mb(server.pid))
        server.stop()
    median = statistics.median
    extra = {"bytecode_cache": bytecode_cache or not os.environ.get("PYTHONDONTWRITEBYTECODE")}
    emit("gateway", "startup_to_first_answer", median(ours.starts), "ms", median(bare.starts), target="<= 1000 ms",
         runs=[round(s, 1) for s in ours.starts], baseline_is="bare uvicorn app", **extra)  # fmt: skip
    emit("gateway", "idle_rss", median(ours.rss), "MB", median(bare.rss), target="<= 60 MB",
         runs=[round(r, 1) for r in ours.rss], baseline_is="bare uvicorn app", **extra)  # fmt: skip
    if against is not None:
        emit("gateway", "startup_vs_against", median(ours.starts), "ms", median(theirs.starts),
             runs=[round(s, 1) for s in theirs.starts], baseline_is=against, **extra)  # fmt: skip
        emit("gateway", "idle_rss_vs_against", median(ours.rss), "MB", median(theirs.rss),
             runs=[round(r, 1) for r in theirs.rss], baseline_is=against, **extra)  # fmt: skip
    for svc in ours.first:
        emit("gateway", f"first_request_{svc}", median(ours.first[svc]), "ms", median(ours.again[svc]),
             baseline_is="same request again")  # fmt: skip
    emit("gateway", "first_requests_all_services", sum(median(v) for v in ours.first.values()), "ms",
         sum(median(v) for v in ours.again.values()), baseline_is="same requests again")  # fmt: skip
    if against is not None:
        for svc in ours.first:
            emit("gateway", f"first_request_{svc}_vs_against", median(ours.first[svc]), "ms",
                 median(theirs.first[svc]), baseline_is=against)  # fmt: skip
        emit("gateway", "first_requests_all_services_vs_against", sum(median(v) for v in ours.first.values()), "ms",
             sum(median(v) for v in theirs.first.values()), baseline_is=against)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--skip-peers", action="store_true", help="do not run MiniStack and moto")
    parser.add_argument("--startup-only", action="store_true",
                        help="measure only start-up time, idle RSS and each service's first request")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="fresh starts for --startup-only (median)")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="with --startup-only: start as the environment says (no cached bytecode here)")  # fmt: skip
    parser.add_argument("--against", metavar="SRC",
                        help="with --startup-only: also start another checkout's src directory, interleaved")  # fmt: skip
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-gw-"))
    if args.startup_only:
        _startup(args.repeat, tmp, args.against, bytecode_cache=not args.no_bytecode_cache)
        return

    port = free_port()
    nubes = start("nubes", [PYTHON, "-m", "nubes", "up", "--port", str(port), "--data-dir", str(tmp / "nubes")], port, ready_path="/_nubes/health")
    time.sleep(0.5)
    emit("gateway", "startup_to_first_answer", nubes.started_in * 1000, "ms", 1000.0, target="<= 1000 ms")
    emit("gateway", "idle_rss", rss_mb(nubes.pid), "MB", 60.0, target="<= 60 MB")
    answer = _seed(nubes)
    results = {"nubes": load(nubes, [signed_request(port, "ssm", TARGET, BODY)], duration=args.duration)}
    nubes.stop()

    body_file = tmp / "answer.json"
    body_file.write_bytes(answer)
    bare_port = free_port()
    app_file = tmp / "bare.py"
    app_file.write_text(BARE_APP)
    bare = start("bare", [PYTHON, str(app_file), str(bare_port), str(body_file)], bare_port)
    results["bare"] = load(bare, [signed_request(bare_port, "ssm", TARGET, BODY)], duration=args.duration)
    bare.stop()

    if not args.skip_peers:
        for name, cmd, env in (
            ("ministack", ["ministack"], {"GATEWAY_PORT": "{port}", "LOG_LEVEL": "WARNING"}),
            ("moto", ["moto_server", "-p", "{port}"], {}),
        ):
            peer_port = free_port()
            peer = start(name, [c.format(port=peer_port) for c in cmd], peer_port,
                         env={k: v.format(port=peer_port) for k, v in env.items()})  # fmt: skip
            try:
                _seed(peer)
                results[name] = load(peer, [signed_request(peer_port, "ssm", TARGET, BODY)], duration=args.duration)
            finally:
                peer.stop()

    ours = results["nubes"]
    for name, res in results.items():
        emit("gateway", f"{name}_rps", res.rps, "req/s", None, p50_ms=round(res.p50_ms, 3),
             p99_ms=round(res.p99_ms, 3), cpu_us_per_request=round(res.cpu_per_request_us, 1), errors=res.errors)  # fmt: skip
    for name in ("ministack", "moto", "bare"):
        if name in results:
            emit("gateway", f"nubes_rps_vs_{name}", ours.rps, "req/s", results[name].rps,
                 target=">= 3x" if name == "ministack" else None)  # fmt: skip
    emit("gateway", "nubes_server_cpu_per_request", ours.cpu_per_request_us, "us",
         results["ministack"].cpu_per_request_us if "ministack" in results else None, target="<= 100 us")  # fmt: skip
    emit("gateway", "nubes_p50", ours.p50_ms, "ms", results["bare"].p50_ms, p99_ms=round(ours.p99_ms, 3))


if __name__ == "__main__":
    main()
