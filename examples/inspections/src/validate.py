"""DynamoDB stream: check each new inspection and mark it VALID or INVALID."""

from boto3.dynamodb.types import TypeDeserializer
from common import inspections, push

_des = TypeDeserializer()


def problems(item):
    """What is wrong with an inspection (empty: nothing)."""
    found = []
    if not str(item.get("site", "")).strip():
        found.append("site is required")
    if not isinstance(item.get("findings"), list) or not item.get("findings"):
        found.append("at least one finding is required")
    return found


def handler(event, context):
    for record in event["Records"]:
        image = record["dynamodb"].get("NewImage")
        if record["eventName"] != "INSERT" or not image:
            continue
        item = {k: _des.deserialize(v) for k, v in image.items()}
        errors = problems(item)
        status = "INVALID" if errors else "VALID"
        inspections.update_item(
            Key={"id": item["id"]}, UpdateExpression="SET #s = :s, problems = :p",
            ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": status, ":p": errors})
        push({"type": "validated", "id": item["id"], "status": status, "problems": errors})
