"""SSM GetParameter through the whole stack (routing, SigV4, parse, store, serialize)
with a raw keep-alive HTTP client, against a bare HTTP app answering the same bytes,
MiniStack and moto's server — all in the same run.

    python -m benchmarks.gateway [--duration 5]
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import boto3

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
        return resp.read()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--skip-peers", action="store_true", help="do not run MiniStack and moto")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-gw-"))

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
