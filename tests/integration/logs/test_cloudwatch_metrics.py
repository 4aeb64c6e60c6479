"""CloudWatch metrics and alarms through boto3 (which speaks smithy-rpc-v2-cbor to it)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from botocore.exceptions import ClientError

from nubes.testing.server import NubesServer


def test_put_and_read_metrics(nubes: NubesServer) -> None:
    cw = nubes.client("cloudwatch")
    ns = f"Test/{uuid.uuid4().hex[:8]}"
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    dims = [{"Name": "Service", "Value": "api"}]
    cw.put_metric_data(Namespace=ns, MetricData=[
        {"MetricName": "Latency", "Dimensions": dims, "Timestamp": now, "Value": 10.0, "Unit": "Milliseconds"},
        {"MetricName": "Latency", "Dimensions": dims, "Timestamp": now, "Values": [20.0, 30.0], "Counts": [1, 2],
         "Unit": "Milliseconds"},
        {"MetricName": "Latency", "Dimensions": dims, "Timestamp": now - dt.timedelta(minutes=1),
         "StatisticValues": {"SampleCount": 2, "Sum": 8, "Minimum": 3, "Maximum": 5}, "Unit": "Milliseconds"},
    ])  # fmt: skip
    stats = cw.get_metric_statistics(Namespace=ns, MetricName="Latency", Dimensions=dims,
                                     StartTime=now - dt.timedelta(minutes=5), EndTime=now + dt.timedelta(minutes=1),
                                     Period=60, Statistics=["SampleCount", "Sum", "Average", "Minimum", "Maximum"],
                                     ExtendedStatistics=["p50"])  # fmt: skip
    points = sorted(stats["Datapoints"], key=lambda p: p["Timestamp"])
    assert [(p["SampleCount"], p["Sum"], p["Minimum"], p["Maximum"]) for p in points] == [
        (2.0, 8.0, 3.0, 5.0), (4.0, 90.0, 10.0, 30.0)]  # fmt: skip
    assert points[1]["Average"] == 22.5 and points[1]["ExtendedStatistics"] == {"p50": 20.0}
    assert points[1]["Unit"] == "Milliseconds"
    data = cw.get_metric_data(StartTime=now - dt.timedelta(minutes=5), EndTime=now + dt.timedelta(minutes=1),
                              MetricDataQueries=[{"Id": "m1", "MetricStat": {"Metric": {
                                  "Namespace": ns, "MetricName": "Latency", "Dimensions": dims},
                                  "Period": 60, "Stat": "Maximum"}}])  # fmt: skip
    result = data["MetricDataResults"][0]
    assert result["Id"] == "m1" and result["Values"] == [30.0, 5.0] and result["StatusCode"] == "Complete"
    listed = cw.list_metrics(Namespace=ns)["Metrics"]
    assert listed == [{"Namespace": ns, "MetricName": "Latency", "Dimensions": dims}]
    assert cw.list_metrics(Namespace=ns, Dimensions=[{"Name": "Other"}])["Metrics"] == []


def test_metric_math(nubes: NubesServer) -> None:
    cw = nubes.client("cloudwatch")
    ns = f"Test/{uuid.uuid4().hex[:8]}"
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    cw.put_metric_data(Namespace=ns, MetricData=[
        {"MetricName": "Errors", "Timestamp": now, "Value": 2.0},
        {"MetricName": "Requests", "Timestamp": now, "Value": 8.0},
        {"MetricName": "Errors", "Timestamp": now - dt.timedelta(minutes=1), "Value": 1.0},
        {"MetricName": "Requests", "Timestamp": now - dt.timedelta(minutes=1), "Value": 4.0},
    ])  # fmt: skip

    def stat(name: str) -> dict[str, object]:
        return {"Metric": {"Namespace": ns, "MetricName": name}, "Period": 60, "Stat": "Sum"}

    out = cw.get_metric_data(StartTime=now - dt.timedelta(minutes=5), EndTime=now + dt.timedelta(minutes=1),
                             ScanBy="TimestampAscending", MetricDataQueries=[
                                 {"Id": "e", "MetricStat": stat("Errors"), "ReturnData": False},
                                 {"Id": "r", "MetricStat": stat("Requests"), "ReturnData": False},
                                 {"Id": "rate", "Expression": "100 * e / r", "Label": "error rate"},
                                 {"Id": "total", "Expression": "SUM(METRICS())"},
                                 {"Id": "twice", "Expression": "rate * 2"}])["MetricDataResults"]  # fmt: skip
    by_id = {r["Id"]: r for r in out}
    assert set(by_id) == {"rate", "total", "twice"}
    assert by_id["rate"]["Values"] == [25.0, 25.0] and by_id["rate"]["Label"] == "error rate"
    assert by_id["total"]["Values"] == [5.0, 10.0] and by_id["twice"]["Values"] == [50.0, 50.0]
    with pytest.raises(ClientError) as err:
        cw.get_metric_data(StartTime=now - dt.timedelta(minutes=5), EndTime=now,
                           MetricDataQueries=[{"Id": "x", "Expression": "nope + 1"}])  # fmt: skip
    assert err.value.response["Error"]["Code"] == "ValidationError"


def test_metric_errors(nubes: NubesServer) -> None:
    cw = nubes.client("cloudwatch")
    now = dt.datetime.now(dt.UTC)
    with pytest.raises(ClientError) as err:
        cw.get_metric_statistics(Namespace="X", MetricName="Y", StartTime=now - dt.timedelta(days=3), EndTime=now,
                                 Period=60, Statistics=["Sum"])  # fmt: skip
    assert err.value.response["Error"]["Code"] == "InvalidParameterCombination"
    with pytest.raises(ClientError) as err:
        cw.put_metric_data(Namespace="X", MetricData=[{"MetricName": "a", "Value": 1.0,
                                                       "Timestamp": now - dt.timedelta(days=30)}])  # fmt: skip
    assert err.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_alarms(nubes: NubesServer) -> None:
    cw = nubes.client("cloudwatch")
    name = f"alarm-{uuid.uuid4().hex[:8]}"
    cw.put_metric_alarm(AlarmName=name, MetricName="Errors", Namespace="AWS/Lambda", Statistic="Sum", Period=60,
                        EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanOrEqualToThreshold",
                        Tags=[{"Key": "k", "Value": "v"}])  # fmt: skip
    alarm = cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
    assert alarm["StateValue"] == "INSUFFICIENT_DATA" and alarm["AlarmArn"].endswith(f":alarm:{name}")
    cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test")
    assert cw.describe_alarms(StateValue="ALARM", AlarmNamePrefix=name)["MetricAlarms"][0]["AlarmName"] == name
    assert cw.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"] == [{"Key": "k", "Value": "v"}]
    cw.delete_alarms(AlarmNames=[name])
    assert cw.describe_alarms(AlarmNames=[name])["MetricAlarms"] == []
    with pytest.raises(ClientError) as err:
        cw.delete_alarms(AlarmNames=[name])
    assert err.value.response["Error"]["Code"] == "ResourceNotFound"


def test_alarm_evaluation_notifies_sns(nubes: NubesServer) -> None:
    import json
    import time
    import urllib.request

    health = json.loads(urllib.request.urlopen(nubes.endpoint + "/_nubes/health").read())
    if not {"sns", "sqs"} <= set(health["services"]):
        pytest.skip("SNS/SQS are not in this build")
    cw, sns, sqs = nubes.client("cloudwatch"), nubes.client("sns"), nubes.client("sqs")
    topic = sns.create_topic(Name=f"alarms-{uuid.uuid4().hex[:8]}")["TopicArn"]
    url = sqs.create_queue(QueueName=f"alarms-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    ns = f"Test/{uuid.uuid4().hex[:8]}"
    name = f"high-{uuid.uuid4().hex[:8]}"
    cw.put_metric_alarm(AlarmName=name, Namespace=ns, MetricName="Errors", Statistic="Sum", Period=60,
                        EvaluationPeriods=1, Threshold=3.0, ComparisonOperator="GreaterThanThreshold",
                        TreatMissingData="notBreaching", AlarmActions=[topic])  # fmt: skip
    cw.put_metric_data(Namespace=ns, MetricData=[{"MetricName": "Errors", "Value": 5.0}])
    deadline = time.time() + 40
    state = ""
    while time.time() < deadline and state != "ALARM":
        state = cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"]
        time.sleep(0.2)
    assert state == "ALARM"
    messages: list[dict[str, str]] = []
    while time.time() < deadline and not messages:
        messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
    note = json.loads(messages[0]["Body"])
    assert note["AlarmName"] == name and note["NewStateValue"] == "ALARM"
    assert note["OldStateValue"] == "INSUFFICIENT_DATA" and note["Trigger"]["MetricName"] == "Errors"
