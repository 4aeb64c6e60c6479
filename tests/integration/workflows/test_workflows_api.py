"""Step Functions through boto3 against a real server."""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from nubes.testing.server import NubesServer

ROLE = "arn:aws:iam::000000000000:role/sfn"


def sync_client(nubes: NubesServer) -> Any:
    """A client for StartSyncExecution/TestState, whose endpoints have the host prefix
    "sync-": against a local endpoint the SDK must not add it (as with every local
    AWS emulator)."""
    return nubes.client(
        "stepfunctions", config=Config(inject_host_prefix=False, retries={"max_attempts": 1})
    )


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _machine(sfn: Any, definition: dict[str, Any], **kwargs: Any) -> str:
    out = sfn.create_state_machine(
        name=_name("sm"), definition=json.dumps(definition), roleArn=ROLE, **kwargs
    )
    return str(out["stateMachineArn"])


def _wait(sfn: Any, arn: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        desc = sfn.describe_execution(executionArn=arn)
        if desc["status"] != "RUNNING":
            return dict(desc)
        time.sleep(0.05)
    raise AssertionError(f"execution {arn} still running")


PASS_CHOICE = {
    "StartAt": "A",
    "States": {
        "A": {
            "Type": "Pass",
            "Parameters": {"n.$": "$.n", "doubled.$": "States.MathAdd($.n, $.n)"},
            "Next": "C",
        },
        "C": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.n", "NumericGreaterThan": 1, "Next": "Big"}],
            "Default": "Small",
        },
        "Big": {"Type": "Succeed"},
        "Small": {"Type": "Fail", "Error": "TooSmall", "Cause": "n <= 1"},
    },
}


def test_machine_crud_and_execution(nubes: NubesServer) -> None:
    sfn = nubes.client("stepfunctions")
    arn = _machine(sfn, PASS_CHOICE, tags=[{"key": "team", "value": "a"}])
    desc = sfn.describe_state_machine(stateMachineArn=arn)
    assert desc["status"] == "ACTIVE" and json.loads(desc["definition"]) == PASS_CHOICE
    assert arn in [m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"]]
    assert sfn.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "team", "value": "a"}]

    run = sfn.start_execution(stateMachineArn=arn, name="ok", input='{"n": 3}')
    done = _wait(sfn, run["executionArn"])
    assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == {"n": 3, "doubled": 6}
    # same name and input while done: ExecutionAlreadyExists
    with pytest.raises(ClientError) as err:
        sfn.start_execution(stateMachineArn=arn, name="ok", input='{"n": 3}')
    assert err.value.response["Error"]["Code"] == "ExecutionAlreadyExists"

    failed = _wait(sfn, sfn.start_execution(stateMachineArn=arn, input='{"n": 1}')["executionArn"])
    assert (failed["status"], failed["error"], failed["cause"]) == ("FAILED", "TooSmall", "n <= 1")

    listed = sfn.list_executions(stateMachineArn=arn)["executions"]
    assert {e["status"] for e in listed} == {"SUCCEEDED", "FAILED"}
    only = sfn.list_executions(stateMachineArn=arn, statusFilter="FAILED")["executions"]
    assert [e["executionArn"] for e in only] == [failed["executionArn"]]

    history = sfn.get_execution_history(executionArn=run["executionArn"])["events"]
    types = [e["type"] for e in history]
    assert types == [
        "ExecutionStarted",
        "PassStateEntered",
        "PassStateExited",
        "ChoiceStateEntered",
        "ChoiceStateExited",
        "SucceedStateEntered",
        "SucceedStateExited",
        "ExecutionSucceeded",
    ]
    assert [e["id"] for e in history] == list(range(1, 9))
    assert history[1]["previousEventId"] == 1
    reverse = sfn.get_execution_history(
        executionArn=run["executionArn"], reverseOrder=True, maxResults=2
    )
    assert [e["type"] for e in reverse["events"]] == ["ExecutionSucceeded", "SucceedStateExited"]
    assert reverse["nextToken"]
    for_exec = sfn.describe_state_machine_for_execution(executionArn=run["executionArn"])
    assert json.loads(for_exec["definition"]) == PASS_CHOICE

    sfn.delete_state_machine(stateMachineArn=arn)
    with pytest.raises(ClientError) as err:
        sfn.describe_state_machine(stateMachineArn=arn)
    assert err.value.response["Error"]["Code"] == "StateMachineDoesNotExist"


