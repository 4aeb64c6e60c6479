"""Deploy a template through CloudFormation change sets, as ``sam deploy`` does:
CreateChangeSet (CREATE or UPDATE) → wait → ExecuteChangeSet → wait, printing each
resource's progress from DescribeStackEvents and the stack's Outputs at the end."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

NO_CHANGES = "didn't contain changes"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
_DONE = re.compile(r"_(COMPLETE|FAILED)$")
_POLL_S = 0.05
_STATUS_STYLE = {"COMPLETE": "green", "IN_PROGRESS": "yellow", "FAILED": "red"}


class DeployError(Exception):
    """The deploy failed; the message says which resource and why."""


@dataclass
class DeployResult:
    """What a deploy did and the stack's Outputs afterwards."""

    stack_name: str
    status: str
    changed: bool
    outputs: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def describe_stack(cfn: Any, name: str) -> dict[str, Any] | None:
    """The stack, or None when it does not exist."""
    from botocore.exceptions import ClientError

    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return stacks[0] if stacks else None


def _change_set_type(cfn: Any, name: str, console: Console) -> str:
    """CREATE for a new stack (or one left in REVIEW_IN_PROGRESS), UPDATE otherwise;
    a stack that never got created (ROLLBACK_COMPLETE) is deleted first, as sam does."""
    stack = describe_stack(cfn, name)
    if stack is None or stack["StackStatus"] == "REVIEW_IN_PROGRESS":
        return "CREATE"
    if stack["StackStatus"] == "ROLLBACK_COMPLETE":
        console.print(f"[yellow]stack {name} is in ROLLBACK_COMPLETE: deleting it first[/]")
        cfn.delete_stack(StackName=name)
        wait_stack(cfn, name, console, since=0.0)
        return "CREATE"
    return "UPDATE"


