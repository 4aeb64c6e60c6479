"""SQS (S3 upload notifications): record each photo on its inspection and write its
metadata next to it. A failure returns the message to the queue; after two tries it
goes to the dead-letter queue."""

import json
import os
import urllib.parse

import boto3
from common import inspections

s3 = boto3.client("s3")


def process(bucket, key):
    head = s3.head_object(Bucket=bucket, Key=key)
    if not head.get("ContentType", "").startswith("image/"):
        raise ValueError(f"{key} is not an image ({head.get('ContentType')})")
    _, inspection_id, name = key.split("/", 2)
    meta = {"key": key, "size": head["ContentLength"], "content_type": head["ContentType"]}
    s3.put_object(Bucket=bucket, Key=f"processed/{inspection_id}/{name}.json", Body=json.dumps(meta).encode())
    inspections.update_item(Key={"id": inspection_id}, UpdateExpression="SET photos = list_append(photos, :p)",
                            ExpressionAttributeValues={":p": [meta]})


def handler(event, context):
    failures = []
    for message in event["Records"]:
        try:
            for record in json.loads(message["body"]).get("Records", []):
                key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
                process(record["s3"]["bucket"]["name"] or os.environ["BUCKET"], key)
        except Exception as exc:  # reported per message: only this one is retried
            print(f"could not process {message['messageId']}: {exc}")
            failures.append({"itemIdentifier": message["messageId"]})
    return {"batchItemFailures": failures}
