"""WebSocket $connect/$disconnect: remember who is listening."""

from common import connections


def handler(event, context):
    ctx = event["requestContext"]
    if ctx["eventType"] == "CONNECT":
        connections.put_item(Item={"connection_id": ctx["connectionId"]})
    elif ctx["eventType"] == "DISCONNECT":
        connections.delete_item(Key={"connection_id": ctx["connectionId"]})
    return {"statusCode": 200}