def test_invalid_definitions_and_inputs(nubes: NubesServer) -> None:
    sfn = nubes.client("stepfunctions")
    bad = {
        "StartAt": "pass1",
        "States": {
            "pass1": {"Type": "Pass", "Next": "pass3"},
            "pass2": {"Type": "Pass", "End": True},
        },
    }
    with pytest.raises(ClientError) as err:
        sfn.create_state_machine(name=_name("bad"), definition=json.dumps(bad), roleArn=ROLE)
    assert err.value.response["Error"]["Code"] == "InvalidDefinition"
    assert (
        "MISSING_TRANSITION_TARGET: Missing 'Next' target: pass3 at /States/pass1/Next"
        in err.value.response["Error"]["Message"]
    )
    result = sfn.validate_state_machine_definition(definition=json.dumps(bad))
    assert result["result"] == "FAIL"
    assert result["diagnostics"][0]["location"] == "/States/pass1/Next"
    assert (
        sfn.validate_state_machine_definition(definition=json.dumps(PASS_CHOICE))["result"] == "OK"
    )

    arn = _machine(sfn, PASS_CHOICE)
    with pytest.raises(ClientError) as err:
        sfn.start_execution(stateMachineArn=arn, input="{not json")
    assert err.value.response["Error"]["Code"] == "InvalidExecutionInput"
    with pytest.raises(ClientError) as err:
        sfn.start_execution(stateMachineArn=arn, name="bad name")
    assert err.value.response["Error"]["Code"] == "InvalidName"
    with pytest.raises(ClientError) as err:
        sfn.send_task_success(taskToken="nope", output="{}")
    assert err.value.response["Error"]["Code"] == "TaskDoesNotExist"
    with pytest.raises(ClientError) as err:
        sfn.describe_execution(executionArn=arn.replace("stateMachine", "execution") + ":zz")
    assert err.value.response["Error"]["Code"] == "ExecutionDoesNotExist"


def test_express_sync_and_versions(nubes: NubesServer) -> None:
    sfn = sync_client(nubes)
    arn = _machine(sfn, PASS_CHOICE, type="EXPRESS", publish=True)
    out = sfn.start_sync_execution(stateMachineArn=arn, input='{"n": 5}')
    assert out["status"] == "SUCCEEDED" and json.loads(out["output"])["doubled"] == 10
    out = sfn.start_sync_execution(stateMachineArn=arn, input='{"n": 0}')
    assert out["status"] == "FAILED" and out["error"] == "TooSmall"
    versions = sfn.list_state_machine_versions(stateMachineArn=arn)["stateMachineVersions"]
    assert versions[0]["stateMachineVersionArn"] == f"{arn}:1"
    alias = sfn.create_state_machine_alias(
        name="live", routingConfiguration=[{"stateMachineVersionArn": f"{arn}:1", "weight": 100}]
    )
    via_alias = sfn.start_sync_execution(
        stateMachineArn=alias["stateMachineAliasArn"], input='{"n": 2}'
    )
    assert via_alias["status"] == "SUCCEEDED"
    with pytest.raises(ClientError) as err:
        sfn.list_executions(stateMachineArn=arn)
    assert err.value.response["Error"]["Code"] == "StateMachineTypeNotSupported"


