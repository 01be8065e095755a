"""Alarms and the CloudWatch dashboard under Pulumi's mocks, in both runtimes."""

from __future__ import annotations

import json
import os
import runpy

import pulumi
import pytest

from conftest import ACCOUNT, REGION, Mocks, run
from modules import ConfigError, TaskServiceArgs, parse

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
# The step-scaling alarms of ECS autoscaling (test_ecs.py) are not for people.
SCALING = {"svc-queue-backlog", "svc-queue-idle"}
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:oncall"


def alarms(d) -> dict[str, dict]:
    return {a.name.removeprefix("svc-"): a.inputs for a in d.of_type(ALARM) if a.name not in SCALING}


def dashboard(d) -> dict:
    return json.loads(d.one(DASHBOARD).inputs["dashboardBody"])


def metrics_of(body: dict) -> list[list]:
    return [m for w in body["widgets"] if w["type"] == "metric" for m in w["properties"]["metrics"]]


@pytest.fixture(scope="module")
def ecs():
    return run(TaskServiceArgs(alarm_topic_arn=TOPIC))


@pytest.fixture(scope="module")
def lam():
    return run(TaskServiceArgs(runtime="lambda", alarm_oldest_message_age=1200))


def test_ecs_alarms_watch_the_dlq_the_oldest_message_and_missing_tasks(ecs):
    a = alarms(ecs)
    assert set(a) == {"dlqNotEmpty", "oldestMessageAge", "apiTasksMissing", "workerTasksMissing"}
    dlq = a["dlqNotEmpty"]
    assert (dlq["namespace"], dlq["metricName"], dlq["dimensions"]) == (
        "AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": "tasks-dlq"})
    assert (dlq["comparisonOperator"], dlq["threshold"], dlq["statistic"]) == ("GreaterThanThreshold", 0, "Maximum")
    age = a["oldestMessageAge"]
    assert (age["metricName"], age["dimensions"], age["threshold"]) == (
        "ApproximateAgeOfOldestMessage", {"QueueName": "tasks"}, 600)
    assert age["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
    for role in ("api", "worker"):
        missing = a[f"{role}TasksMissing"]
        queries = {q["id"]: q for q in missing["metricQueries"]}
        assert queries["value"]["expression"] == "desired - running"
        assert queries["value"]["returnData"] is True
        for metric, qid in (("DesiredTaskCount", "desired"), ("RunningTaskCount", "running")):
            m = queries[qid]["metric"]
            assert (m["namespace"], m["metricName"]) == ("ECS/ContainerInsights", metric)
            assert m["dimensions"] == {"ClusterName": "svc-cluster", "ServiceName": f"svc-{role}"}
        assert (missing["threshold"], missing["evaluationPeriods"], missing["datapointsToAlarm"]) == (1, 5, 5)
    # The cluster it creates reports the task counts those alarms read.
    assert ecs.one("aws:ecs/cluster:Cluster").inputs["settings"] == [{"name": "containerInsights", "value": "enabled"}]


def test_every_alarm_notifies_the_topic_when_it_fires_and_clears(ecs):
    for name, inputs in alarms(ecs).items():
        assert inputs["alarmActions"] == [TOPIC], name
        assert inputs["okActions"] == [TOPIC], name
        assert inputs["alarmDescription"], name


def test_without_a_topic_the_alarms_notify_nobody(lam):
    for inputs in alarms(lam).values():
        assert not inputs.get("alarmActions") and not inputs.get("okActions")


def test_lambda_alarms_watch_function_errors_and_throttles(lam):
    a = alarms(lam)
    assert set(a) == {"dlqNotEmpty", "oldestMessageAge", "workerErrors", "workerThrottles", "apiErrors"}
    for key, metric, fn in (("workerErrors", "Errors", "svc-sleep"), ("workerThrottles", "Throttles", "svc-sleep"),
                            ("apiErrors", "Errors", "svc-enqueue")):
        assert (a[key]["namespace"], a[key]["metricName"], a[key]["dimensions"]) == (
            "AWS/Lambda", metric, {"FunctionName": fn})
        assert (a[key]["statistic"], a[key]["comparisonOperator"], a[key]["threshold"]) == (
            "Sum", "GreaterThanThreshold", 0)
    assert a["oldestMessageAge"]["threshold"] == 1200
    assert not [r for r in lam.types() if r.startswith("aws:ecs/")]


@pytest.mark.parametrize("runtime", ["ecs", "lambda"])
def test_alarm_names_and_thresholds_are_outputs(runtime):
    d = run(TaskServiceArgs(runtime=runtime, alarm_topic_arn=TOPIC))
    out = d.outputs["alarms"]
    assert set(out) == set(alarms(d))
    for key, alarm in out.items():
        inputs = alarms(d)[key]
        assert alarm["name"] == f"svc-{key}"  # the mocks' physical name; AWS's carries a suffix
        assert alarm["threshold"] == inputs["threshold"]
        assert alarm["comparison"] == inputs["comparisonOperator"]
        assert alarm["notifies"] == TOPIC
        assert alarm["metric"]
    assert out["oldestMessageAge"]["metric"] == "Maximum of AWS/SQS ApproximateAgeOfOldestMessage"


def test_ecs_dashboard_shows_queue_dlq_tasks_and_errors(ecs):
    body = dashboard(ecs)
    titles = [w["properties"]["title"] for w in body["widgets"]]
    assert titles == ["Queue depth", "Oldest message age (s)", "Dead-letter queue",
                      "Tasks enqueued and finished (per minute)", "Tasks (running and desired)",
                      "CPU and memory (%)", "API through the load balancer (per minute)", "Alarms"]
    lines = metrics_of(body)
    assert ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "tasks-dlq",
            {"label": "dead letters"}] in lines
    assert ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", "tasks", {"label": "oldest"}] in lines
    assert ["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", "svc-cluster", "ServiceName", "svc-worker",
            {"label": "worker running"}] in lines
    assert ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "LoadBalancer", "app/svc-alb/1234",
            "TargetGroup", "targetgroup/svc-api-tg/5678", {"label": "5xx from the API"}] in lines
    age = body["widgets"][1]["properties"]
    assert age["annotations"]["horizontal"] == [{"label": "alarm", "value": 600}]
    (alarm_widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert sorted(alarm_widget["properties"]["alarms"]) == sorted(
        f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:metricalarm/svc-{k}" for k in alarms(ecs))
    for w in body["widgets"]:
        assert w["width"] == 12 and w["height"] == 6 and w["x"] in (0, 12)
        if w["type"] == "metric":
            assert w["properties"]["region"] == REGION
    assert ecs.one(DASHBOARD).inputs["dashboardName"] == f"svc-tasks-{REGION}"
    assert ecs.outputs["dashboard_name"] == f"svc-tasks-{REGION}"


def test_lambda_dashboard_shows_invocations_and_errors(lam):
    body = dashboard(lam)
    lines = metrics_of(body)
    for metric in ("Invocations", "Errors", "Throttles", "ConcurrentExecutions"):
        for fn in ("svc-sleep", "svc-enqueue"):
            assert any(m[:4] == ["AWS/Lambda", metric, "FunctionName", fn] for m in lines), (metric, fn)
    assert not any(m[0].startswith(("ECS/", "AWS/ECS", "AWS/ApplicationELB")) for m in lines)
    assert body["widgets"][1]["properties"]["annotations"]["horizontal"][0]["value"] == 1200


def test_without_load_balancer_the_dashboard_has_no_alb_widget():
    body = dashboard(run(TaskServiceArgs(enable_load_balancer=False)))
    assert not any(m[0] == "AWS/ApplicationELB" for m in metrics_of(body))


@pytest.mark.parametrize("runtime", ["ecs", "lambda"])
def test_alarms_and_dashboard_can_be_switched_off(runtime):
    d = run(TaskServiceArgs(runtime=runtime, enable_alarms=False, enable_dashboard=False, worker_max_count=1))
    assert not d.of_type(ALARM) and not d.of_type(DASHBOARD)
    assert d.outputs["alarms"] == {} and d.outputs["dashboard_name"] is None
    if runtime == "ecs":
        assert d.one("aws:ecs/cluster:Cluster").inputs.get("settings") is None
    # The dashboard alone: no alarm widget.
    body = dashboard(run(TaskServiceArgs(runtime=runtime, enable_alarms=False)))
    assert [w for w in body["widgets"] if w["type"] == "alarm"] == []


@pytest.mark.parametrize(("raw", "fragments"), [
    ({"alarmTopicArn": "oncall"}, ["alarmTopicArn", "'oncall'", "arn:aws:sns:<region>:<account>:<topic>"]),
    ({"alarmTopicArn": f"{TOPIC}.fifo"}, ["alarmTopicArn", "FIFO"]),
    ({"alarmTopicArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:oncall"}, ["alarmTopicArn", "not an SNS topic ARN"]),
    ({"alarmOldestMessageAge": 10}, ["alarmOldestMessageAge", "60 to 345600"]),
    ({"alarmOldestMessageAge": 400_000}, ["alarmOldestMessageAge", "retention"]),
    ({"enableAlarms": "maybe"}, ["enableAlarms", "true or false"]),
])
def test_bad_alarm_config_is_refused_with_what_is_allowed(raw, fragments):
    with pytest.raises(ConfigError) as info:
        parse(raw)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_alarm_config_from_the_cli():
    args = parse({"alarmTopicArn": TOPIC, "alarmOldestMessageAge": "900", "enableDashboard": "false"})
    assert (args.alarm_topic_arn, args.alarm_oldest_message_age, args.enable_dashboard) == (TOPIC, 900, False)
    gov = parse({"alarmTopicArn": "arn:aws-us-gov:sns:us-gov-west-1:123456789012:oncall"})
    assert gov.alarm_topic_arn.startswith("arn:aws-us-gov:")


def test_stack_exports_alarms_and_the_dashboard():
    main = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "__main__.py")
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="task-service", stack="test", preview=False)
    pulumi.runtime.set_all_config({"task-service:alarmTopicArn": TOPIC})
    exported: dict = {}

    @pulumi.runtime.test
    def program():
        real_export = pulumi.export
        pulumi.export = lambda k, v: exported.__setitem__(k, v)
        try:
            runpy.run_path(main)
        finally:
            pulumi.export = real_export
        return pulumi.Output.from_input(exported).apply(exported.update)

    try:
        program()
    finally:
        pulumi.runtime.set_all_config({})
    assert set(exported["alarms"]) == {"dlqNotEmpty", "oldestMessageAge", "apiTasksMissing", "workerTasksMissing"}
    assert exported["alarms"]["dlqNotEmpty"]["name"] == "task-service-dlqNotEmpty"
    assert exported["alarms"]["oldestMessageAge"]["threshold"] == 600
    assert exported["dashboardName"] == f"task-service-tasks-{REGION}"
    assert exported["dashboardUrl"].endswith(f"#dashboards/dashboard/task-service-tasks-{REGION}")
