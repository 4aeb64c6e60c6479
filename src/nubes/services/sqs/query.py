"""SQS as the old query protocol spells it.

botocore's SQS model is JSON (``awsQueryCompatible``) and has lost the query
names old SDKs still send and expect: ``Attribute.1.Name``,
``MessageAttribute.1.Value.StringValue``, ``SendMessageBatchRequestEntry.1.Id``,
and ``<Message>``/``<Attribute><Name>…`` in responses. This module rebuilds a
query-protocol view of the same model with those names, which the gateway uses
to parse and serialize form-encoded SQS requests.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from botocore.model import OperationModel, ServiceModel

from nubes.aws.spec import service_model

#: (structure shape, member) → element name of a flattened list/map member
_MEMBER_NAMES: dict[tuple[str, str], str] = {
    ("CreateQueueRequest", "Attributes"): "Attribute",
    ("CreateQueueRequest", "tags"): "Tag",
    ("GetQueueAttributesResult", "Attributes"): "Attribute",
    ("SetQueueAttributesRequest", "Attributes"): "Attribute",
    ("Message", "Attributes"): "Attribute",
    ("Message", "MessageAttributes"): "MessageAttribute",
    ("SendMessageRequest", "MessageAttributes"): "MessageAttribute",
    ("SendMessageRequest", "MessageSystemAttributes"): "MessageSystemAttribute",
    ("SendMessageBatchRequestEntry", "MessageAttributes"): "MessageAttribute",
    ("SendMessageBatchRequestEntry", "MessageSystemAttributes"): "MessageSystemAttribute",
    ("ListQueueTagsResult", "Tags"): "Tag",
    ("TagQueueRequest", "Tags"): "Tag",
    ("MessageAttributeValue", "StringListValues"): "StringListValue",
    ("MessageAttributeValue", "BinaryListValues"): "BinaryListValue",
    ("MessageSystemAttributeValue", "StringListValues"): "StringListValue",
    ("MessageSystemAttributeValue", "BinaryListValues"): "BinaryListValue",
}

#: list shape → element name of its items
_LIST_ITEM_NAMES: dict[str, str] = {
    "AttributeNameList": "AttributeName",
    "ReceiveAttributeNameList": "AttributeName",
    "MessageSystemAttributeList": "MessageSystemAttributeName",
    "MessageAttributeNameList": "MessageAttributeName",
    "MessageList": "Message",
    "QueueUrlList": "QueueUrl",
    "TagKeyList": "TagKey",
    "AWSAccountIdList": "AWSAccountId",
    "ActionNameList": "ActionName",
    "SendMessageBatchRequestEntryList": "SendMessageBatchRequestEntry",
    "SendMessageBatchResultEntryList": "SendMessageBatchResultEntry",
    "DeleteMessageBatchRequestEntryList": "DeleteMessageBatchRequestEntry",
    "DeleteMessageBatchResultEntryList": "DeleteMessageBatchResultEntry",
    "ChangeMessageVisibilityBatchRequestEntryList": "ChangeMessageVisibilityBatchRequestEntry",
    "ChangeMessageVisibilityBatchResultEntryList": "ChangeMessageVisibilityBatchResultEntry",
    "BatchResultErrorEntryList": "BatchResultErrorEntry",
    "ListMessageMoveTasksResultEntryList": "ListMessageMoveTasksResultEntry",
    "StringList": "StringListValue",
    "BinaryList": "BinaryListValue",
}

#: map shape → (key element, value element)
_MAP_ENTRY_NAMES: dict[str, tuple[str, str]] = {
    "QueueAttributeMap": ("Name", "Value"),
    "MessageSystemAttributeMap": ("Name", "Value"),
    "MessageBodyAttributeMap": ("Name", "Value"),
    "MessageBodySystemAttributeMap": ("Name", "Value"),
    "TagMap": ("Key", "Value"),
}

XML_NAMESPACE = "http://queue.amazonaws.com/doc/2012-11-05/"


def relax_receive_attribute_names(model: ServiceModel) -> None:
    """Let ReceiveMessage's (deprecated) AttributeNames carry message attribute names,
    and GetQueueAttributes report unknown names the way SQS does.

    The model types them as queue attribute names, but SDKs and SQS itself accept
    ``ApproximateReceiveCount`` and friends there, so the enum check the wire layer
    applies would refuse valid requests. Patched once in nubes' own copy of the model
    when it loads (botocore clients load their own).
    """
    shapes: dict[str, Any] = model._shape_resolver._shape_map
    if "ReceiveAttributeNameList" in shapes:
        return
    shapes["ReceiveAttributeNameList"] = {
        "type": "list",
        "member": {"shape": "String"},
        "flattened": True,
    }
    shapes["ReceiveMessageRequest"]["members"]["AttributeNames"]["shape"] = (
        "ReceiveAttributeNameList"
    )
    # an empty batch is SQS's EmptyBatchRequest, not a generic "must not be null"
    for request in (
        "SendMessageBatchRequest",
        "DeleteMessageBatchRequest",
        "ChangeMessageVisibilityBatchRequest",
    ):
        shapes[request]["required"] = [m for m in shapes[request]["required"] if m != "Entries"]
    # unknown queue attribute names are SQS's own InvalidAttributeName, not a generic enum error
    shapes["GetQueueAttributesRequest"]["members"]["AttributeNames"]["shape"] = (
        "ReceiveAttributeNameList"
    )


def _query_data() -> dict[str, Any]:
    model = service_model("sqs")  # patched by relax_receive_attribute_names as it loads
    data: dict[str, Any] = {
        "version": "2.0",
        "metadata": {
            **model.metadata,
            "protocol": "query",
            "protocols": ["query"],
            "xmlNamespace": XML_NAMESPACE,
        },
        "operations": {},
        "shapes": copy.deepcopy(model._shape_resolver._shape_map),
    }
    for name in model.operation_names:
        op = model.operation_model(name)
        spec = copy.deepcopy(op._operation_model)
        if "output" in spec:
            spec["output"]["resultWrapper"] = f"{name}Result"
        data["operations"][name] = spec
    shapes = data["shapes"]
    for (shape, member), location in _MEMBER_NAMES.items():
        if member in shapes.get(shape, {}).get("members", {}):
            shapes[shape]["members"][member]["locationName"] = location
    for shape, item in _LIST_ITEM_NAMES.items():
        if shape in shapes:
            shapes[shape]["member"]["locationName"] = item
            shapes[shape]["flattened"] = True
    for shape, (key, value) in _MAP_ENTRY_NAMES.items():
        if shape in shapes:
            shapes[shape]["key"]["locationName"] = key
            shapes[shape]["value"]["locationName"] = value
            shapes[shape]["flattened"] = True
    return data


@cache
def query_model() -> ServiceModel:
    """The SQS model with the query protocol's names."""
    return ServiceModel(_query_data(), service_name="sqs")


def query_operation_model(name: str) -> OperationModel:
    """One operation of the query-protocol SQS model."""
    return query_model().operation_model(name)
