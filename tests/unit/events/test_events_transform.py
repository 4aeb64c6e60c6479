"""Target input: Input, InputPath, InputTransformer (AWS's documented examples)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nubes.aws.errors import AwsError
from nubes.services.events.transform import (
    check_target_input,
    extract,
    parse_path,
    render_template,
    target_input,
)

EVENT: dict[str, Any] = {
    "version": "0",
    "id": "7bf73129-1428-4cd3-a780-95db273d1602",
    "detail-type": "EC2 Instance State-change Notification",
    "source": "aws.ec2",
    "account": "123456789012",
    "time": "2015-11-11T21:29:54Z",
    "region": "us-east-1",
    "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
    "detail": {"instance-id": "i-0123456789", "state": "RUNNING", "count": 3, "tags": {"a": 1}},
}
RULE = "arn:aws:events:us-east-1:123456789012:rule/my-rule"


def transformer(template: str, **paths: str) -> dict[str, Any]:
    return {"InputPathsMap": paths, "InputTemplate": template}


def test_parse_and_extract_paths() -> None:
    assert parse_path("$.detail.instance-id") == ["detail", "instance-id"]
    assert parse_path("$.resources[0]") == ["resources", 0]
    assert parse_path("$['detail-type']") == ["detail-type"]
    assert parse_path("$") == []
    assert extract(EVENT, "$.detail.state") == "RUNNING"
    assert extract(EVENT, "$.resources[0]").endswith("i-abcd1111")
    assert extract(EVENT, "$.detail.*") == ["i-0123456789", "RUNNING", 3, {"a": 1}]
    for bad in ("detail", "$..x", "$.a[", "$[x]"):
        with pytest.raises(ValueError):
            parse_path(bad)


def test_input_and_input_path() -> None:
    assert target_input({"Input": '{"fixed": true}'}, EVENT, RULE) == '{"fixed": true}'
    assert json.loads(target_input({"InputPath": "$.detail"}, EVENT, RULE)) == EVENT["detail"]
    assert target_input({"InputPath": "$.nope"}, EVENT, RULE) == "null"
    assert json.loads(target_input({}, EVENT, RULE)) == EVENT


def test_template_json_values_outside_quotes_text_inside() -> None:
    t = transformer(
        '{"instance": <instance>, "state": [9, <state>, true], "n": <count>, '
        '"text": "instance <instance> is in <state>", "tags": <tags>}',
        instance="$.detail.instance-id", state="$.detail.state", count="$.detail.count",
        tags="$.detail.tags",
    )  # fmt: skip
    out = json.loads(render_template(t, EVENT, RULE))
    assert out == {
        "instance": "i-0123456789", "state": [9, "RUNNING", True], "n": 3,
        "text": "instance i-0123456789 is in RUNNING", "tags": {"a": 1},
    }  # fmt: skip


def test_template_string_and_plain_text() -> None:
    t = transformer('"instance <instance> is in <state>"',
                    instance="$.detail.instance-id", state="$.detail.state")  # fmt: skip
    assert render_template(t, EVENT, RULE) == '"instance i-0123456789 is in RUNNING"'
    t = transformer("instance <instance> is in <state>",
                    instance="$.detail.instance-id", state="$.detail.state")  # fmt: skip
    assert render_template(t, EVENT, RULE) == "instance i-0123456789 is in RUNNING"


def test_predefined_variables_and_missing_paths() -> None:
    t = transformer(
        '{"rule": "<aws.events.rule-arn>", "name": "<aws.events.rule-name>", '
        '"at": "<aws.events.event.ingestion-time>", "event": <aws.events.event>, '
        '"json": <aws.events.event.json>, "missing": <gone>, "missing_text": "x<gone>y"}',
        gone="$.detail.nothing",
    )  # fmt: skip
    out = json.loads(render_template(t, EVENT, RULE))
    assert out["rule"] == RULE and out["name"] == "my-rule"
    assert out["at"] == EVENT["time"]
    assert out["event"] == EVENT
    assert json.loads(out["json"]) == EVENT
    assert out["missing"] is None and out["missing_text"] == "xy"


def test_quotes_in_values_stay_valid_json() -> None:
    event = {**EVENT, "detail": {"msg": 'say "hi"\n'}}
    t = transformer('{"m": "<msg>", "raw": <msg>}', msg="$.detail.msg")
    assert json.loads(render_template(t, event, RULE)) == {"m": 'say "hi"\n', "raw": 'say "hi"\n'}


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            {"Id": "t", "Input": "{}", "InputPath": "$"},
            "Only one of Input, InputPath, or InputTransformer",
        ),
        ({"Id": "t", "Input": "{not json"}, "Input is not valid JSON text."),
        ({"Id": "t", "InputPath": "detail"}, "is not a valid JSON path"),
        ({"Id": "t", "InputTransformer": transformer("<x>", x="$..x")}, "is not a valid JSON path"),
        ({"Id": "t", "InputTransformer": transformer("<y>", x="$.x")}, "invalid placeholder <y>"),
        (
            {"Id": "t", "InputTransformer": transformer("<x>", **{"aws.events.x": "$.x"})},
            "reserved",
        ),
        ({"Id": "t", "InputTransformer": {"InputPathsMap": {}}}, "InputTemplate must be provided"),
    ],
)
def test_bad_input_settings(target: dict[str, Any], message: str) -> None:
    with pytest.raises(AwsError) as info:
        check_target_input(target)
    assert info.value.code == "ValidationException"
    assert message in info.value.message
