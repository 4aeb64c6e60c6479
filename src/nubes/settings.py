"""The one configuration object: flags > ``NUBES_*`` environment > defaults.

Nothing else in nubes reads the environment; everything gets its configuration
from the ``Settings`` instance it is handed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PORT = 4566
DEFAULT_ACCOUNT_ID = "000000000000"
DEFAULT_REGION = "us-east-1"


def _parse_bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _parse_credentials(value: str) -> dict[str, str]:
    """``KEY:SECRET,KEY2:SECRET2`` → mapping."""
    creds: dict[str, str] = {}
    for pair in value.split(","):
        pair = pair.strip()
        if not pair:
            continue
        key, _, secret = pair.partition(":")
        if not secret:
            raise ValueError(f"credential {key!r} needs the form ACCESS_KEY:SECRET")
        creds[key] = secret
    return creds


@dataclass(frozen=True)
class Settings:
    """Everything nubes can be configured with.

    Each field's ``metadata["env"]`` names its environment variable.
    """

    host: str = field(default="127.0.0.1", metadata={"env": "NUBES_HOST"})
    port: int = field(default=DEFAULT_PORT, metadata={"env": "NUBES_PORT"})
    data_dir: Path = field(default=Path(".nubes"), metadata={"env": "NUBES_DATA_DIR"})
    #: ``sqlite`` (embedded, in ``data_dir``) or a ``postgresql://`` URL.
    store: str = field(default="sqlite", metadata={"env": "NUBES_STORE"})
    #: ``memory`` (in-process, single node) or a ``nats://`` URL for scale-out.
    broker: str = field(default="memory", metadata={"env": "NUBES_BROKER"})
    #: ``normal`` survives a killed process; ``full`` survives power loss.
    #: HTTPS listener for AWS hostnames (local CA): 0 picks a free port, -1 turns it off
    tls_port: int = field(default=0, metadata={"env": "NUBES_TLS_PORT"})
    durability: str = field(default="normal", metadata={"env": "NUBES_DURABILITY"})
    no_auth: bool = field(default=False, metadata={"env": "NUBES_NO_AUTH"})
    #: the console asks clients off this machine to sign in; ``False`` asks loopback
    #: clients too (nubes behind a reverse proxy on the same machine)
    console_trust_loopback: bool = field(default=True, metadata={"env": "NUBES_CONSOLE_TRUST_LOOPBACK"})
    #: access key id → secret access key accepted by SigV4 verification.
    credentials: Mapping[str, str] = field(
        default_factory=lambda: {"test": "test"}, metadata={"env": "NUBES_CREDENTIALS"}
    )
    account_id: str = field(default=DEFAULT_ACCOUNT_ID, metadata={"env": "NUBES_ACCOUNT_ID"})
    default_region: str = field(default=DEFAULT_REGION, metadata={"env": "NUBES_REGION"})
    log_level: str = field(default="info", metadata={"env": "NUBES_LOG_LEVEL"})
    #: seconds an idle function instance is kept warm before it is stopped.
    lambda_keepalive: float = field(default=300.0, metadata={"env": "NUBES_LAMBDA_KEEPALIVE"})
    #: seconds a node's lease on a running Step Functions execution lasts without
    #: renewal (PostgreSQL clusters): how soon another node adopts a dead node's work
    sfn_lease_seconds: float = field(default=20.0, metadata={"env": "NUBES_SFN_LEASE_SECONDS"})
    #: instances of one function version starting at the same time (0: the CPUs this
    #: process may use); requests beyond wait for an idle instance or a start slot
    lambda_max_starting: int = field(default=0, metadata={"env": "NUBES_LAMBDA_MAX_STARTING"})
    #: account-wide concurrent executions (AWS default 1000).
    lambda_concurrency: int = field(default=1000, metadata={"env": "NUBES_LAMBDA_CONCURRENCY"})
    #: ``HOST:PORT`` of an SMTP server SES forwards mail to; empty keeps it in the mailbox.
    smtp_relay: str = field(default="", metadata={"env": "NUBES_SMTP_RELAY"})
    #: a SAM/CloudFormation template deployed when the server starts (``nubes up --deploy``).
    deploy_template: str = field(default="", metadata={"env": "NUBES_DEPLOY_TEMPLATE"})

    @classmethod
    def load(
        cls, flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> Settings:
        """Build settings: explicit ``flags`` win over ``env`` (default ``os.environ``)."""
        environ = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if flags is not None and flags.get(f.name) is not None:
                values[f.name] = _coerce(f.name, flags[f.name])
                continue
            env_name = f.metadata.get("env")
            if env_name and env_name in environ and environ[env_name] != "":
                values[f.name] = _coerce(f.name, environ[env_name])
        return cls(**values)

    @property
    def endpoint(self) -> str:
        """The URL clients use to reach this server."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def store_backend(self) -> str:
        return "postgresql" if self.store.startswith(("postgresql://", "postgres://")) else "sqlite"


def _coerce(name: str, value: Any) -> Any:
    kind = {f.name: f.type for f in dataclasses.fields(Settings)}[name]
    if not isinstance(value, str):
        if kind == "Path" and not isinstance(value, Path):
            return Path(value)
        return value
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "bool":
        return _parse_bool(value)
    if kind == "Path":
        return Path(value)
    if kind.startswith("Mapping"):
        return _parse_credentials(value)
    return value
