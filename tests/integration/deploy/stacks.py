"""Create-and-wait helpers the deploy integration tests share."""

from __future__ import annotations

import time
from typing import Any


def wait_stack(cfn: Any, name: str, timeout: float) -> dict[str, Any]:
    """The stack once no operation is in progress on it (AssertionError past ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack: dict[str, Any] = cfn.describe_stacks(StackName=name)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            return stack
        time.sleep(0.1)
    raise AssertionError(f"stack {name} still in progress")


def deploy_stack(cfn: Any, name: str, template: str, timeout: float, **kwargs: Any) -> dict[str, Any]:
    """Create a stack, wait, and return its outputs; a failure names the failed resources."""
    cfn.create_stack(StackName=name, TemplateBody=template, **kwargs)
    stack = wait_stack(cfn, name, timeout)
    if stack["StackStatus"] != "CREATE_COMPLETE":
        events = cfn.describe_stack_events(StackName=name)["StackEvents"]
        reasons = [
            (e["LogicalResourceId"], e.get("ResourceStatusReason"))
            for e in events
            if "FAILED" in e["ResourceStatus"]
        ]
        raise AssertionError(f"{stack['StackStatus']}: {reasons}")
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
