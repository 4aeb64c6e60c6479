"""The web console: its page, static files and every JSON API endpoint, on a populated nubes."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from nubes.testing.server import NubesServer


def test_page_and_static_files_load(console: Any, nubes: NubesServer) -> None:
    status, kind, body = console.get("/_nubes/console/")
    assert status == 200 and kind.startswith("text/html")
    assert b"/_nubes/console/static/app.js" in body
    for name, expected in (
        ("app.js", "text/javascript"),
        ("graph.js", "text/javascript"),
        ("style.css", "text/css"),
    ):
        status, kind, body = console.get(f"/_nubes/console/static/{name}")
        assert status == 200 and kind.startswith(expected) and body
    status, _, _ = console.get("/_nubes/console/static/nope.js")
    assert status == 404


def test_unknown_endpoint_and_bad_input_are_json_errors(console: Any, nubes: NubesServer) -> None:
    status, kind, body = console.get("/_nubes/console/api/nothing")
    assert status == 404 and kind.startswith("application/json") and "error" in json.loads(body)
    status, _, body = console.get("/_nubes/console/api/table")
    assert status == 400 and "name" in json.loads(body)["error"]["message"]
    status, _, body = console.get("/_nubes/console/api/table?name=no-such-table-here")
    assert status == 400 and json.loads(body)["error"]["code"] == "ResourceNotFoundException"
    status, _, body = console.get("/_nubes/console/api/table?name=x&start=%7Bnot")
    assert status == 400
    status, _, body = console.get("/_nubes/console/api/table?name=x&start=%5B1%5D")
    assert status == 400 and "JSON object" in json.loads(body)["error"]["message"]
    status, _, body = console.get(
        "/_nubes/console/api/execution?arn=arn:aws:states:us-east-1:000000000000:execution:none:x"
    )
    assert status == 400 and json.loads(body)["error"]["code"] == "ExecutionDoesNotExist"
    status, _, _ = console.get("/_nubes/console/api/mail", "POST", b"")
    assert status == 404


def test_overview_and_functions(console: Any, nubes: NubesServer, world: dict[str, str]) -> None:
    doc = console.api("overview")
    assert doc["health"]["version"] and "lambda" in doc["health"]["services"]
    assert doc["health"]["endpoint"] == nubes.endpoint
    assert "console" not in doc["health"]["services"]  # a hook, not an AWS service
    listed = {f["FunctionName"]: f for f in console.api("functions")["functions"]}
    mine = listed[world["function"]]
    assert mine["State"] == "Active" and mine["Usage"]["requests"] >= 1
    assert abs(time.time() - float(mine["Usage"]["last_invocation"])) < 600
    detail = console.api("function", name=world["function"])
    assert detail["function"]["Configuration"]["FunctionName"] == world["function"]
    out = console.api("invoke", "POST", b'{"ping": 7}', name=world["function"])
    assert json.loads(out["Payload"]) == {"echo": {"ping": 7}}
    assert "console-test saw" in out["Logs"]
    bad = console.get(f"/_nubes/console/api/invoke?name={world['function']}", "POST", b"{oops")
    assert bad[0] == 400
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        events = console.api("function", name=world["function"])["events"]
        if any("console-test saw" in e["message"] for e in events):
            break
        time.sleep(0.2)
    assert any("console-test saw" in e["message"] for e in events)


def test_tables_page_through_items(console: Any, nubes: NubesServer, world: dict[str, str]) -> None:
    tables = {t["TableName"]: t for t in console.api("tables")["tables"]}
    assert world["table"] in tables
    first = console.api("table", name=world["table"])
    assert len(first["Items"]) == 50 and first["LastEvaluatedKey"]
    second = console.api("table", name=world["table"], start=json.dumps(first["LastEvaluatedKey"]))
    assert len(second["Items"]) == 10
    keys = {i["pk"]["S"] for i in first["Items"] + second["Items"]}
    assert len(keys) == 60


def test_buckets_objects_and_download(
    console: Any, nubes: NubesServer, world: dict[str, str]
) -> None:
    assert world["bucket"] in {b["Name"] for b in console.api("buckets")["buckets"]}
    top = console.api("objects", bucket=world["bucket"])
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["docs/"]
    inside = console.api("objects", bucket=world["bucket"], prefix="docs/")
    assert [o["Key"] for o in inside["Contents"]] == ["docs/readme.txt"]
    status, _, body = console.get(
        f"/_nubes/console/api/object?bucket={world['bucket']}&key=docs/readme.txt"
    )
    assert status == 200 and body == b"console bytes"
    status, kind, _ = console.get(
        f"/_nubes/console/api/object?bucket={world['bucket']}&key=missing"
    )
    assert status == 404 and kind.startswith("application/json")


def test_queues_topics_rules_pools_apis_stacks(
    console: Any, nubes: NubesServer, world: dict[str, str]
) -> None:
    queues = {q["Name"]: q for q in console.api("queues")["queues"]}
    assert queues[world["queue"]]["ApproximateNumberOfMessages"] == "1"
    assert world["topic"] in {t["Name"] for t in console.api("topics")["topics"]}
    assert "default" in {b["Name"] for b in console.api("rules")["buses"]}
    assert isinstance(console.api("userpools")["pools"], list)
    assert isinstance(console.api("apis")["apis"], list)
    assert isinstance(console.api("stacks")["stacks"], list)


def test_api_urls(console: Any, nubes: NubesServer) -> None:
    apigw = nubes.client("apigatewayv2")
    api_id = apigw.create_api(Name="console-http", ProtocolType="HTTP")["ApiId"]
    apigw.create_stage(ApiId=api_id, StageName="$default")
    rows = {a["id"]: a for a in console.api("apis")["apis"]}
    port = nubes.endpoint.rsplit(":", 1)[1]
    assert rows[api_id]["urls"] == [f"http://{api_id}.execute-api.localhost:{port}"]


def test_user_pool_users(console: Any, nubes: NubesServer) -> None:
    idp = nubes.client("cognito-idp")
    pool = idp.create_user_pool(PoolName="console-pool")["UserPool"]["Id"]
    idp.admin_create_user(UserPoolId=pool, Username="ada")
    assert [u["Username"] for u in console.api("users", pool=pool)["Users"]] == ["ada"]


def test_mailbox_lists_and_clears(console: Any, nubes: NubesServer, world: dict[str, str]) -> None:
    messages = console.api("mail")["messages"]
    mine = [m for m in messages if m.get("Subject") == f"Console {world['tag']}"]
    assert mine and "hi there" in json.dumps(mine[0])
    assert console.api("mail", "DELETE") == {"cleared": True}
    assert console.api("mail")["messages"] == []


def test_execution_graph_has_statuses(
    console: Any, nubes: NubesServer, world: dict[str, str]
) -> None:
    machines = {m["name"]: m for m in console.api("statemachines")["machines"]}
    assert world["machine"] in machines
    listed = console.api("executions", arn=world["machine_arn"], status="SUCCEEDED")["executions"]
    assert [e["executionArn"] for e in listed] == [world["execution_arn"]]
    assert console.api("executions", arn=world["machine_arn"], status="FAILED")["executions"] == []
    graph = console.api("graph", arn=world["execution_arn"])
    assert graph["execution_status"] == "SUCCEEDED"
    nodes = {n["name"]: n for n in graph["nodes"]}
    assert {n: nodes[n]["status"] for n in ("Prepare", "Fan", "Left", "Each", "Item", "Decide", "Done", "Broken")} == {
        "Prepare": "succeeded", "Fan": "succeeded", "Left": "succeeded", "Each": "succeeded",
        "Item": "succeeded", "Decide": "succeeded", "Done": "succeeded", "Broken": "not-reached",
    }  # fmt: skip
    assert nodes["Item"]["entered"] == 2  # once per Map item
    assert (
        nodes["Fan"]["group"]
        and nodes["Each"]["group"]
        and nodes["Item"]["parent"] == nodes["Each"]["id"]
    )
    edges = {(e["from"], e["to"], e["label"]) for e in graph["edges"]}
    assert ("Decide", "Broken", "Default") in edges and ("Decide", "Done", "rule 1") in edges
    assert ("$start", "Prepare", "") in edges and ("Done", "$end", "") in edges
    full = console.api("execution", arn=world["execution_arn"])
    assert (
        full["execution"]["status"] == "SUCCEEDED"
        and full["events"][0]["type"] == "ExecutionStarted"
    )


def test_region_parameter_reads_that_region(console: Any, nubes: NubesServer) -> None:
    sqs = nubes.client("sqs", region_name="eu-west-1")
    sqs.create_queue(QueueName="console-eu-queue")
    assert "console-eu-queue" in {
        q["Name"] for q in console.api("queues", region="eu-west-1")["queues"]
    }
    assert "console-eu-queue" not in {q["Name"] for q in console.api("queues")["queues"]}


def test_stack_resources_outputs_events(console: Any, nubes: NubesServer) -> None:
    template = {
        "Resources": {
            "Jobs": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "console-stack-jobs"}}
        },
        "Outputs": {"JobsUrl": {"Value": {"Ref": "Jobs"}, "Description": "the queue"}},
    }
    cfn = nubes.client("cloudformation")
    cfn.create_stack(StackName="console-stack", TemplateBody=json.dumps(template))
    cfn.get_waiter("stack_create_complete").wait(
        StackName="console-stack", WaiterConfig={"Delay": 0.2, "MaxAttempts": 150}
    )
    assert "console-stack" in {s["StackName"] for s in console.api("stacks")["stacks"]}
    doc = console.api("stack", name="console-stack")
    assert doc["stack"]["StackStatus"] == "CREATE_COMPLETE"
    assert [(r["LogicalResourceId"], r["ResourceType"]) for r in doc["resources"]] == [
        ("Jobs", "AWS::SQS::Queue")
    ]
    assert doc["stack"]["Outputs"][0]["OutputValue"].endswith("/console-stack-jobs")
    assert {e["ResourceStatus"] for e in doc["events"]} >= {"CREATE_IN_PROGRESS", "CREATE_COMPLETE"}


def test_rules_with_targets_and_rest_api_urls(console: Any, nubes: NubesServer) -> None:
    events = nubes.client("events")
    events.put_rule(Name="console-rule", EventPattern=json.dumps({"source": ["console.test"]}))
    events.put_targets(
        Rule="console-rule",
        Targets=[{"Id": "q", "Arn": "arn:aws:sqs:us-east-1:000000000000:nowhere"}],
    )
    rules = {r["Name"]: r for r in console.api("rules")["rules"]}
    assert [t["Id"] for t in rules["console-rule"]["Targets"]] == ["q"]
    apigw = nubes.client("apigateway")
    rest = apigw.create_rest_api(name="console-rest")["id"]
    root = apigw.get_resources(restApiId=rest)["items"][0]["id"]
    apigw.put_method(restApiId=rest, resourceId=root, httpMethod="GET", authorizationType="NONE")
    apigw.put_integration(restApiId=rest, resourceId=root, httpMethod="GET", type="MOCK",
                          requestTemplates={"application/json": '{"statusCode": 200}'})  # fmt: skip
    apigw.create_deployment(restApiId=rest, stageName="prod")
    rows = {a["id"]: a for a in console.api("apis")["apis"]}
    port = nubes.endpoint.rsplit(":", 1)[1]
    assert rows[rest]["kind"] == "REST" and rows[rest]["urls"] == [
        f"http://{rest}.execute-api.localhost:{port}/prod"
    ]


def test_changes_need_the_console_header(console: Any, world: dict[str, str]) -> None:
    """A cross-site form or fetch cannot send it without a preflight nubes never approves."""
    status, _, body = console.get(
        f"/_nubes/console/api/invoke?name={world['function']}", "POST", b"{}", console_header=False
    )
    assert status == 403 and json.loads(body)["error"]["code"] == "Forbidden"
    status, _, _ = console.get("/_nubes/console/api/mail", "DELETE", console_header=False)
    assert status == 403


def test_cross_site_preflight_is_not_approved(nubes: NubesServer) -> None:
    request = urllib.request.Request(
        nubes.endpoint + "/_nubes/console/api/invoke?name=x",
        method="OPTIONS",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "x-nubes-console"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            allowed = response.headers.get("Access-Control-Allow-Origin")
    except urllib.error.HTTPError as error:
        allowed = error.headers.get("Access-Control-Allow-Origin")
    assert allowed is None
