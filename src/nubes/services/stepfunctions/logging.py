"""Execution logs to CloudWatch Logs (``loggingConfiguration``), as AWS writes them
for Express workflows: one JSON line per history event."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import orjson

from nubes.aws.errors import AwsError

if TYPE_CHECKING:
    from nubes.app import App

#: which events each level writes
_ERROR_TYPES = ("Failed", "TimedOut", "Aborted")


def _wanted(level: str, event_type: str) -> bool:
    if level == "ALL":
        return True
    if level == "ERROR":
        return event_type.endswith(_ERROR_TYPES)
    if level == "FATAL":
        return event_type in ("ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted")
    return False


async def log_execution(app: App, doc: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """Write the events of one execution to its log group (if logging is on)."""
    config = doc.get("loggingConfiguration") or {}
    level = config.get("level", "OFF")
    destinations = config.get("destinations") or []
    if level == "OFF" or not destinations:
        return
    group_arn = str(destinations[0].get("cloudWatchLogsLogGroup", {}).get("logGroupArn", ""))
    parts = group_arn.split(":")
    if len(parts) < 7:
        return
    group = parts[6]
    region = parts[3]
    include_data = bool(config.get("includeExecutionData"))
    stream = f"states/{doc['stateMachineArn'].split(':')[6]}/{time.strftime('%Y-%m-%d-%H-%M')}/" \
             f"{uuid.uuid4().hex[:8]}"
    lines = []
    for event in events:
        if not _wanted(level, event["type"]):
            continue
        details: Any = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
        if not include_data and isinstance(details, dict):
            details = {k: v for k, v in details.items() if k not in ("input", "output")}
        line = {"id": str(event["id"]), "type": event["type"], "details": details,
                "previous_event_id": str(event["previousEventId"]),
                "event_timestamp": str(int(event["timestamp"] * 1000)),
                "execution_arn": doc["executionArn"]}
        lines.append({"timestamp": int(event["timestamp"] * 1000),
                      "message": orjson.dumps(line).decode()})
    if not lines:
        return
    try:
        await app.call("logs", "CreateLogStream", {"logGroupName": group,
                                                    "logStreamName": stream}, region=region)
    except AwsError as err:
        if err.code != "ResourceAlreadyExistsException":
            raise
    await app.call("logs", "PutLogEvents", {"logGroupName": group, "logStreamName": stream,
                                             "logEvents": lines}, region=region)
