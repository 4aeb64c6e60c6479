"""The Lambda function API and synchronous invokes, through boto3."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections.abc import Callable

import pytest
from botocore.exceptions import ClientError

from nubes.testing.server import NubesServer

from .conftest import ROLE, make_zip

ECHO = """
import os
INIT = os.getpid()
def handler(event, context):
    print("event", event)
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError("boom")
    return {"event": event, "request_id": context.aws_request_id, "foo": os.environ.get("FOO"),
            "version": context.function_version, "endpoint": os.environ.get("AWS_ENDPOINT_URL")}
"""


def _error(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    err = excinfo.value.response["Error"]
    return err["Code"], err.get("Message", "")


def test_create_get_list_delete(nubes: NubesServer, make_function: Callable[..., str]) -> None:
    lam = nubes.client("lambda")
    name = f"crud-{int(time.time() * 1000)}"
    created = lam.create_function(FunctionName=name, Runtime="python3.13", Handler="app.handler", Role=ROLE,
                                  Code={"ZipFile": make_zip({"app.py": ECHO})}, Timeout=10,
                                  Environment={"Variables": {"FOO": "bar"}}, Tags={"team": "x"})  # fmt: skip
    assert created["State"] == "Pending" and created["StateReasonCode"] == "Creating"
    assert created["FunctionArn"] == f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})
    got = lam.get_function(FunctionName=name)
    assert got["Configuration"]["State"] == "Active"
    assert got["Configuration"]["LastUpdateStatus"] == "Successful"
    assert got["Configuration"]["Timeout"] == 10 and got["Tags"] == {"team": "x"}
    zipped = urllib.request.urlopen(got["Code"]["Location"]).read()
    assert zipped[:2] == b"PK"
    listed = [f for f in lam.list_functions(MaxItems=1000)["Functions"] if f["FunctionName"] == name]
    assert len(listed) == 1 and "State" not in listed[0]  # ListFunctions leaves State to GetFunction
    with pytest.raises(ClientError) as err:
        lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role=ROLE,
                            Code={"ZipFile": make_zip({"app.py": ECHO})})  # fmt: skip
    assert _error(err)[0] == "ResourceConflictException"
    lam.delete_function(FunctionName=name)
    with pytest.raises(ClientError) as err:
        lam.get_function(FunctionName=name)
    assert _error(err) == ("ResourceNotFoundException",
                           f"Function not found: arn:aws:lambda:us-east-1:000000000000:function:{name}")  # fmt: skip


def test_bad_code_and_config(nubes: NubesServer) -> None:
    lam = nubes.client("lambda")
    with pytest.raises(ClientError) as err:
        lam.create_function(FunctionName="badzip", Runtime="python3.12", Handler="app.handler", Role=ROLE,
                            Code={"ZipFile": b"not a zip"})  # fmt: skip
    assert _error(err)[0] == "InvalidParameterValueException"
    assert "Could not unzip uploaded file" in _error(err)[1]
    with pytest.raises(ClientError) as err:
        lam.create_function(FunctionName="escape", Runtime="python3.12", Handler="app.handler", Role=ROLE,
                            Code={"ZipFile": make_zip({"../evil.py": "x"})})  # fmt: skip
    assert _error(err)[0] == "InvalidParameterValueException"
    with pytest.raises(ClientError) as err:
        lam.create_function(FunctionName="reserved", Runtime="python3.12", Handler="app.handler", Role=ROLE,
                            Code={"ZipFile": make_zip({"app.py": ECHO})},
                            Environment={"Variables": {"AWS_REGION": "x"}})  # fmt: skip
    assert "reserved keys" in _error(err)[1]
    with pytest.raises(ClientError) as err:
        lam.invoke(FunctionName="does-not-exist")
    assert _error(err)[0] == "ResourceNotFoundException"


def test_invoke_sync(nubes: NubesServer, make_function: Callable[..., str]) -> None:
    lam = nubes.client("lambda")
    name = make_function({"app.py": ECHO}, Environment={"Variables": {"FOO": "bar"}})
    out = lam.invoke(FunctionName=name, Payload=json.dumps({"a": 1}), LogType="Tail")
    body = json.loads(out["Payload"].read())
    request_id = out["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert out["StatusCode"] == 200 and out["ExecutedVersion"] == "$LATEST"
    assert body["event"] == {"a": 1} and body["foo"] == "bar" and body["request_id"] == request_id
    assert body["endpoint"] == nubes.endpoint
    tail = base64.b64decode(out["LogResult"]).decode()
    assert f"START RequestId: {request_id}" in tail and f"REPORT RequestId: {request_id}" in tail
    failed = lam.invoke(FunctionName=name, Payload=b'{"fail": true}')
    assert failed["FunctionError"] == "Unhandled"
    error = json.loads(failed["Payload"].read())
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "boom"
    with pytest.raises(ClientError) as err:
        lam.invoke(FunctionName=name, Payload=b"{not json")
    assert _error(err)[0] == "InvalidRequestContentException"
    dry = lam.invoke(FunctionName=name, InvocationType="DryRun")
    assert dry["StatusCode"] == 204
    assert lam.get_function_code_signing_config(FunctionName=name)["CodeSigningConfigArn"] == ""
    assert lam.get_runtime_management_config(FunctionName=name)["UpdateRuntimeOn"] == "Auto"


def test_update_code_and_configuration(nubes: NubesServer, make_function: Callable[..., str]) -> None:
    lam = nubes.client("lambda")
    name = make_function({"app.py": "def handler(e, c):\n    return 1\n"})
    updated = lam.update_function_code(FunctionName=name,
                                       ZipFile=make_zip({"app.py": "def handler(e, c):\n    return 2\n"}))  # fmt: skip
    assert updated["LastUpdateStatus"] == "InProgress"
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})
    assert lam.invoke(FunctionName=name)["Payload"].read() == b"2"
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"X": "y"}}, MemorySize=256)
    config = lam.get_function_configuration(FunctionName=name)
    assert config["MemorySize"] == 256 and config["Environment"] == {"Variables": {"X": "y"}}
    with pytest.raises(ClientError) as err:
        lam.update_function_configuration(FunctionName=name, Timeout=5, RevisionId="stale")
    assert _error(err)[0] == "PreconditionFailedException"


def test_versions_and_aliases(nubes: NubesServer, make_function: Callable[..., str]) -> None:
    lam = nubes.client("lambda")
    name = make_function({"app.py": "def handler(e, c):\n    return 'v1'\n"})
    v1 = lam.publish_version(FunctionName=name)
    assert v1["Version"] == "1" and v1["FunctionArn"].endswith(f"{name}:1")
    assert lam.publish_version(FunctionName=name)["Version"] == "1"  # nothing changed
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": "def handler(e, c):\n    return 'v2'\n"}),
                             Publish=True)  # fmt: skip
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]]
    assert versions == ["$LATEST", "1", "2"]
    assert lam.invoke(FunctionName=name, Qualifier="1")["Payload"].read() == b'"v1"'
    alias = lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1",
                             RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})  # fmt: skip
    assert alias["AliasArn"].endswith(f"{name}:live")
    seen = {lam.invoke(FunctionName=name, Qualifier="live")["ExecutedVersion"] for _ in range(40)}
    assert seen == {"1", "2"}
    lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2", RoutingConfig={})
    assert lam.invoke(FunctionName=f"{name}:live")["Payload"].read() == b'"v2"'
    with pytest.raises(ClientError) as err:
        lam.delete_function(FunctionName=name, Qualifier="2")
    assert _error(err)[0] == "ResourceConflictException"
    lam.delete_function(FunctionName=name, Qualifier="1")
    assert [a["Name"] for a in lam.list_aliases(FunctionName=name)["Aliases"]] == ["live"]


def test_layers(nubes: NubesServer, make_function: Callable[..., str]) -> None:
    lam = nubes.client("lambda")
    layer = lam.publish_layer_version(LayerName="shared", Content={"ZipFile": make_zip({"python/shared.py": "X = 42\n"})},
                                      CompatibleRuntimes=["python3.12"])  # fmt: skip
    assert layer["Version"] >= 1 and layer["LayerVersionArn"].endswith(f"layer:shared:{layer['Version']}")
    name = make_function({"app.py": "import shared\ndef handler(e, c):\n    return shared.X\n"},
                         Layers=[layer["LayerVersionArn"]])  # fmt: skip
    assert lam.invoke(FunctionName=name)["Payload"].read() == b"42"
    got = lam.get_layer_version_by_arn(Arn=layer["LayerVersionArn"])
    assert got["Content"]["CodeSha256"] == layer["Content"]["CodeSha256"]
    assert "shared" in [entry["LayerName"] for entry in lam.list_layers()["Layers"]]
    lam.delete_layer_version(LayerName="shared", VersionNumber=layer["Version"])
    with pytest.raises(ClientError) as err:
        lam.get_layer_version(LayerName="shared", VersionNumber=layer["Version"])
    assert _error(err)[0] == "ResourceNotFoundException"


def test_concurrency_policy_tags_settings(nubes: NubesServer, make_function: Callable[..., str]) -> None:
    lam = nubes.client("lambda")
    name = make_function({"app.py": "def handler(e, c):\n    return 1\n"})
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with pytest.raises(ClientError) as err:
        lam.invoke(FunctionName=name)
    assert _error(err)[0] == "TooManyRequestsException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 0
    lam.delete_function_concurrency(FunctionName=name)
    assert lam.invoke(FunctionName=name)["StatusCode"] == 200
    statement = json.loads(lam.add_permission(FunctionName=name, StatementId="s3", Action="lambda:InvokeFunction",
                                              Principal="s3.amazonaws.com")["Statement"])  # fmt: skip
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    policy = json.loads(lam.get_policy(FunctionName=name)["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["s3"]
    lam.remove_permission(FunctionName=name, StatementId="s3")
    with pytest.raises(ClientError):
        lam.get_policy(FunctionName=name)
    arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    lam.tag_resource(Resource=arn, Tags={"a": "1", "b": "2"})
    lam.untag_resource(Resource=arn, TagKeys=["a"])
    assert lam.list_tags(Resource=arn)["Tags"] == {"b": "2"}
    settings = lam.get_account_settings()
    assert settings["AccountLimit"]["ConcurrentExecutions"] == 1000
    assert settings["AccountUsage"]["FunctionCount"] >= 1
    eic = lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    assert eic["FunctionArn"].endswith(f"{name}:$LATEST") and eic["MaximumRetryAttempts"] == 0
    lam.update_function_event_invoke_config(FunctionName=name, MaximumEventAgeInSeconds=120)
    got = lam.get_function_event_invoke_config(FunctionName=name)
    assert (got["MaximumRetryAttempts"], got["MaximumEventAgeInSeconds"]) == (0, 120)


def test_function_url(nubes: NubesServer, make_function: Callable[..., str]) -> None:
    lam = nubes.client("lambda")
    source = ("import json\ndef handler(e, c):\n    return {'statusCode': 201, 'headers': {'x-a': 'b'},"
              " 'body': json.dumps({'path': e['rawPath'], 'q': e.get('queryStringParameters'),"
              " 'm': e['requestContext']['http']['method'], 'v': e['version'], 'body': e.get('body')})}\n")  # fmt: skip
    name = make_function({"app.py": source})
    config = lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    url_id = config["FunctionUrl"].split("//")[1].split(".")[0]
    assert config["FunctionUrl"].startswith(f"http://{url_id}.lambda-url.us-east-1.localhost")
    request = urllib.request.Request(f"{nubes.endpoint}/_nubes/lambda-url/{url_id}/items/7?x=1", data=b'{"k": 1}',
                                     headers={"Content-Type": "application/json"}, method="POST")  # fmt: skip
    with urllib.request.urlopen(request) as resp:
        assert resp.status == 201 and resp.headers["x-a"] == "b"
        assert json.loads(resp.read()) == {"path": "/items/7", "q": {"x": "1"}, "m": "POST", "v": "2.0",
                                           "body": '{"k": 1}'}  # fmt: skip
    assert lam.get_function_url_config(FunctionName=name)["AuthType"] == "NONE"
    assert len(lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]) == 1
    lam.delete_function_url_config(FunctionName=name)
    with pytest.raises(ClientError):
        lam.get_function_url_config(FunctionName=name)


def test_logs_metrics_and_usage(nubes: NubesServer, make_function: Callable[..., str]) -> None:
    import datetime as dt

    lam, logs, cw = nubes.client("lambda"), nubes.client("logs"), nubes.client("cloudwatch")
    name = make_function({"app.py": ECHO})
    ids = [lam.invoke(FunctionName=name, Payload=b'{"n": 1}')["ResponseMetadata"]["RequestId"] for _ in range(3)]
    lam.invoke(FunctionName=name, Payload=b'{"fail": 1}')
    # logs and metrics are written by a flusher after the invokes answered: poll each with its own
    # deadline, generous for a loaded machine (a shared 10 s one left the metrics no time at all)
    deadline = time.time() + 30
    messages: list[str] = []
    while time.time() < deadline:
        try:
            events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
        except ClientError:
            events = []
        messages = [e["message"] for e in events]
        if sum(m.startswith("REPORT") for m in messages) == 4:
            break
        time.sleep(0.1)
    for request_id in ids:
        assert any(m.startswith(f"START RequestId: {request_id}") for m in messages)
    now = dt.datetime.now(dt.UTC)
    total = 0.0
    deadline = time.time() + 30
    while time.time() < deadline and total < 4:
        stats = cw.get_metric_statistics(Namespace="AWS/Lambda", MetricName="Invocations",
                                         Dimensions=[{"Name": "FunctionName", "Value": name}],
                                         StartTime=now - dt.timedelta(minutes=5), EndTime=now + dt.timedelta(minutes=5),
                                         Period=60, Statistics=["Sum"])  # fmt: skip
        total = sum(p["Sum"] for p in stats["Datapoints"])
        time.sleep(0.2)
    assert total == 4
    usage = json.loads(urllib.request.urlopen(f"{nubes.endpoint}/_nubes/usage").read())
    row = next(f for f in usage["functions"] if f["function"] == name)
    assert row["requests"] == 4 and row["errors"] == 1 and row["gb_seconds"] > 0


def test_hot_reload_directory(nubes: NubesServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    lam = nubes.client("lambda")
    code_dir = tmp_path_factory.mktemp("hot")
    (code_dir / "app.py").write_text("def handler(e, c):\n    return 'one'\n")
    name = f"hot-{int(time.time() * 1000)}"
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role=ROLE,
                        Code={"S3Bucket": "hot-reload", "S3Key": str(code_dir)})  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})
    assert lam.invoke(FunctionName=name)["Payload"].read() == b'"one"'
    (code_dir / "app.py").write_text("def handler(e, c):\n    return 'two'\n")
    deadline = time.time() + 15
    payload = b""
    while time.time() < deadline and payload != b'"two"':
        time.sleep(0.3)
        payload = lam.invoke(FunctionName=name)["Payload"].read()
    assert payload == b'"two"'
    with pytest.raises(ClientError) as err:
        lam.create_function(FunctionName=name + "x", Runtime="python3.12", Handler="app.handler", Role=ROLE,
                            Code={"S3Bucket": "hot-reload", "S3Key": "relative/dir"})  # fmt: skip
    assert _error(err)[0] == "InvalidParameterValueException"


def test_function_url_by_host_name(nubes: NubesServer, make_function: Callable[..., str]) -> None:
    lam = nubes.client("lambda")
    name = make_function({"app.py": "def handler(e, c):\n    return {'host': e['requestContext']['domainName']}\n"})
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    host = url.split("//")[1].split("/")[0]
    request = urllib.request.Request(f"{nubes.endpoint}/anything", headers={"Host": host})
    with urllib.request.urlopen(request) as resp:
        assert resp.status == 200
        assert json.loads(resp.read()) == {"host": host.split(":")[0]}
    lam.update_function_url_config(FunctionName=name, Cors={"AllowOrigins": ["https://app.example"],
                                                            "AllowMethods": ["GET", "POST"], "MaxAge": 60})  # fmt: skip
    preflight = urllib.request.Request(f"{nubes.endpoint}/x", method="OPTIONS",
                                       headers={"Host": host, "Origin": "https://app.example"})  # fmt: skip
    with urllib.request.urlopen(preflight) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert resp.headers["Access-Control-Allow-Methods"] == "GET,POST"
    other = urllib.request.Request(f"{nubes.endpoint}/x", headers={"Host": host, "Origin": "https://evil.example"})
    with urllib.request.urlopen(other) as resp:
        assert "Access-Control-Allow-Origin" not in resp.headers


def test_code_from_s3(nubes: NubesServer) -> None:
    health = json.loads(urllib.request.urlopen(nubes.endpoint + "/_nubes/health").read())
    if "s3" not in health["services"]:
        pytest.skip("S3 is not in this build")
    lam, s3 = nubes.client("lambda"), nubes.client("s3")
    bucket = f"code-{int(time.time() * 1000)}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="v1.zip", Body=make_zip({"app.py": "def handler(e, c):\n    return 's3-v1'\n"}))
    s3.put_object(Bucket=bucket, Key="v2.zip", Body=make_zip({"app.py": "def handler(e, c):\n    return 's3-v2'\n"}))
    name = f"s3fn-{int(time.time() * 1000)}"
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role=ROLE,
                        Code={"S3Bucket": bucket, "S3Key": "v1.zip"})  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 200})
    assert lam.invoke(FunctionName=name)["Payload"].read() == b'"s3-v1"'
    lam.update_function_code(FunctionName=name, S3Bucket=bucket, S3Key="v2.zip")
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 200})
    assert lam.invoke(FunctionName=name)["Payload"].read() == b'"s3-v2"'
    with pytest.raises(ClientError) as err:
        lam.update_function_code(FunctionName=name, S3Bucket=bucket, S3Key="missing.zip")
    assert _error(err)[0] == "InvalidParameterValueException" and "NoSuchKey" in _error(err)[1]


def test_invoked_function_arn_is_the_callers(nubes: NubesServer, make_function: Callable[..., str]) -> None:
    lam = nubes.client("lambda")
    name = make_function({"app.py": "def handler(e, c):\n    return [c.invoked_function_arn, c.function_version]\n"})
    base = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="prod", FunctionVersion="1")
    assert json.loads(lam.invoke(FunctionName=name)["Payload"].read()) == [base, "$LATEST"]
    assert json.loads(lam.invoke(FunctionName=name, Qualifier="prod")["Payload"].read()) == [f"{base}:prod", "1"]
    assert json.loads(lam.invoke(FunctionName=f"{base}:1")["Payload"].read()) == [f"{base}:1", "1"]
