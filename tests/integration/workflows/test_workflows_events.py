"""Execution status changes reach EventBridge; Map over a Lambda; Express logs."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from nubes.testing.server import NubesServer

ROLE = "arn:aws:iam::000000000000:role/sfn"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _wait(sfn: Any, arn: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        desc = sfn.describe_execution(executionArn=arn)
        if desc["status"] != "RUNNING":
            return dict(desc)
        time.sleep(0.05)
    raise AssertionError(f"execution {arn} still running")


def test_status_change_events(nubes: NubesServer) -> None:
    sfn, events, sqs = (nubes.client(s) for s in ("stepfunctions", "events", "sqs"))
    machine = sfn.create_state_machine(
        name=_name("sm"),
        roleArn=ROLE,
        definition=json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}),
    )["stateMachineArn"]
    queue = sqs.create_queue(QueueName=_name("q"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    rule = _name("rule")
    events.put_rule(
        Name=rule,
        EventPattern=json.dumps(
            {
                "source": ["aws.states"],
                "detail-type": ["Step Functions Execution Status Change"],
                "detail": {"stateMachineArn": [machine]},
            }
        ),
    )
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": queue_arn}])
    run = sfn.start_execution(stateMachineArn=machine, input='{"a": 1}')["executionArn"]
    assert _wait(sfn, run)["status"] == "SUCCEEDED"
    seen: dict[str, dict[str, Any]] = {}
    deadline = time.time() + 10
    while len(seen) < 2 and time.time() < deadline:
        for message in sqs.receive_message(
            QueueUrl=queue, WaitTimeSeconds=1, MaxNumberOfMessages=10
        ).get("Messages", []):
            event = json.loads(message["Body"])
            seen[event["detail"]["status"]] = event
    assert set(seen) == {"RUNNING", "SUCCEEDED"}
    done = seen["SUCCEEDED"]
    assert done["source"] == "aws.states" and done["resources"] == [run]
    assert done["detail"]["executionArn"] == run and done["detail"]["output"] == '{"a":1}'


def test_map_over_lambda_and_express_logging(nubes: NubesServer) -> None:
    sfn, logs = (nubes.client(s) for s in ("stepfunctions", "logs"))
    fn = _name("square")
    nubes.create_function("def handler(e, c):\n    return e['v'] * e['v']\n", name=fn, Role=ROLE)
    group = f"/aws/vendedlogs/states/{_name('g')}"
    logs.create_log_group(logGroupName=group)
    group_arn = f"arn:aws:logs:us-east-1:000000000000:log-group:{group}:*"
    definition = {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "ItemsPath": "$.values",
                "MaxConcurrency": 4,
                "ItemSelector": {"v.$": "$$.Map.Item.Value"},
                "ItemProcessor": {
                    "StartAt": "Sq",
                    "States": {
                        "Sq": {
                            "Type": "Task",
                            "Resource": "arn:aws:states:::lambda:invoke",
                            "Parameters": {"FunctionName": fn, "Payload.$": "$"},
                            "OutputPath": "$.Payload",
                            "End": True,
                        }
                    },
                },
                "End": True,
            }
        },
    }
    machine = sfn.create_state_machine(
        name=_name("map"),
        roleArn=ROLE,
        type="EXPRESS",
        definition=json.dumps(definition),
        loggingConfiguration={
            "level": "ALL",
            "includeExecutionData": True,
            "destinations": [{"cloudWatchLogsLogGroup": {"logGroupArn": group_arn}}],
        },
    )["stateMachineArn"]
    run = sfn.start_execution(stateMachineArn=machine, input=json.dumps({"values": list(range(8))}))
    assert ":express:" in run["executionArn"]
    deadline = time.time() + 60
    lines: list[dict[str, Any]] = []
    while time.time() < deadline and not any(x["type"] == "ExecutionSucceeded" for x in lines):
        time.sleep(0.2)
        found = logs.filter_log_events(logGroupName=group).get("events", [])
        lines = [json.loads(e["message"]) for e in found]
    done = next(x for x in lines if x["type"] == "ExecutionSucceeded")
    assert json.loads(done["details"]["output"]) == [v * v for v in range(8)]
    assert sum(1 for x in lines if x["type"] == "MapIterationSucceeded") == 8
    assert all(x["execution_arn"] == run["executionArn"] for x in lines)


def test_distributed_map_reads_and_writes_s3(nubes: NubesServer) -> None:
    sfn, s3 = nubes.client("stepfunctions"), nubes.client("s3")
    bucket = _name("items")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="in/items.csv", Body=b"id,qty\na,1\nb,2\nc,3\n")
    definition = {
        "StartAt": "M",
        "States": {
            "M": {
                "Type": "Map",
                "End": True,
                "MaxConcurrency": 2,
                "ItemReader": {
                    "Resource": "arn:aws:states:::s3:getObject",
                    "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"},
                    "Parameters": {"Bucket": bucket, "Key": "in/items.csv"},
                },
                "ItemSelector": {"id.$": "$$.Map.Item.Value.id", "qty.$": "$$.Map.Item.Value.qty"},
                "ResultWriter": {
                    "Resource": "arn:aws:states:::s3:putObject",
                    "Parameters": {"Bucket": bucket, "Prefix": "out"},
                },
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
                    "StartAt": "P",
                    "States": {
                        "P": {
                            "Type": "Pass",
                            "Parameters": {"label.$": "States.Format('{}x{}', $.id, $.qty)"},
                            "End": True,
                        }
                    },
                },
            }
        },
    }
    machine = sfn.create_state_machine(
        name=_name("dmap"), roleArn=ROLE, definition=json.dumps(definition)
    )["stateMachineArn"]
    done = _wait(sfn, sfn.start_execution(stateMachineArn=machine)["executionArn"])
    assert done["status"] == "SUCCEEDED", (done.get("error"), done.get("cause"))
    output = json.loads(done["output"])
    assert output["MapRunArn"].split(":")[5] == "mapRun"
    manifest_key = output["ResultWriterDetails"]["Key"]
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    key = manifest["ResultFiles"]["SUCCEEDED"][0]["Key"]
    results = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert sorted(json.loads(r["Output"])["label"] for r in results) == ["ax1", "bx2", "cx3"]
    types = [
        e["type"] for e in sfn.get_execution_history(executionArn=done["executionArn"])["events"]
    ]
    assert "MapRunStarted" in types and "MapRunSucceeded" in types
    runs = sfn.list_map_runs(executionArn=done["executionArn"])["mapRuns"]
    assert [r["mapRunArn"] for r in runs] == [output["MapRunArn"]]
    described = sfn.describe_map_run(mapRunArn=output["MapRunArn"])
    assert described["status"] == "SUCCEEDED" and described["maxConcurrency"] == 2
    assert described["itemCounts"]["succeeded"] == 3 and described["itemCounts"]["total"] == 3


def test_sns_publish_and_standard_logging(nubes: NubesServer) -> None:
    sfn, sns, logs = (nubes.client(s) for s in ("stepfunctions", "sns", "logs"))
    topic = sns.create_topic(Name=_name("t"))["TopicArn"]
    group = f"/aws/vendedlogs/states/{_name('std')}"
    logs.create_log_group(logGroupName=group)
    definition = {
        "StartAt": "Pub",
        "States": {
            "Pub": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sns:publish",
                "Parameters": {"TopicArn": topic, "Message": {"hello.$": "$.who"}},
                "ResultSelector": {"id.$": "$.MessageId"},
                "End": True,
            }
        },
    }
    machine = sfn.create_state_machine(
        name=_name("pub"),
        roleArn=ROLE,
        definition=json.dumps(definition),
        loggingConfiguration={
            "level": "ERROR",
            "includeExecutionData": False,
            "destinations": [
                {
                    "cloudWatchLogsLogGroup": {
                        "logGroupArn": f"arn:aws:logs:us-east-1:000000000000:log-group:{group}:*"
                    }
                }
            ],
        },
    )
    ok = _wait(
        sfn,
        sfn.start_execution(stateMachineArn=machine["stateMachineArn"], input='{"who": "world"}')[
            "executionArn"
        ],
    )
    assert ok["status"] == "SUCCEEDED" and json.loads(ok["output"])["id"]
    bad = _wait(
        sfn,
        sfn.start_execution(stateMachineArn=machine["stateMachineArn"], input="{}")["executionArn"],
    )
    assert bad["status"] == "FAILED" and bad["error"] == "States.Runtime"
    deadline = time.time() + 10
    lines: list[dict[str, Any]] = []
    while time.time() < deadline and not lines:
        found = logs.filter_log_events(logGroupName=group).get("events", [])
        lines = [json.loads(e["message"]) for e in found]
        time.sleep(0.1)
    # level ERROR: only the failed execution's failure events, without execution data
    assert {x["execution_arn"] for x in lines} == {bad["executionArn"]}
    assert [x["type"] for x in lines] == ["ExecutionFailed"]
