"""The approval workflow's steps: park the task token on the inspection, then mail
and push the decision once someone approves (POST /inspections/{id}/approve)."""

import os

import boto3
from common import inspections, push

ses = boto3.client("ses")


def request(event, context):
    """Step 1 (.waitForTaskToken): the workflow waits until the token comes back."""
    inspections.update_item(
        Key={"id": event["id"]}, UpdateExpression="SET #s = :s, approval_token = :t",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": "PENDING_APPROVAL", ":t": event["token"]})
    push({"type": "approval_requested", "id": event["id"]})
    return {"waiting": True}


def notify(event, context):
    """Step 2: record the decision, mail it, push it."""
    status = "APPROVED" if event["approved"] else "REJECTED"
    inspections.update_item(
        Key={"id": event["id"]}, UpdateExpression="SET #s = :s, decided_by = :b REMOVE approval_token",
        ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":s": status, ":b": event["by"]})
    ses.send_email(
        Source=os.environ["NOTIFY_FROM"], Destination={"ToAddresses": [os.environ["NOTIFY_TO"]]},
        Message={"Subject": {"Data": f"Inspection {event['id']} {status.lower()}"},
                 "Body": {"Text": {"Data": f"Inspection {event['id']} was {status.lower()} by {event['by']}."}}})
    push({"type": "decision", "id": event["id"], "status": status})
    return {"id": event["id"], "status": status}
