"""``nubes up | status | ...`` — thin: it calls the same code or the AWS API."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from nubes import __version__
from nubes.settings import Settings

Command = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], None]
COMMANDS: dict[str, Command] = {}
#: subcommands added by other modules: name → (help, configure parser)
EXTRA: dict[str, tuple[str, Configure]] = {}

#: modules that register more subcommands with ``@command(name, help=..., configure=...)``
PLUGIN_MODULES = ("nubes.cli.functions", "nubes.cli.deploy", "nubes.cli.workflows")


def command(
    name: str, help: str | None = None, configure: Configure | None = None
) -> Callable[[Command], Command]:
    """Register a subcommand. Modules other than this one pass ``help`` and
    ``configure`` (adds the command's own arguments) and are listed in
    ``PLUGIN_MODULES``."""

    def register(fn: Command) -> Command:
        COMMANDS[name] = fn
        if help is not None:
            EXTRA[name] = (help, configure or (lambda parser: None))
        return fn

    return register


def _load_plugins() -> None:
    import importlib

    for module in PLUGIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def add_endpoint_args(parser: argparse.ArgumentParser) -> None:
    """``--host``/``--port`` of the nubes to talk to."""
    _common(parser)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on / reach (NUBES_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (NUBES_PORT, default 4566)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nubes", description="A self-hosted serverless platform that speaks AWS.")
    parser.add_argument("--version", action="version", version=f"nubes {__version__}")
    sub = parser.add_subparsers(dest="command")
    up = sub.add_parser("up", help="start the platform (all services, one port)")
    _common(up)
    up.add_argument("--data-dir", help="where state lives (NUBES_DATA_DIR, default ./.nubes)")
    up.add_argument("--store", help="sqlite (default) or postgresql://... (NUBES_STORE)")
    up.add_argument("--broker", help="memory (default) or nats://... (NUBES_BROKER)")
    up.add_argument("--durability", choices=["normal", "full"], help="fsync policy (NUBES_DURABILITY)")
    up.add_argument("--no-auth", action="store_true", default=None, help="do not verify signatures")
    up.add_argument("--log-level", help="debug, info, warning (NUBES_LOG_LEVEL)")
    up.add_argument("--smtp-relay", help="HOST:PORT to forward SES mail to")
    up.add_argument("--deploy", dest="deploy_template", help="deploy this SAM/CloudFormation template at start")
    status = sub.add_parser("status", help="show the health of a running nubes")
    _common(status)
    _load_plugins()
    for name, (text, configure) in sorted(EXTRA.items()):
        extra = sub.add_parser(name, help=text)
        _common(extra)
        configure(extra)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from parsed flags > NUBES_* env > defaults."""
    import dataclasses

    known = {f.name for f in dataclasses.fields(Settings)}
    flags = {k: v for k, v in vars(args).items() if k in known}
    return Settings.load(flags)


def aws_client(args: argparse.Namespace, service: str) -> Any:
    """A boto3 client for the nubes these flags point at (for CLI commands)."""
    import boto3

    settings = settings_from(args)
    return boto3.client(
        service, endpoint_url=settings.endpoint, region_name=settings.default_region,
        aws_access_key_id=next(iter(settings.credentials)),
        aws_secret_access_key=next(iter(settings.credentials.values())),
    )  # fmt: skip


@command("up")
def cmd_up(args: argparse.Namespace) -> int:
    from nubes.server import serve

    settings = settings_from(args)
    if settings.deploy_template:
        from nubes.cli.deploy import deploy_when_up

        deploy_when_up(args, settings.deploy_template)  # deploys once /_nubes/health answers
    return serve(settings)


def fetch_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


@command("status")
def cmd_status(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    try:
        health = fetch_json(settings.endpoint + "/_nubes/health")
    except (urllib.error.URLError, OSError) as exc:
        print(f"nubes is not reachable at {settings.endpoint}: {exc}", file=sys.stderr)
        return 1
    print(f"nubes {health['version']} at {settings.endpoint}: {health['status']}")
    print(f"store: {health['store']}  region: {health['region']}  account: {health['account_id']}")
    print("services: " + ", ".join(f"{k}" for k in health["services"]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return COMMANDS[args.command](args)