def test_wait_for_task_token_and_stop(nubes: NubesServer) -> None:
    sfn, sqs = nubes.client("stepfunctions"), nubes.client("sqs")
    queue = sqs.create_queue(QueueName=_name("approvals"))["QueueUrl"]
    definition = {
        "StartAt": "Ask",
        "States": {
            "Ask": {
                "Type": "Task",
                "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {
                    "QueueUrl": queue,
                    "MessageBody": {"token.$": "$$.Task.Token", "who.$": "$.who"},
                },
                "ResultPath": "$.decision",
                "End": True,
            }
        },
    }
    arn = _machine(sfn, definition)
    run = sfn.start_execution(stateMachineArn=arn, input='{"who": "bob"}')
    messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=10)["Messages"]
    body = json.loads(messages[0]["Body"])
    assert body["who"] == "bob"
    sfn.send_task_heartbeat(taskToken=body["token"])
    sfn.send_task_success(taskToken=body["token"], output='{"approved": true}')
    done = _wait(sfn, run["executionArn"])
    assert json.loads(done["output"]) == {"who": "bob", "decision": {"approved": True}}
    with pytest.raises(ClientError) as err:
        sfn.send_task_success(taskToken=body["token"], output="{}")
    assert err.value.response["Error"]["Code"] == "TaskDoesNotExist"

    second = sfn.start_execution(stateMachineArn=arn, name="eve", input='{"who": "eve"}')
    # same name and input while it runs: the same execution (idempotent start)
    again = sfn.start_execution(stateMachineArn=arn, name="eve", input='{"who": "eve"}')
    assert again["executionArn"] == second["executionArn"]
    with pytest.raises(ClientError) as err:
        sfn.start_execution(stateMachineArn=arn, name="eve", input='{"who": "mallory"}')
    assert err.value.response["Error"]["Code"] == "ExecutionAlreadyExists"
    token = json.loads(
        sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=10)["Messages"][0]["Body"]
    )["token"]
    sfn.stop_execution(executionArn=second["executionArn"], error="Cancelled", cause="by test")
    stopped = sfn.describe_execution(executionArn=second["executionArn"])  # at once
    assert stopped["status"] == "ABORTED" and stopped["error"] == "Cancelled"
    with pytest.raises(ClientError) as err:  # the stopped execution's token is gone
        sfn.send_task_success(taskToken=token, output="{}")
    assert err.value.response["Error"]["Code"] == "TaskDoesNotExist"
    types = [
        e["type"] for e in sfn.get_execution_history(executionArn=second["executionArn"])["events"]
    ]
    assert types[-2:] == ["TaskStateAborted", "ExecutionAborted"]


def test_activity_worker(nubes: NubesServer) -> None:
    sfn = nubes.client("stepfunctions")
    activity = sfn.create_activity(name=_name("act"))["activityArn"]
    definition = {
        "StartAt": "Work",
        "States": {
            "Work": {"Type": "Task", "Resource": activity, "HeartbeatSeconds": 30, "End": True}
        },
    }
    arn = _machine(sfn, definition)
    run = sfn.start_execution(stateMachineArn=arn, input='{"job": 7}')
    task = sfn.get_activity_task(activityArn=activity, workerName="w1")
    assert json.loads(task["input"]) == {"job": 7}
    sfn.send_task_success(taskToken=task["taskToken"], output='{"done": 7}')
    done = _wait(sfn, run["executionArn"])
    assert json.loads(done["output"]) == {"done": 7}
    types = [
        e["type"] for e in sfn.get_execution_history(executionArn=run["executionArn"])["events"]
    ]
    assert types[2:5] == ["ActivityScheduled", "ActivityStarted", "ActivitySucceeded"]


