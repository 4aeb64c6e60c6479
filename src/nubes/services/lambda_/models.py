"""Lambda's records and names: function references, ARNs, errors, validation."""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from typing import Any

from nubes.aws.errors import AwsError

LATEST = "$LATEST"
DEFAULT_TIMEOUT = 3
DEFAULT_MEMORY = 128
MAX_SYNC_PAYLOAD = 6_291_456
MAX_ASYNC_PAYLOAD = 262_144
MAX_ENV_BYTES = 4096

_NAME = re.compile(r"[a-zA-Z0-9-_]{1,64}")
_QUALIFIER = re.compile(r"\$LATEST|[a-zA-Z0-9-_]{1,128}")
_ARN = re.compile(
    r"arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):function:"
    r"(?P<name>[a-zA-Z0-9-_]+)(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9-_]+))?"
)
_PARTIAL = re.compile(r"(?P<account>\d{12}):function:(?P<name>[a-zA-Z0-9-_]+)(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9-_]+))?")
_PLAIN = re.compile(r"(?P<name>[a-zA-Z0-9-_]{1,64})(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9-_]+))?")
_RESERVED_ENV = frozenset({
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
})  # fmt: skip
_RUNTIMES = re.compile(r"python3\.\d+|provided(\.al2|\.al2023)?|nodejs\d+\.x|java\d+|dotnet\d+|ruby\d\.\d+")


@dataclass(frozen=True)
class FunctionRef:
    """A function named by name, partial ARN or ARN, maybe with a qualifier."""

    name: str
    region: str
    qualifier: str | None


def error(code: str, message: str, status: int | None = None) -> AwsError:
    """A Lambda error (their bodies carry ``Type: User``)."""
    return AwsError(code, message, status, fields={"Type": "User"})


def invalid(message: str) -> AwsError:
    """InvalidParameterValueException."""
    return error("InvalidParameterValueException", message, 400)


def not_found(message: str) -> AwsError:
    """ResourceNotFoundException."""
    return error("ResourceNotFoundException", message, 404)


def conflict(message: str) -> AwsError:
    """ResourceConflictException."""
    return error("ResourceConflictException", message, 409)


def function_arn(region: str, account: str, name: str, qualifier: str | None = None) -> str:
    """``arn:aws:lambda:{region}:{account}:function:{name}[:{qualifier}]``."""
    base = f"arn:aws:lambda:{region}:{account}:function:{name}"
    return f"{base}:{qualifier}" if qualifier else base


def function_not_found(region: str, account: str, name: str, qualifier: str | None = None) -> AwsError:
    """AWS's message names the unqualified ARN (or the qualified one for versions)."""
    return not_found(f"Function not found: {function_arn(region, account, name, qualifier)}")


@functools.lru_cache(maxsize=1024)  # every Invoke names its function: the same few strings
def parse_function_name(value: str, region: str, qualifier: str | None = None) -> FunctionRef:
    """Resolve a ``FunctionName`` parameter (+ ``Qualifier``) the way Lambda does.
    A bad name raises each time (exceptions are not cached)."""
    for regex in (_ARN, _PARTIAL, _PLAIN):
        m = regex.fullmatch(value)
        if m is None:
            continue
        groups = m.groupdict()
        in_name = groups.get("qualifier")
        if in_name and qualifier and in_name != qualifier:
            raise invalid("The derived qualifier from the function name does not match the specified qualifier.")
        qual = qualifier or in_name
        if qual is not None and not _QUALIFIER.fullmatch(qual):
            raise invalid(f"Invalid qualifier: {qual}")
        return FunctionRef(groups["name"], groups.get("region") or region, qual)
    raise error(
        "ValidationException",
        f"1 validation error detected: Value '{value}' at 'functionName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?"
        "(\\d{12}:)?(function:)?([a-zA-Z0-9-_\\.]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?",
        400,
    )


def check_name(name: str) -> None:
    """A new function's name: 1-64 of ``[a-zA-Z0-9-_]``."""
    if not _NAME.fullmatch(name):
        raise error(
            "ValidationException",
            f"1 validation error detected: Value '{name}' at 'functionName' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: [a-zA-Z0-9-_]+",
            400,
        )


def timestamp() -> str:
    """Lambda's ``LastModified`` format: ``2024-01-02T03:04:05.678+0000``."""
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+0000"


def check_config(params: dict[str, Any], *, creating: bool) -> None:
    """Validate what Create/UpdateFunctionConfiguration may set."""
    runtime = params.get("Runtime")
    if runtime is not None and not _RUNTIMES.fullmatch(runtime):
        raise invalid(f"Value {runtime} at 'runtime' failed to satisfy constraint: Member must satisfy enum value set")
    if runtime is not None and not (runtime.startswith("python3") or runtime.startswith("provided")):
        raise invalid(f"The runtime parameter of {runtime} is not supported by nubes; use python3.x or provided.al2023")
    if creating and params.get("PackageType", "Zip") == "Zip" and not params.get("Handler") and not str(runtime or "").startswith("provided"):
        raise invalid("Handler is required for a function with the Zip package type.")
    if creating and params.get("PackageType", "Zip") == "Zip" and not runtime:
        raise invalid("Runtime is required for a function with the Zip package type.")
    if params.get("PackageType") == "Image":
        raise invalid("nubes runs Zip functions only: PackageType Image is not supported")
    timeout = params.get("Timeout")
    if timeout is not None and not 1 <= int(timeout) <= 900:
        raise invalid(f"1 validation error detected: Value '{timeout}' at 'timeout' failed to satisfy constraint: "
                      "Member must have value less than or equal to 900")  # fmt: skip
    memory = params.get("MemorySize")
    if memory is not None and not 128 <= int(memory) <= 10240:
        raise invalid(f"1 validation error detected: Value '{memory}' at 'memorySize' failed to satisfy constraint: "
                      "Member must have value greater than or equal to 128")  # fmt: skip
    env = (params.get("Environment") or {}).get("Variables")
    if env:
        reserved = sorted(k for k in env if k in _RESERVED_ENV)
        if reserved:
            raise invalid(f"Lambda was unable to configure your environment variables because the environment "
                          f"variables you have provided contains reserved keys that are currently not supported "
                          f"for modification. Reserved keys used in this request: {', '.join(reserved)}")  # fmt: skip
        size = sum(len(k) + len(v) for k, v in env.items())
        if size > MAX_ENV_BYTES:
            raise invalid("Lambda was unable to configure your environment variables because the environment "
                          f"variables you have provided exceeded the 4KB limit. String measured: {size}")  # fmt: skip
    role = params.get("Role")
    if role is not None and not re.fullmatch(r"arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+", role):
        raise error("ValidationException",
                    f"1 validation error detected: Value '{role}' at 'role' failed to satisfy constraint: "
                    "Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+",
                    400)  # fmt: skip


def public_config(config: dict[str, Any]) -> dict[str, Any]:
    """A stored configuration as the API returns it (internal keys start with ``_``)."""
    return {k: v for k, v in config.items() if not k.startswith("_")}
