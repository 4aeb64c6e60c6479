"""What the runtime is given (a function version) and what it gives back (a result)."""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nubes.aws.errors import AwsError

#: AWS's limit on a synchronous invocation's response (6 MB plus envelope), in bytes
MAX_SYNC_RESPONSE_BYTES = 6291556


def response_too_large() -> bytes:
    """The payload Invoke returns when the function's response exceeds the limit."""
    return (
        b'{"errorMessage": "Response payload size exceeded maximum allowed payload size ('
        + str(MAX_SYNC_RESPONSE_BYTES).encode()
        + b' bytes).", "errorType": "Function.ResponseSizeTooLarge"}'
    )


@dataclass(frozen=True, kw_only=True)
class FunctionSpec:
    """One version of one function, as the Lambda provider resolves it."""

    name: str
    version: str
    arn: str
    runtime: str
    handler: str
    code_dir: Path
    revision: str
    log_group: str = ""
    region: str = "us-east-1"
    account_id: str = "000000000000"
    layer_dirs: tuple[Path, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    memory_mb: int = 128
    timeout_s: float = 3.0
    ephemeral_mb: int = 512
    reserved_concurrency: int | None = None
    #: LoggingConfig: ``Text`` or ``JSON``, and the JSON format's level filters
    log_format: str = "Text"
    application_log_level: str | None = None
    system_log_level: str | None = None

    @property
    def is_python(self) -> bool:
        """``python3.x``: runs on nubes's own interpreter, forked from the zygote."""
        return self.runtime.startswith("python3")

    @property
    def is_provided(self) -> bool:
        """``provided``, ``provided.al2``, ``provided.al2023``: an executable ``bootstrap``."""
        return self.runtime == "provided" or self.runtime.startswith("provided.")

    @property
    def group_name(self) -> str:
        """The CloudWatch log group (``/aws/lambda/<name>`` unless configured)."""
        return self.log_group or f"/aws/lambda/{self.name}"


@dataclass(kw_only=True)
class InvocationResult:
    """The outcome of one invocation, everything the Invoke API and the logs need."""

    payload: bytes
    #: ``"Unhandled"`` when the function failed (the ``X-Amz-Function-Error`` header)
    function_error: str | None
    #: this invocation's log text including START/END/REPORT
    log_tail: str
    request_id: str
    duration_ms: float
    billed_duration_ms: int
    max_memory_used_mb: int
    init_duration_ms: float | None
    log_stream: str
    #: the payload's ``errorType`` when the function failed (``Runtime.ExitError`` ...)
    error_type: str | None = None
    #: REPORT's status: ``None`` (success), ``"error"`` or ``"timeout"``
    status: str | None = None
    #: the same log text as (epoch ms, message) events, as delivered to ``on_logs``
    log_events: list[tuple[int, str]] = field(default_factory=list)


class TooManyRequests(AwsError):
    """A concurrency limit (the account's or the function's reserved) is reached."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            "TooManyRequestsException",
            "Rate Exceeded.",
            429,
            fields={"Reason": reason, "Type": "User"},
        )
        self.reason = reason


def new_log_stream(version: str) -> str:
    """``YYYY/MM/DD/[$LATEST]<32 hex>``: one stream per instance, as on AWS."""
    return time.strftime("%Y/%m/%d/", time.gmtime()) + f"[{version}]" + secrets.token_hex(16)


def execution_env(runtime: str) -> str:
    """``AWS_EXECUTION_ENV`` for a runtime name (``AWS_Lambda_python3.12``)."""
    return f"AWS_Lambda_{runtime}"


def instance_environment(
    spec: FunctionSpec,
    platform_env: Mapping[str, str],
    *,
    log_stream: str,
    tmp_dir: Path,
    runtime_api: str | None = None,
) -> dict[str, str]:
    """The environment of one instance: base < platform < user < Lambda's reserved variables."""
    bin_dir = str(Path(sys.executable).parent)
    # like AWS's /opt/bin and /opt/lib (+ /var/task/lib): each layer's bin/ and lib/
    paths = [bin_dir, "/usr/local/bin", "/usr/bin", "/bin"]
    paths += [str(layer / "bin") for layer in spec.layer_dirs]
    libs = [str(spec.code_dir / "lib"), *(str(layer / "lib") for layer in spec.layer_dirs)]
    env: dict[str, str] = {
        "PATH": ":".join(paths),
        "LD_LIBRARY_PATH": ":".join(libs),
        "LANG": "en_US.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        # X-Ray's SDK (Powertools Tracer) sends to the usual daemon address and only
        # logs, rather than raises, when it has no segment
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
        "_AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1",
        "_AWS_XRAY_DAEMON_PORT": "2000",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
    }
    env.update(platform_env)
    env.update(spec.environment)
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": spec.group_name,
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": spec.region,
            "AWS_DEFAULT_REGION": spec.region,
            "AWS_EXECUTION_ENV": execution_env(spec.runtime),
            "_HANDLER": spec.handler,
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "LAMBDA_RUNTIME_DIR": str(Path(__file__).parent),
            "TZ": ":UTC",
            "TMPDIR": str(tmp_dir),
            "TMP": str(tmp_dir),
            "TEMP": str(tmp_dir),
        }
    )
    if runtime_api is not None:
        env["AWS_LAMBDA_RUNTIME_API"] = runtime_api
    if spec.log_format.upper() == "JSON":
        env["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
        env["AWS_LAMBDA_LOG_LEVEL"] = (spec.application_log_level or "INFO").upper()
    return env


def python_sys_path(spec: FunctionSpec, runtime_path: list[str]) -> list[str]:
    """Code first, then each layer like ``/opt/python``, then the runtime's own path.

    A layer built for the function's runtime (``python/lib/python3.12/site-packages``)
    is used even when nubes's interpreter is another 3.x: pure-Python packages work
    across versions. The interpreter's own version comes first, then the runtime's.
    """
    local = f"python{sys.version_info.major}.{sys.version_info.minor}"
    preferred = [local, spec.runtime] if spec.runtime != local else [local]
    paths = [str(spec.code_dir)]
    for layer in spec.layer_dirs:
        lib = layer / "python" / "lib"
        found = sorted(p.name for p in lib.glob("python3.*") if p.is_dir()) if lib.is_dir() else []
        for version in preferred + [v for v in found if v not in preferred]:
            site = lib / version / "site-packages"
            if version == local or site.is_dir():
                paths.append(str(site))
        paths.append(str(layer / "python"))
    return paths + [p for p in runtime_path if p not in paths]
