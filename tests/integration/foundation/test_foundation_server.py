"""The server as a user meets it: CLI, health, signatures, errors, shutdown, durability."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from nubes.testing import NubesServer, free_port


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nubes", *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_version_flag() -> None:
    out = _cli("--version")
    assert out.returncode == 0
    assert out.stdout.startswith("nubes 0.")


def test_health_reports_services_and_store(nubes: NubesServer) -> None:
    with urllib.request.urlopen(nubes.endpoint + "/_nubes/health") as resp:
        health = json.loads(resp.read())
    assert health["status"] == "running"
    assert health["store"] == "sqlite"
    for service in ("sts", "ssm", "secretsmanager", "kms"):
        assert health["services"][service] == "running"


def test_status_command(nubes: NubesServer) -> None:
    out = _cli("status", "--port", str(nubes.port))
    assert out.returncode == 0, out.stderr
    assert "running" in out.stdout and "ssm" in out.stdout


def test_status_when_nothing_listens() -> None:
    out = _cli("status", "--port", str(free_port()))
    assert out.returncode == 1
    assert "not reachable" in out.stderr


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        out = _cli("up", "--port", str(port), "--data-dir", str(tmp_path))
    assert out.returncode == 2
    assert f"port {port}" in out.stderr and "already in use" in out.stderr


def test_wrong_secret_and_unknown_key(nubes: NubesServer) -> None:
    bad = nubes.client("sts", aws_secret_access_key="wrong")
    with pytest.raises(ClientError) as err:
        bad.get_caller_identity()
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    unknown = nubes.client("ssm", aws_access_key_id="AKIDUNKNOWN", aws_secret_access_key="x")
    with pytest.raises(ClientError) as err:
        unknown.describe_parameters()
    assert err.value.response["Error"]["Code"] == "UnrecognizedClientException"
    bad_json = nubes.client("ssm", aws_secret_access_key="wrong")
    with pytest.raises(ClientError) as err:
        bad_json.describe_parameters()
    assert err.value.response["Error"]["Code"] == "InvalidSignatureException"


def _signed(nubes: NubesServer, method: str, url: str, body: bytes, headers: dict[str, str], *, when: float | None = None, service: str = "ssm") -> urllib.request.Request:
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    auth = SigV4Auth(Credentials("test", "test"), service, "us-east-1")
    if when is not None:
        import datetime as dt
        from unittest import mock

        fixed = dt.datetime.fromtimestamp(when, dt.UTC).replace(tzinfo=None)
        with mock.patch("botocore.auth.get_current_datetime", return_value=fixed):
            auth.add_auth(request)
    else:
        auth.add_auth(request)
    return urllib.request.Request(url, data=body, headers=dict(request.headers.items()), method=method)


def _send(req: urllib.request.Request) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def test_clock_skew_is_rejected(nubes: NubesServer) -> None:
    req = _signed(nubes, "POST", nubes.endpoint + "/", b"{}",
                  {"X-Amz-Target": "AmazonSSM.DescribeParameters", "Content-Type": "application/x-amz-json-1.1"},
                  when=time.time() - 20 * 60)  # fmt: skip
    status, _, body = _send(req)
    assert status == 400
    assert json.loads(body)["__type"] == "InvalidSignatureException"
    assert "Signature expired" in json.loads(body)["message"]


def test_unsigned_request_is_rejected(nubes: NubesServer) -> None:
    req = urllib.request.Request(nubes.endpoint + "/", data=b"{}", method="POST",
                                 headers={"X-Amz-Target": "AmazonSSM.DescribeParameters", "Content-Type": "application/x-amz-json-1.1"})  # fmt: skip
    status, _, body = _send(req)
    assert status == 400
    assert json.loads(body)["__type"] == "MissingAuthenticationTokenException"


def test_bad_input_gets_aws_errors_not_500(nubes: NubesServer) -> None:
    headers = {"Content-Type": "application/x-amz-json-1.1"}
    cases = [
        ("AmazonSSM.NoSuchOperation", b"{}", 400, "UnknownOperationException"),
        ("AmazonSSM.GetParameter", b"{not json", 400, "SerializationException"),
        ("AmazonSSM.GetParameter", b"{}", 400, "ValidationException"),
        ("AmazonSSM.GetParameter", b'{"Name": 42}', 400, "SerializationException"),
        ("AmazonSSM.PutParameter", json.dumps({"Name": "x" * 3000, "Value": "v", "Type": "String"}).encode(), 400, "ValidationException"),
        ("NoSuchService_2020.Op", b"{}", 400, "UnknownOperationException"),
    ]
    for target, body, status, code in cases:
        got_status, got_headers, got_body = _send(_signed(nubes, "POST", nubes.endpoint + "/", body, {**headers, "X-Amz-Target": target}))
        assert (got_status, json.loads(got_body)["__type"]) == (status, code), (target, got_body)
        assert got_headers.get("x-amzn-requestid")
    status, _, body = _send(_signed(nubes, "POST", nubes.endpoint + "/", b"{}", {**headers, "X-Amz-Target": "AmazonSSM.GetParameter"}))
    assert b"Value null at 'name' failed to satisfy constraint: Member must not be null" in body


def test_unknown_service_in_scope(nubes: NubesServer) -> None:
    req = _signed(nubes, "GET", nubes.endpoint + "/things", b"", {}, service="nosuchservice")
    status, _, body = _send(req)
    assert status == 400
    assert b"nosuchservice" in body


def test_aws_cli_against_nubes(nubes: NubesServer) -> None:
    env = {**os.environ, **nubes.env_vars()}
    run = lambda *a: subprocess.run(["aws", "--endpoint-url", nubes.endpoint, *a], capture_output=True, text=True, env=env, timeout=60)  # noqa: E731
    out = run("sts", "get-caller-identity")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Account"] == "000000000000"
    out = run("ssm", "put-parameter", "--name", "/cli/db", "--value", "x", "--type", "SecureString")
    assert out.returncode == 0, out.stderr
    out = run("ssm", "get-parameter", "--name", "/cli/db", "--with-decryption")
    assert json.loads(out.stdout)["Parameter"]["Value"] == "x"
    out = run("secretsmanager", "create-secret", "--name", "cli-db", "--secret-string", '{"u":"a"}')
    assert out.returncode == 0, out.stderr
    out = run("secretsmanager", "get-secret-value", "--secret-id", "cli-db")
    assert json.loads(json.loads(out.stdout)["SecretString"]) == {"u": "a"}


def test_no_auth_accepts_any_signature(tmp_path: Path) -> None:
    with NubesServer(tmp_path / "d", extra_args=["--no-auth"]) as server:
        client = server.client("sts", aws_access_key_id="anything", aws_secret_access_key="wrong")
        assert client.get_caller_identity()["Account"] == "000000000000"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_clean_shutdown(tmp_path: Path, sig: signal.Signals) -> None:
    server = NubesServer(tmp_path / "d").start()
    assert server.process is not None
    server.process.send_signal(sig)
    assert server.process.wait(15) == 0
    server.close()


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    """Writers put parameters as fast as they can; the server is killed mid-way;
    every write that was acknowledged is there after a restart."""
    server = NubesServer(tmp_path / "d").start()
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(worker: int) -> None:
        client = boto3.client("ssm", config=Config(retries={"max_attempts": 0}, connect_timeout=2, read_timeout=5), **server.client_kwargs())
        i = 0
        while not stop.is_set():
            name = f"/durable/w{worker}/p{i}"
            try:
                client.put_parameter(Name=name, Value=str(i), Type="String")
            except Exception:
                return
            with lock:
                acked.append(name)
            i += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    server.kill()
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acked) > 20
    server.start()
    try:
        client = server.client("ssm")
        names = {p["Name"] for page in client.get_paginator("get_parameters_by_path").paginate(Path="/durable", Recursive=True) for p in page["Parameters"]}
        missing = [n for n in acked if n not in names]
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:3]}"
    finally:
        server.close()


def test_deeply_nested_input_is_bad_input_not_a_crash(nubes: NubesServer) -> None:
    """A document nested far past any service's limit gets a 400, not a 500."""
    depth = 505  # 1,010 levels: within the JSON decoder's limit of 1,024, past the interpreter's recursion limit
    item = '{"M": {"a": ' * depth + '{"S": "x"}' + "}}" * depth
    body = ('{"TableName": "tbl", "Item": {"k": ' + item + "}}").encode()
    status, _, got = _send(_signed(nubes, "POST", nubes.endpoint + "/", body,
                                   {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "DynamoDB_20120810.PutItem"},
                                   service="dynamodb"))  # fmt: skip
    assert status == 400, got
    assert json.loads(got)["__type"]  # an AWS error, whichever check meets it first
