"""What the functions share: clients, the tables, HTTP responses, WebSocket pushes."""

import json
import os
from decimal import Decimal
from typing import Any

import boto3

dynamodb = boto3.resource("dynamodb")
inspections = dynamodb.Table(os.environ["TABLE"])
connections = dynamodb.Table(os.environ["CONNECTIONS_TABLE"])


def _plain(value: Any) -> Any:
    return int(value) if isinstance(value, Decimal) and value % 1 == 0 else float(value)


def response(status: int, body: Any) -> dict[str, Any]:
    """An HTTP API (payload 2.0) response with a JSON body."""
    return {"statusCode": status, "headers": {"content-type": "application/json"},
            "body": json.dumps(body, default=_plain)}


def push(message: dict[str, Any]) -> int:
    """Send ``message`` to every connected WebSocket client; forget gone ones."""
    client = boto3.client("apigatewaymanagementapi")
    sent = 0
    for item in connections.scan().get("Items", []):
        try:
            client.post_to_connection(ConnectionId=item["connection_id"], Data=json.dumps(message, default=_plain).encode())
            sent += 1
        except client.exceptions.GoneException:
            connections.delete_item(Key={"connection_id": item["connection_id"]})
    return sent