def test_test_state(nubes: NubesServer) -> None:
    sfn = sync_client(nubes)
    state = {"Type": "Pass", "Parameters": {"x.$": "$.a"}, "Next": "After"}
    out = sfn.test_state(definition=json.dumps(state), roleArn=ROLE, input='{"a": 1}')
    assert out["status"] == "SUCCEEDED" and json.loads(out["output"]) == {"x": 1}
    assert out["nextState"] == "After"
    data = {k: json.loads(v) for k, v in out["inspectionData"].items()}
    assert data["input"] == {"a": 1} and data["afterInputPath"] == {"a": 1}
    assert data["afterParameters"] == {"x": 1} and data["afterResultPath"] == {"x": 1}
    caught = {
        "Type": "Task",
        "Resource": "arn:aws:states:::dynamodb:getItem",
        "Parameters": {"TableName": "missing-table", "Key": {"k": {"S": "v"}}},
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Handle"}],
        "End": True,
    }
    out = sfn.test_state(definition=json.dumps(caught), roleArn=ROLE, input="{}")
    assert (out["status"], out["nextState"]) == ("CAUGHT_ERROR", "Handle")
    assert out["error"] == "DynamoDB.ResourceNotFoundException"
    fail = {"Type": "Fail", "Error": "E", "Cause": "C"}
    out = sfn.test_state(definition=json.dumps(fail), roleArn=ROLE, input="{}")
    assert (out["status"], out["error"], out["cause"]) == ("FAILED", "E", "C")


def _zip(source: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("app.py", source)
    return buf.getvalue()


def test_lambda_and_dynamodb_integrations(nubes: NubesServer) -> None:
    sfn, lam, ddb = nubes.client("stepfunctions"), nubes.client("lambda"), nubes.client("dynamodb")
    fn = _name("fn")
    lam.create_function(
        FunctionName=fn,
        Runtime="python3.12",
        Handler="app.handler",
        Role=ROLE,
        Code={
            "ZipFile": _zip(
                "def handler(event, context):\n"
                "    if event.get('fail'):\n"
                "        raise ValueError('nope')\n"
                "    return {'echo': event}\n"
            )
        },
    )
    lam.get_waiter("function_active_v2").wait(
        FunctionName=fn, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100}
    )
    table = _name("t")
    ddb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
    )
    fn_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{fn}"
    definition = {
        "StartAt": "Invoke",
        "States": {
            "Invoke": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": fn, "Payload.$": "$"},
                "ResultSelector": {"echo.$": "$.Payload.echo"},
                "ResultPath": "$.r",
                "Catch": [{"ErrorEquals": ["ValueError"], "ResultPath": "$.err", "Next": "Failed"}],
                "Next": "Plain",
            },
            "Plain": {"Type": "Task", "Resource": fn_arn, "ResultPath": "$.plain", "Next": "Put"},
            "Put": {
                "Type": "Task",
                "Resource": "arn:aws:states:::dynamodb:putItem",
                "Parameters": {"TableName": table, "Item": {"pk": {"S.$": "$.id"}}},
                "ResultPath": None,
                "Next": "Get",
            },
            "Get": {
                "Type": "Task",
                "Resource": "arn:aws:states:::aws-sdk:dynamodb:getItem",
                "Parameters": {"TableName": table, "Key": {"pk": {"S.$": "$.id"}}},
                "ResultSelector": {"pk.$": "$.Item.pk.S"},
                "ResultPath": "$.got",
                "End": True,
            },
            "Failed": {"Type": "Pass", "End": True},
        },
    }
    arn = _machine(sfn, definition)
    done = _wait(
        sfn, sfn.start_execution(stateMachineArn=arn, input='{"id": "k1"}')["executionArn"], 60
    )
    assert done["status"] == "SUCCEEDED", done
    output = json.loads(done["output"])
    assert output["r"] == {"echo": {"id": "k1"}}
    assert output["plain"]["echo"]["r"] == {"echo": {"id": "k1"}}
    assert output["got"] == {"pk": "k1"}
    caught = _wait(
        sfn, sfn.start_execution(stateMachineArn=arn, input='{"fail": true}')["executionArn"], 60
    )
    err = json.loads(caught["output"])["err"]
    assert caught["status"] == "SUCCEEDED" and err["Error"] == "ValueError"
    assert json.loads(err["Cause"])["errorMessage"] == "nope"


