"""A real ``nubes up`` in a child process, for tests and for users' own test suites."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: the role functions made by :meth:`NubesServer.create_function` get (IAM is stored, not enforced)
FUNCTION_ROLE = "arn:aws:iam::000000000000:role/nubes-test"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NubesServer:
    """Starts ``nubes up`` on a free port with its own data dir.

    ``endpoint`` is the URL to give boto3 (``endpoint_url``) or the aws CLI.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        port: int | None = None,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="nubes-")
            data_dir = Path(self._tmp.name)
        self.data_dir = data_dir
        # a port we picked can be taken by another process before the server binds it
        self._port_is_ours = port is None
        self.port = port or free_port()
        self.extra_args = list(extra_args or [])
        self.env = dict(env or {})
        self.region = "us-east-1"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir / "server.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> NubesServer:
        """Start the server and wait until ``/_nubes/health`` answers.

        A port picked by ``free_port`` is only free when it was picked: if another process
        binds it before the server does, the server refuses to start, and it starts again
        on a new free port (a port the caller chose is never changed).
        """
        for _ in range(3):
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                return self._start_once(timeout)
            except RuntimeError:
                taken = b"already in use" in self.log_path.read_bytes()[log_start:]
                if not (self._port_is_ours and taken and self.process and self.process.poll() == 2):
                    raise
                self.port = free_port()
        return self._start_once(timeout)

    def _start_once(self, timeout: float) -> NubesServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "nubes", "up",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--data-dir", str(self.data_dir), *self.extra_args,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("NUBES_")}
        env.update(self.env)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nubes exited with {self.process.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(self.endpoint + "/_nubes/health", timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nubes did not answer within {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        """What the server printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM and wait (a clean shutdown)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash would."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()

    def restart(self) -> NubesServer:
        """Stop (cleanly) and start again on the same port and data dir."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and remove a temporary data dir."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def client_kwargs(self) -> dict[str, Any]:
        """Arguments for ``boto3.client(service, **kwargs)``."""
        return {
            "endpoint_url": self.endpoint,
            "region_name": self.region,
            "aws_access_key_id": "test",
            "aws_secret_access_key": "test",
        }

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for ``service`` pointed at this server."""
        import boto3
        from botocore.config import Config

        args = self.client_kwargs()
        # inject_host_prefix=False: StartSyncExecution and friends would go to
        # "sync-127.0.0.1", which no resolver knows
        args.setdefault("config", Config(retries={"max_attempts": 1}, inject_host_prefix=False))
        args.update(kwargs)
        return boto3.client(service, **args)

    def resource(self, service: str, **kwargs: Any) -> Any:
        """A boto3 resource for ``service`` pointed at this server."""
        import boto3

        args = self.client_kwargs()
        args.update(kwargs)
        return boto3.resource(service, **args)

    def create_function(
        self,
        code: str | Mapping[str, str | bytes],
        *,
        name: str | None = None,
        handler: str = "app.handler",
        runtime: str = "python3.12",
        **config: Any,
    ) -> dict[str, Any]:
        """Create a Lambda function and wait until it is Active; returns its configuration.

        ``code`` is the source of ``app.py``, or ``{path: text or bytes}`` for several
        files. ``name`` defaults to a unique one; ``config`` goes to CreateFunction as it
        is (``Environment``, ``Timeout``, ``Layers`` ...)."""
        files = {"app.py": code} if isinstance(code, str) else dict(code)
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zf:
            for path, content in files.items():
                zf.writestr(path, content)
        lam = self.client("lambda")
        config.setdefault("Role", FUNCTION_ROLE)
        created: dict[str, Any] = lam.create_function(
            FunctionName=name or f"fn-{uuid.uuid4().hex[:10]}", Runtime=runtime, Handler=handler,
            Code={"ZipFile": archive.getvalue()}, **config,
        )  # fmt: skip
        lam.get_waiter("function_active_v2").wait(
            FunctionName=created["FunctionName"], WaiterConfig={"Delay": 0.1, "MaxAttempts": 300}
        )
        return created

    def env_vars(self) -> dict[str, str]:
        """Environment that points SDKs and the aws CLI at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def __enter__(self) -> NubesServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