def _wait_change_set(cfn: Any, name: str, change_set: str, timeout: float = 300.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        described: dict[str, Any] = cfn.describe_change_set(StackName=name, ChangeSetName=change_set)
        if described["Status"] in ("CREATE_COMPLETE", "FAILED"):
            return described
        if time.monotonic() > deadline:
            raise DeployError(f"change set {change_set} still {described['Status']} after {timeout:.0f}s")
        time.sleep(_POLL_S)


def _print_event(console: Console, event: dict[str, Any]) -> None:
    status = str(event.get("ResourceStatus", ""))
    style = next((s for k, s in _STATUS_STYLE.items() if status.endswith(k)), "white")
    reason = event.get("ResourceStatusReason") or ""
    console.print(
        f"[{style}]{status:<22}[/] {event.get('ResourceType', ''):<36} {event.get('LogicalResourceId', '')}"
        + (f"  [dim]{reason}[/]" if reason else ""),
        highlight=False,
        soft_wrap=True,
    )


def wait_stack(cfn: Any, name: str, console: Console, since: float, timeout: float = 600.0) -> str:
    """Poll events (printing new ones) until the stack reaches a final status."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while True:
        stack = describe_stack(cfn, name)
        try:
            events = cfn.describe_stack_events(StackName=stack["StackId"] if stack else name)["StackEvents"]
        except Exception:  # a deleted stack has no events to show
            events = []
        for event in reversed(events):
            if event["EventId"] in seen or event["Timestamp"].timestamp() < since - 1:
                continue
            seen.add(event["EventId"])
            _print_event(console, event)
        status = "DELETE_COMPLETE" if stack is None else str(stack["StackStatus"])
        if _DONE.search(status) and not status.endswith("CLEANUP_IN_PROGRESS"):
            return status
        if time.monotonic() > deadline:
            raise DeployError(f"stack {name} still {status} after {timeout:.0f}s")
        time.sleep(_POLL_S * 2)


#: CloudFormation's TemplateBody limit; larger templates go through S3 (TemplateURL)
MAX_TEMPLATE_BODY = 51_200


def deploy_template(
    cfn: Any, name: str, template: dict[str, Any], parameters: dict[str, str], console: Console,
    upload_large: Any = None,
) -> DeployResult:  # fmt: skip
    """Create and execute a change set for ``template``; print progress and Outputs.
    ``upload_large(body) -> url`` stores a template over 51,200 bytes in S3."""
    started = time.monotonic()
    declared = template.get("Parameters") or {}
    params = [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items() if k in declared]
    kind = _change_set_type(cfn, name, console)
    change_set = f"nubes-deploy-{uuid.uuid4().hex[:12]}"
    body = json.dumps(template, separators=(",", ":"))
    source = {"TemplateBody": body}
    if len(body.encode()) > MAX_TEMPLATE_BODY and upload_large is not None:
        source = {"TemplateURL": upload_large(body)}
    cfn.create_change_set(
        StackName=name, ChangeSetName=change_set, ChangeSetType=kind, Parameters=params,
        Capabilities=CAPABILITIES, **source,
    )  # fmt: skip
    described = _wait_change_set(cfn, name, change_set)
    if described["Status"] == "FAILED":
        reason = str(described.get("StatusReason", ""))
        if NO_CHANGES in reason:
            cfn.delete_change_set(StackName=name, ChangeSetName=change_set)
            stack = describe_stack(cfn, name) or {}
            console.print(f"[green]No changes to deploy: stack {name} is up to date.[/]")
            return DeployResult(name, str(stack.get("StackStatus", "")), False,
                                stack.get("Outputs", []), time.monotonic() - started)  # fmt: skip
        raise DeployError(f"change set {change_set} failed: {reason}")
    console.print(f"[bold]{'Creating' if kind == 'CREATE' else 'Updating'} stack {name}[/] "
                  f"({len(described.get('Changes', []))} changes)")  # fmt: skip
    since = time.time()
    cfn.execute_change_set(StackName=name, ChangeSetName=change_set)
    status = wait_stack(cfn, name, console, since)
    stack = describe_stack(cfn, name) or {}
    if status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        raise DeployError(f"stack {name} ended in {status}: {first_failure(cfn, name, since)}")
    return DeployResult(name, status, True, stack.get("Outputs", []), time.monotonic() - started)


def first_failure(cfn: Any, name: str, since: float) -> str:
    """The first resource that failed since ``since``, and why (what the user must fix)."""
    events = cfn.describe_stack_events(StackName=name)["StackEvents"]
    for event in reversed(events):
        if event["Timestamp"].timestamp() >= since - 1 and str(event["ResourceStatus"]).endswith("_FAILED"):
            return f"{event['LogicalResourceId']} ({event['ResourceType']}): {event.get('ResourceStatusReason', '')}"
    return "no resource reported a failure"


def local_url(value: str, port: int) -> str | None:
    """The URL on this machine that reaches an AWS-hostname URL from an Output:
    ``https://{api}.execute-api.{region}.amazonaws.com/{stage}`` →
    ``http://{api}.execute-api.localhost:{port}/{stage}`` (same for ``wss://``)."""
    match = re.match(r"^(https?|wss?)://([a-z0-9]+)\.execute-api\.[a-z0-9-]+\.amazonaws\.com(?::\d+)?(/.*)?$", value)
    if match is None:
        return None
    scheme = {"https": "http", "wss": "ws"}.get(match.group(1), match.group(1))
    return f"{scheme}://{match.group(2)}.execute-api.localhost:{port}{match.group(3) or ''}"


def print_outputs(console: Console, outputs: list[dict[str, Any]], port: int) -> None:
    """Outputs as key = value, with the local URL beside AWS-hostname URLs."""
    if not outputs:
        return
    console.print("[bold]Outputs[/]")
    for output in sorted(outputs, key=lambda o: str(o["OutputKey"])):
        value = str(output.get("OutputValue", ""))
        line = f"  {output['OutputKey']} = {value}"
        local = local_url(value, port)
        if local:
            line += f"  [cyan](local: {local})[/]"
        console.print(line, highlight=False, soft_wrap=True)
