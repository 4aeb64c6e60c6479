"""``nubes invoke | logs | functions | usage`` — thin clients of the Lambda, Logs and
``/_nubes/usage`` APIs of a running nubes."""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from nubes.cli.main import aws_client, command, fetch_json, settings_from

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def _payload(value: str | None) -> bytes:
    """``--payload``: JSON text, or ``@file`` to read it from a file (``@-``: stdin)."""
    if value is None:
        return b"{}"
    if value.startswith("@"):
        source = value[1:]
        return sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    return value.encode()


def _configure_invoke(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="function name or ARN")
    parser.add_argument("--payload", help="event JSON, or @file (@- for stdin)")
    parser.add_argument("--qualifier", help="version or alias")
    parser.add_argument("--event", action="store_true", help="invoke asynchronously (InvocationType=Event)")
    parser.add_argument("--log", action="store_true", help="print the invocation's log tail to stderr")


@command("invoke", help="invoke a function and print its result", configure=_configure_invoke)
def cmd_invoke(args: argparse.Namespace) -> int:
    """Invoke; the result goes to stdout, the log tail (``--log``) and errors to stderr."""
    from botocore.exceptions import ClientError

    client = aws_client(args, "lambda")
    params: dict[str, Any] = {"FunctionName": args.name, "Payload": _payload(args.payload)}
    if args.qualifier:
        params["Qualifier"] = args.qualifier
    if args.event:
        params["InvocationType"] = "Event"
    elif args.log:
        params["LogType"] = "Tail"
    try:
        out = client.invoke(**params)
    except ClientError as exc:
        err = exc.response["Error"]
        print(f"{err.get('Code')}: {err.get('Message')}", file=sys.stderr)
        return 2
    request_id = out["ResponseMetadata"].get("RequestId", "")
    if args.event:
        print(f"queued (StatusCode {out['StatusCode']}, RequestId {request_id})", file=sys.stderr)
        return 0
    if out.get("LogResult"):
        sys.stderr.write(base64.b64decode(out["LogResult"]).decode(errors="replace"))
    sys.stdout.write(out["Payload"].read().decode(errors="replace") + "\n")
    return 1 if out.get("FunctionError") else 0


def _configure_logs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="function name (or a log group starting with /)")
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    parser.add_argument("--since", default="10m", help="how far back to start: 30s, 10m, 2h, 1d (default 10m)")
    parser.add_argument("--filter", dest="filter_pattern", help="CloudWatch Logs filter pattern")


def _since_ms(text: str) -> int:
    m = _DURATION.match(text)
    if m is None:
        raise SystemExit(f"--since: expected a duration like 30s, 10m, 2h or 1d, not {text!r}")
    return int((time.time() - int(m.group(1)) * _UNIT_S[m.group(2)]) * 1000)


@command("logs", help="print (and follow) a function's logs", configure=_configure_logs)
def cmd_logs(args: argparse.Namespace) -> int:
    """FilterLogEvents over the function's log group; ``--follow`` polls for new events."""
    from botocore.exceptions import ClientError

    client = aws_client(args, "logs")
    group = args.name if args.name.startswith("/") else f"/aws/lambda/{args.name}"
    start = _since_ms(args.since)
    seen: set[str] = set()
    while True:
        params: dict[str, Any] = {"logGroupName": group, "startTime": start}
        if args.filter_pattern:
            params["filterPattern"] = args.filter_pattern
        try:
            for page in client.get_paginator("filter_log_events").paginate(**params):
                for event in page["events"]:
                    if event["eventId"] in seen:
                        continue
                    seen.add(event["eventId"])
                    start = max(start, event["timestamp"])
                    stamp = time.strftime("%H:%M:%S", time.localtime(event["timestamp"] / 1000))
                    print(f"{stamp} {event['message'].rstrip()}", flush=True)
        except ClientError as exc:
            if not args.follow or exc.response["Error"]["Code"] != "ResourceNotFoundException":
                print(f"{exc.response['Error']['Code']}: {exc.response['Error'].get('Message')}", file=sys.stderr)
                return 1
        if not args.follow:
            return 0
        try:
            time.sleep(0.5)
        except KeyboardInterrupt:
            return 0


def _table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _usage(args: argparse.Namespace) -> dict[str, Any]:
    doc: dict[str, Any] = fetch_json(settings_from(args).endpoint + "/_nubes/usage")
    return doc


def _ago(epoch: float | None) -> str:
    if not epoch:
        return "-"
    seconds = int(time.time() - epoch)
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


@command("functions", help="list functions with state, concurrency and last invocation")
def cmd_functions(args: argparse.Namespace) -> int:
    """ListFunctions plus each function's reserved concurrency and usage."""
    client = aws_client(args, "lambda")
    functions = [f for page in client.get_paginator("list_functions").paginate() for f in page["Functions"]]
    try:
        usage = {(u["region"], u["function"]): u for u in _usage(args)["functions"]}
    except OSError:
        usage = {}
    rows = [["NAME", "RUNTIME", "STATE", "MEMORY", "TIMEOUT", "CONCURRENCY", "INVOCATIONS", "LAST INVOCATION"]]
    for f in sorted(functions, key=lambda f: f["FunctionName"]):
        full = client.get_function(FunctionName=f["FunctionName"])  # ListFunctions omits State
        reserved = (full.get("Concurrency") or {}).get("ReservedConcurrentExecutions")
        f = full["Configuration"]
        region = f["FunctionArn"].split(":")[3]
        used = usage.get((region, f["FunctionName"]), {})
        rows.append([f["FunctionName"], f.get("Runtime", "-"), f.get("State", "-"), f"{f.get('MemorySize')} MB",
                     f"{f.get('Timeout')} s", "unreserved" if reserved is None else str(reserved),
                     str(used.get("requests", 0)), _ago(used.get("last_invocation"))])  # fmt: skip
    _table(rows)
    return 0


def _configure_usage(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the raw JSON")


@command("usage", help="requests and GB-seconds per function", configure=_configure_usage)
def cmd_usage(args: argparse.Namespace) -> int:
    """The metering behind ``/_nubes/usage``."""
    doc = _usage(args)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    rows = [["FUNCTION", "REGION", "REQUESTS", "ERRORS", "THROTTLES", "GB-SECONDS"]]
    for u in sorted(doc["functions"], key=lambda u: (u["region"], u["function"])):
        rows.append([u["function"], u["region"], str(u["requests"]), str(u["errors"]), str(u["throttles"]),
                     f"{u['gb_seconds']:.6f}"])  # fmt: skip
    total = doc["total"]
    rows.append(["TOTAL", "", str(total["requests"]), str(total["errors"]), str(total["throttles"]),
                 f"{total['gb_seconds']:.6f}"])  # fmt: skip
    _table(rows)
    return 0
