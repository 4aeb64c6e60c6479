"""The HTTP API: create/list/get inspections, presign photo uploads, submit, approve."""

import json
import os
import time
import uuid

import boto3
from common import inspections, response

s3 = boto3.client("s3")
events = boto3.client("events")
sfn = boto3.client("stepfunctions")


def handler(event, context):
    route = event["routeKey"]
    user = event["requestContext"]["authorizer"]["jwt"]["claims"].get("email", "unknown")
    item_id = (event.get("pathParameters") or {}).get("id")
    body = json.loads(event.get("body") or "{}")
    if route == "POST /inspections":
        item = {"id": str(uuid.uuid4()), "inspector": user, "status": "NEW", "created": int(time.time()),
                "site": body.get("site", ""), "findings": body.get("findings", []), "photos": []}
        inspections.put_item(Item=item)
        return response(201, item)
    if route == "GET /inspections":
        return response(200, {"items": inspections.scan().get("Items", [])})
    item = inspections.get_item(Key={"id": item_id}).get("Item")
    if item is None:
        return response(404, {"message": f"no inspection {item_id}"})
    if route == "GET /inspections/{id}":
        return response(200, item)
    if route == "POST /inspections/{id}/photos":
        key = f"photos/{item_id}/{uuid.uuid4().hex[:8]}-{body.get('name', 'photo.jpg')}"
        url = s3.generate_presigned_url("put_object", ExpiresIn=900, Params={
            "Bucket": os.environ["BUCKET"], "Key": key, "ContentType": body.get("content_type", "image/jpeg")})
        return response(200, {"url": url, "key": key})
    if route == "POST /inspections/{id}/submit":
        events.put_events(Entries=[{"EventBusName": os.environ["EVENT_BUS"], "Source": "inspections",
                                    "DetailType": "InspectionSubmitted", "Detail": json.dumps({"id": item_id})}])
        return response(202, {"id": item_id, "status": "SUBMITTED"})
    if route == "POST /inspections/{id}/approve":
        if "approval_token" not in item:
            return response(409, {"message": "this inspection is not waiting for approval"})
        decision = {"approved": bool(body.get("approved", True)), "by": user}
        sfn.send_task_success(taskToken=item["approval_token"], output=json.dumps(decision))
        return response(200, decision)
    return response(404, {"message": f"no route {route}"})