def test_nested_sync_execution(nubes: NubesServer) -> None:
    sfn = nubes.client("stepfunctions")
    child = _machine(
        sfn,
        {
            "StartAt": "P",
            "States": {"P": {"Type": "Pass", "Parameters": {"child.$": "$.v"}, "End": True}},
        },
    )
    parent = _machine(
        sfn,
        {
            "StartAt": "Run",
            "States": {
                "Run": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::states:startExecution.sync:2",
                    "Parameters": {"StateMachineArn": child, "Input": {"v.$": "$.v"}},
                    "OutputPath": "$.Output",
                    "End": True,
                }
            },
        },
    )
    done = _wait(sfn, sfn.start_execution(stateMachineArn=parent, input='{"v": 9}')["executionArn"])
    assert done["status"] == "SUCCEEDED" and json.loads(done["output"]) == {"child": 9}


def test_heartbeat_timeout_and_limits(nubes: NubesServer) -> None:
    sfn, sqs = nubes.client("stepfunctions"), nubes.client("sqs")
    queue = sqs.create_queue(QueueName=_name("hb"))["QueueUrl"]
    arn = _machine(
        sfn,
        {
            "StartAt": "Ask",
            "States": {
                "Ask": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                    "HeartbeatSeconds": 1,
                    "Parameters": {"QueueUrl": queue, "MessageBody.$": "$$.Task.Token"},
                    "End": True,
                }
            },
        },
    )
    run = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    token = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=10)["Messages"][0]["Body"]
    done = _wait(sfn, run)
    assert (done["status"], done["error"]) == ("FAILED", "States.HeartbeatTimeout")
    types = [e["type"] for e in sfn.get_execution_history(executionArn=run)["events"]]
    assert "TaskTimedOut" in types
    with pytest.raises(ClientError) as err:
        sfn.send_task_success(taskToken=token, output="{}")
    assert err.value.response["Error"]["Code"] == "TaskTimedOut"
    with pytest.raises(ClientError) as err:
        sfn.start_execution(stateMachineArn=arn, input=json.dumps({"x": "y" * 262_144}))
    assert err.value.response["Error"]["Code"] == "ValidationException"


def test_service_errors_are_named_like_aws(nubes: NubesServer) -> None:
    sfn = nubes.client("stepfunctions")
    arn = _machine(
        sfn,
        {
            "StartAt": "Get",
            "States": {
                "Get": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::dynamodb:getItem",
                    "Parameters": {"TableName": "no-such-table", "Key": {"pk": {"S": "x"}}},
                    "Catch": [
                        {"ErrorEquals": ["DynamoDB.ResourceNotFoundException"], "Next": "Sdk"}
                    ],
                    "End": True,
                },
                "Sdk": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::aws-sdk:sqs:getQueueUrl",
                    "Parameters": {"QueueName": "no-such-queue"},
                    "End": True,
                },
            },
        },
    )
    done = _wait(sfn, sfn.start_execution(stateMachineArn=arn)["executionArn"])
    assert done["status"] == "FAILED"
    assert done["error"] == "Sqs.QueueDoesNotExistException"
    history = sfn.get_execution_history(executionArn=done["executionArn"])["events"]
    failed = [e["taskFailedEventDetails"] for e in history if e["type"] == "TaskFailed"]
    assert failed[0]["error"] == "DynamoDB.ResourceNotFoundException"
    assert failed[0]["resourceType"] == "dynamodb" and failed[0]["resource"] == "getItem"


