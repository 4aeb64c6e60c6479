"""``nubes executions [STATE_MACHINE]`` — recent Step Functions executions with their
status, through the Step Functions API of a running nubes (``--history ARN`` prints
one execution's history, the events the console draws as a graph)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from nubes.cli.main import aws_client, command


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("state_machine", nargs="?",
                        help="state machine name or ARN (default: every Standard machine)")
    parser.add_argument("--status", choices=["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT",
                                             "ABORTED", "PENDING_REDRIVE"])
    parser.add_argument("--limit", type=int, default=20, help="executions to show (default 20)")
    parser.add_argument("--history", metavar="EXECUTION_ARN",
                        help="print the history events of one execution instead")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _machines(client: Any, wanted: str | None) -> list[dict[str, Any]]:
    machines: list[dict[str, Any]] = []
    for page in client.get_paginator("list_state_machines").paginate():
        machines.extend(page["stateMachines"])
    if wanted is None:
        return [m for m in machines if m.get("type") != "EXPRESS"]
    return [m for m in machines if wanted in (m["name"], m["stateMachineArn"])]


def _when(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def recent(client: Any, wanted: str | None, status: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest executions of the matching machines, newest first."""
    rows: list[dict[str, Any]] = []
    for machine in _machines(client, wanted):
        params: dict[str, Any] = {"stateMachineArn": machine["stateMachineArn"],
                                  "maxResults": limit}
        if status:
            params["statusFilter"] = status
        rows.extend(client.list_executions(**params)["executions"])
    rows.sort(key=lambda r: r["startDate"], reverse=True)
    return rows[:limit]


@command("executions", help="list recent Step Functions executions", configure=_configure)
def cmd_executions(args: argparse.Namespace) -> int:
    """Print a table (or JSON) of recent executions, or one execution's history."""
    from botocore.exceptions import ClientError

    client = aws_client(args, "stepfunctions")
    try:
        if args.history:
            events = client.get_execution_history(executionArn=args.history)["events"]
            for event in events:
                event["timestamp"] = _when(event["timestamp"])
            print(json.dumps(events, indent=2, default=str))
            return 0
        rows = recent(client, args.state_machine, args.status, args.limit)
    except ClientError as exc:
        err = exc.response["Error"]
        print(f"{err.get('Code')}: {err.get('Message')}", file=sys.stderr)
        return 2
    if args.state_machine and not rows and not _machines(client, args.state_machine):
        print(f"no state machine named {args.state_machine}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    print(f"{'STATUS':<10} {'STARTED':<19} {'STOPPED':<19} {'MACHINE':<24} NAME")
    for row in rows:
        machine = row["stateMachineArn"].split(":")[6]
        print(f"{row['status']:<10} {_when(row['startDate']):<19} "
              f"{_when(row.get('stopDate')):<19} {machine:<24} {row['name']}")
    return 0
