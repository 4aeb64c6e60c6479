"""``nubes deploy | delete | stacks | outputs`` — the dev loop, through the
CloudFormation, S3 and Lambda APIs of a running nubes (like ``sam deploy``)."""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path
from typing import Any

from nubes.cli.main import aws_client, command, settings_from

#: a template parameter of this name gets the endpoint of the nubes deployed to
ENDPOINT_PARAMETER = "NubesEndpoint"


def _configure_deploy(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("template", nargs="?", help="SAM/CloudFormation template (default template.yaml)")
    parser.add_argument("--stack-name", help="stack name (default: the template directory's name)")
    parser.add_argument("--parameter-overrides", nargs="*", default=[], metavar="K=V",
                        help="template parameters, Key=Value ...")  # fmt: skip
    parser.add_argument("--watch", action="store_true",
                        help="after deploying, update functions when their source changes "
                        "and re-deploy when the template changes")  # fmt: skip


def default_stack_name(template: Path) -> str:
    """A valid stack name from the template's directory name."""
    name = re.sub(r"[^A-Za-z0-9-]+", "-", template.resolve().parent.name).strip("-")
    return name if name and name[0].isalpha() else f"stack-{name or 'app'}"


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``K=V`` items (also ``ParameterKey=K,ParameterValue=V``, as the aws CLI writes them)."""
    out: dict[str, str] = {}
    for item in items:
        match = re.fullmatch(r"ParameterKey=([^,]+),ParameterValue=(.*)", item)
        if match:
            out[match.group(1)] = match.group(2)
        elif "=" in item:
            key, value = item.split("=", 1)
            out[key] = value
        else:
            raise ValueError(f"parameter override {item!r} is not Key=Value")
    return out


def run_deploy(args: argparse.Namespace, template_path: Path, console: Any) -> Any:
    """Build, upload and deploy once; returns the DeployResult."""
    from nubes.devloop import build, stack

    settings = settings_from(args)
    template = build.load_template(template_path)
    build_root = template_path.resolve().parent / ".nubes" / "build"
    artifacts = build.build(template, template_path.resolve().parent, build_root)
    s3: Any = None
    bucket = ""

    def artifacts_bucket() -> str:
        nonlocal s3, bucket
        if not bucket:
            s3 = aws_client(args, "s3")
            account = aws_client(args, "sts").get_caller_identity()["Account"]
            bucket = build.artifacts_bucket(s3, account, settings.default_region)
        return bucket

    def upload_large(body: str) -> str:
        key = "templates/" + hashlib.sha256(body.encode()).hexdigest() + ".json"
        name = artifacts_bucket()
        s3.put_object(Bucket=name, Key=key, Body=body.encode())
        return f"{settings.endpoint}/{name}/{key}"  # path style: the host is not a bucket

    if artifacts:
        name = artifacts_bucket()
        build.upload(s3, name, artifacts)
        template = build.rewrite(template, name, artifacts)
    parameters = {ENDPOINT_PARAMETER: settings.endpoint}
    parameters.update(parse_overrides(args.parameter_overrides or []))
    cfn = aws_client(args, "cloudformation")
    result = stack.deploy_template(cfn, args.stack_name, template, parameters, console, upload_large)
    stack.print_outputs(console, result.outputs, settings.port)
    verb = "deployed" if result.changed else "up to date"
    console.print(f"[bold green]{args.stack_name} {verb}[/] ({result.status}) in {result.seconds:.2f} s")
    return result


@command("deploy", help="build and deploy a SAM/CloudFormation template (--watch: keep it in sync)",
         configure=_configure_deploy)  # fmt: skip
def cmd_deploy(args: argparse.Namespace) -> int:
    """Deploy, then (``--watch``) follow source and template changes until Ctrl-C."""
    from botocore.exceptions import BotoCoreError, ClientError
    from rich.console import Console

    from nubes.aws.errors import AwsError
    from nubes.devloop.stack import DeployError

    console = Console(highlight=False)
    try:
        template_path = _template(args)
        run_deploy(args, template_path, console)
    except (DeployError, AwsError, ClientError, BotoCoreError, FileNotFoundError, ValueError, RuntimeError) as exc:
        console.print(f"[bold red]deploy failed:[/] {exc}")
        if not args.watch:
            return 1
    if args.watch:
        return _watch(args, template_path, console)
    return 0


def _template(args: argparse.Namespace) -> Path:
    from nubes.devloop.build import find_template

    template_path = find_template(args.template)
    if not template_path.exists():
        raise FileNotFoundError(f"template {template_path} does not exist")
    args.stack_name = args.stack_name or default_stack_name(template_path)
    return template_path


def _watch(args: argparse.Namespace, template_path: Path, console: Any) -> int:
    from nubes.devloop.watch import watch

    def redeploy() -> None:
        run_deploy(args, template_path, console)

    try:
        watch(aws_client(args, "cloudformation"), aws_client(args, "lambda"), args.stack_name, template_path,
              template_path.resolve().parent / ".nubes" / "build", redeploy, console)  # fmt: skip
    except KeyboardInterrupt:
        pass
    return 0


def _configure_stack(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stack", help="stack name")


@command("delete", help="delete a stack and wait until it is gone", configure=_configure_stack)
def cmd_delete(args: argparse.Namespace) -> int:
    """DeleteStack and follow its events."""
    import time

    from rich.console import Console

    from nubes.devloop.stack import describe_stack, wait_stack

    console = Console(highlight=False)
    cfn = aws_client(args, "cloudformation")
    if describe_stack(cfn, args.stack) is None:
        console.print(f"[red]stack {args.stack} does not exist[/]")
        return 1
    since = time.time()
    cfn.delete_stack(StackName=args.stack)
    status = wait_stack(cfn, args.stack, console, since)
    console.print(f"[bold]{args.stack}: {status}[/]")
    return 0 if status == "DELETE_COMPLETE" else 1


@command("stacks", help="list the stacks")
def cmd_stacks(args: argparse.Namespace) -> int:
    """Name, status and last change of every live stack."""
    cfn = aws_client(args, "cloudformation")
    summaries: list[dict[str, Any]] = []
    for page in cfn.get_paginator("list_stacks").paginate():
        summaries += [s for s in page["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]
    if not summaries:
        print("no stacks")
    for s in sorted(summaries, key=lambda s: str(s["StackName"])):
        when = s.get("LastUpdatedTime") or s.get("CreationTime")
        print(f"{s['StackName']:<40} {s['StackStatus']:<24} {when:%Y-%m-%d %H:%M:%S}")
    return 0


@command("outputs", help="print a stack's Outputs (with local URLs for AWS hostnames)", configure=_configure_stack)
def cmd_outputs(args: argparse.Namespace) -> int:
    """Each Output; beside an ``*.execute-api.*.amazonaws.com`` URL, the local one."""
    from rich.console import Console

    from nubes.devloop.stack import describe_stack, print_outputs

    console = Console(highlight=False)
    stack = describe_stack(aws_client(args, "cloudformation"), args.stack)
    if stack is None:
        print(f"stack {args.stack} does not exist", file=sys.stderr)
        return 1
    print_outputs(console, stack.get("Outputs", []), settings_from(args).port)
    return 0


def deploy_when_up(args: argparse.Namespace, template: str, timeout: float = 60.0) -> Any:
    """``nubes up --deploy TEMPLATE``: a background thread waits for /_nubes/health,
    deploys the template, then prints the Outputs, the API URL, the console URL and
    how to sign in. Returns the thread."""
    import threading

    thread = threading.Thread(target=_deploy_at_start, args=(args, template, timeout), name="nubes-deploy", daemon=True)
    thread.start()
    return thread


def _deploy_at_start(args: argparse.Namespace, template: str, timeout: float) -> None:
    import time

    from rich.console import Console

    from nubes.cli.main import fetch_json

    console = Console(highlight=False)
    endpoint = settings_from(args).endpoint
    deadline = time.monotonic() + timeout
    while True:
        try:
            fetch_json(endpoint + "/_nubes/health", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline:
                console.print(f"[red]nubes did not answer at {endpoint}; {template} not deployed[/]")
                return
            time.sleep(0.1)
    deploy_args = argparse.Namespace(**vars(args))
    deploy_args.template, deploy_args.watch = template, False
    deploy_args.stack_name = getattr(args, "stack_name", None)
    deploy_args.parameter_overrides = getattr(args, "parameter_overrides", None) or []
    try:
        result = run_deploy(deploy_args, _template(deploy_args), console)
    except Exception as exc:  # the server keeps running; the user sees why the deploy failed
        console.print(f"[bold red]deploy of {template} failed:[/] {exc}")
        return
    _print_welcome(console, endpoint, {o["OutputKey"]: o["OutputValue"] for o in result.outputs},
                   settings_from(args).port)  # fmt: skip


def _print_welcome(console: Any, endpoint: str, outputs: dict[str, str], port: int) -> None:
    """The API URL, the console URL and, for a Cognito app, how to sign in."""
    from nubes.devloop.stack import local_url

    console.print()
    for key, value in outputs.items():
        local = local_url(value, port)
        if local and local.startswith("http"):
            console.print(f"[bold]API[/]      {local}  ({key})")
    console.print(f"[bold]Console[/]  {endpoint}/_nubes/console")
    client = outputs.get("UserPoolClientId")
    if client:
        console.print(
            "[bold]Sign in[/]  (users are confirmed at sign-up; the API wants the IdToken as a Bearer token)\n"
            f"  export AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1\n"
            f"  aws cognito-idp sign-up --client-id {client} --username you@example.com --password 'choose-a-password-1'\n"
            f"  aws cognito-idp initiate-auth --client-id {client} --auth-flow USER_PASSWORD_AUTH "
            "--auth-parameters USERNAME=you@example.com,PASSWORD=choose-a-password-1 "
            "--query AuthenticationResult.IdToken --output text",
            soft_wrap=True,
        )