def test_nubes_executions_cli(nubes: NubesServer) -> None:
    import os
    import subprocess
    import sys

    sfn = nubes.client("stepfunctions")
    name = _name("cli")
    arn = sfn.create_state_machine(name=name, roleArn=ROLE, definition=json.dumps(PASS_CHOICE))[
        "stateMachineArn"
    ]
    ok = _wait(
        sfn, sfn.start_execution(stateMachineArn=arn, name="good", input='{"n": 5}')["executionArn"]
    )
    _wait(
        sfn, sfn.start_execution(stateMachineArn=arn, name="bad", input='{"n": 0}')["executionArn"]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUBES_")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nubes", "executions", *args, "--port", str(nubes.port)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    table = run(name)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[0] == "STATUS" and len(lines) == 3
    assert {tuple(line.split()[i] for i in (0, -1)) for line in lines[1:]} == {
        ("SUCCEEDED", "good"),
        ("FAILED", "bad"),
    }
    failed = json.loads(run(name, "--status", "FAILED", "--json").stdout)
    assert [r["name"] for r in failed] == ["bad"]
    history = json.loads(run("--history", ok["executionArn"]).stdout)
    assert history[0]["type"] == "ExecutionStarted" and history[-1]["type"] == "ExecutionSucceeded"
    assert run("no-such-machine").returncode == 1


@pytest.mark.parametrize(
    ("operation", "params", "code"),
    [
        ("create_state_machine", {"name": "x y", "definition": json.dumps(PASS_CHOICE),
                                  "roleArn": ROLE}, "InvalidName"),
        ("create_state_machine", {"name": "arr", "definition": "[1, 2]", "roleArn": ROLE},
         "InvalidDefinition"),
        ("create_state_machine", {"name": "nojson", "definition": "{", "roleArn": ROLE},
         "InvalidDefinition"),
        ("describe_state_machine", {"stateMachineArn": "not-an-arn"}, "InvalidArn"),
        ("start_execution", {"stateMachineArn": "arn:aws:states:us-east-1:000000000000:"
                                                "stateMachine:missing"},
         "StateMachineDoesNotExist"),
        ("describe_activity", {"activityArn": "arn:aws:states:us-east-1:000000000000:"
                                              "activity:missing"}, "ActivityDoesNotExist"),
        ("get_activity_task", {"activityArn": "arn:aws:states:us-east-1:000000000000:"
                                              "activity:missing"}, "ActivityDoesNotExist"),
        ("send_task_success", {"taskToken": "x" * 10, "output": "not json"}, "InvalidOutput"),
        ("send_task_failure", {"taskToken": "unknown"}, "TaskDoesNotExist"),
        ("send_task_heartbeat", {"taskToken": "unknown"}, "TaskDoesNotExist"),
        ("list_tags_for_resource", {"resourceArn": "arn:aws:states:us-east-1:000000000000:"
                                                   "stateMachine:missing"}, "ResourceNotFound"),
        ("test_state", {"definition": "{", "roleArn": ROLE}, "InvalidDefinition"),
        ("test_state", {"definition": json.dumps({"Type": "Bogus"}), "roleArn": ROLE},
         "InvalidDefinition"),
    ],
)
def test_bad_input(nubes: NubesServer, operation: str, params: dict[str, Any], code: str) -> None:
    sfn = sync_client(nubes)
    with pytest.raises(ClientError) as err:
        getattr(sfn, operation)(**params)
    assert err.value.response["Error"]["Code"] == code


def test_history_paging_and_bad_token(nubes: NubesServer) -> None:
    sfn = nubes.client("stepfunctions")
    arn = _machine(sfn, PASS_CHOICE)
    run = _wait(sfn, sfn.start_execution(stateMachineArn=arn, input='{"n": 4}')["executionArn"])
    first = sfn.get_execution_history(executionArn=run["executionArn"], maxResults=3)
    rest = sfn.get_execution_history(executionArn=run["executionArn"],
                                     nextToken=first["nextToken"])
    ids = [e["id"] for e in first["events"] + rest["events"]]
    assert ids == list(range(1, 9)) and "nextToken" not in rest
    with pytest.raises(ClientError) as err:
        sfn.get_execution_history(executionArn=run["executionArn"], nextToken="garbage")
    assert err.value.response["Error"]["Code"] == "InvalidToken"
    lean = sfn.get_execution_history(executionArn=run["executionArn"],
                                     includeExecutionData=False)["events"]
    assert "input" not in lean[0]["executionStartedEventDetails"]


def test_redrive_failed_execution(nubes: NubesServer) -> None:
    sfn, ddb = nubes.client("stepfunctions"), nubes.client("dynamodb")
    table = _name("later")
    arn = _machine(sfn, {"StartAt": "First", "States": {
        "First": {"Type": "Pass", "Result": "one", "ResultPath": "$.first", "Next": "Put"},
        "Put": {"Type": "Task", "Resource": "arn:aws:states:::dynamodb:putItem",
                "Parameters": {"TableName": table, "Item": {"pk": {"S": "k"}}},
                "ResultPath": None, "End": True}}})
    failed = _wait(sfn, sfn.start_execution(stateMachineArn=arn)["executionArn"])
    assert failed["status"] == "FAILED" and failed["redriveStatus"] == "REDRIVABLE"
    ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    sfn.redrive_execution(executionArn=failed["executionArn"])
    done = _wait(sfn, failed["executionArn"])
    assert done["status"] == "SUCCEEDED" and done["redriveCount"] == 1
    assert json.loads(done["output"]) == {"first": "one"}
    assert done["redriveStatus"] == "NOT_REDRIVABLE"
    events = sfn.get_execution_history(executionArn=failed["executionArn"])["events"]
    types = [e["type"] for e in events]
    assert types.count("ExecutionFailed") == 1 and "ExecutionRedriven" in types
    assert types.count("PassStateEntered") == 1  # resumed at the failed Task, not the start
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    with pytest.raises(ClientError) as err:
        sfn.redrive_execution(executionArn=failed["executionArn"])
    assert err.value.response["Error"]["Code"] == "ExecutionNotRedrivable"
    assert ddb.get_item(TableName=table, Key={"pk": {"S": "k"}})["Item"]


def test_versions_aliases_and_updates(nubes: NubesServer) -> None:
    sfn = nubes.client("stepfunctions")
    arn = _machine(sfn, {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": "v1",
                                                          "End": True}}})
    v1 = sfn.publish_state_machine_version(stateMachineArn=arn, description="first")
    assert v1["stateMachineVersionArn"] == f"{arn}:1"
    update = sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(
        {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": "v2", "End": True}}}),
        publish=True)
    assert update["stateMachineVersionArn"] == f"{arn}:2"
    alias = sfn.create_state_machine_alias(name="prod", routingConfiguration=[
        {"stateMachineVersionArn": f"{arn}:1", "weight": 100}])["stateMachineAliasArn"]
    run = _wait(sfn, sfn.start_execution(stateMachineArn=alias)["executionArn"])
    assert json.loads(run["output"]) == "v1" and run["stateMachineAliasArn"] == alias
    assert run["stateMachineVersionArn"] == f"{arn}:1"
    started = sfn.get_execution_history(executionArn=run["executionArn"])["events"][0]
    assert started["executionStartedEventDetails"]["stateMachineAliasArn"] == alias
    latest = _wait(sfn, sfn.start_execution(stateMachineArn=arn)["executionArn"])
    assert json.loads(latest["output"]) == "v2"
    assert json.loads(sfn.describe_state_machine(stateMachineArn=f"{arn}:1")["definition"])[
        "States"]["P"]["Result"] == "v1"
    listed = sfn.list_executions(stateMachineArn=alias)["executions"]
    assert [e["executionArn"] for e in listed] == [run["executionArn"]]
    with pytest.raises(ClientError) as err:
        sfn.delete_state_machine_version(stateMachineVersionArn=f"{arn}:1")
    assert err.value.response["Error"]["Code"] == "ConflictException"
    sfn.update_state_machine_alias(stateMachineAliasArn=alias, routingConfiguration=[
        {"stateMachineVersionArn": f"{arn}:2", "weight": 100}])
    assert sfn.describe_state_machine_alias(stateMachineAliasArn=alias)[
        "routingConfiguration"][0]["stateMachineVersionArn"] == f"{arn}:2"
    sfn.delete_state_machine_version(stateMachineVersionArn=f"{arn}:1")
    assert [v["stateMachineVersionArn"] for v in sfn.list_state_machine_versions(
        stateMachineArn=arn)["stateMachineVersions"]] == [f"{arn}:2"]
    assert [a["stateMachineAliasArn"] for a in sfn.list_state_machine_aliases(
        stateMachineArn=arn)["stateMachineAliases"]] == [alias]
