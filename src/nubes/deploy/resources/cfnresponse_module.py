"""The ``cfnresponse`` module CloudFormation puts beside inline (``ZipFile``)
Python code, written for nubes: ``send`` PUTs the custom resource response
document to the event's ``ResponseURL``."""

SOURCE = '''"""Answer a CloudFormation custom resource request (nubes' cfnresponse)."""

import json
import urllib.request

SUCCESS = "SUCCESS"
FAILED = "FAILED"


def send(event, context, responseStatus, responseData, physicalResourceId=None, noEcho=False, reason=None):
    """PUT the response document for ``event`` to its presigned ResponseURL."""
    log_stream = getattr(context, "log_stream_name", "")
    body = {
        "Status": responseStatus,
        "Reason": reason or ("See the details in CloudWatch Log Stream: " + str(log_stream)),
        "PhysicalResourceId": physicalResourceId or log_stream,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "NoEcho": noEcho,
        "Data": responseData,
    }
    data = json.dumps(body).encode("utf-8")
    request = urllib.request.Request(
        event["ResponseURL"], data=data, method="PUT",
        headers={"content-type": "", "content-length": str(len(data))},
    )
    try:
        with urllib.request.urlopen(request) as response:
            print("Status code:", response.status)
    except Exception as exc:
        print("send(..) failed executing request: " + str(exc))
'''
