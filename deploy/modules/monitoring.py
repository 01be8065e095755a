"""What tells a team the task service needs them: CloudWatch alarms and a dashboard, in both runtimes.

Alarms (each notifies `alarmTopicArn` when it fires and when it clears, if one is set):

- `dlqNotEmpty`: a message reached the dead-letter queue (it failed `maxReceiveCount` times);
- `oldestMessageAge`: the oldest waiting message is older than `alarmOldestMessageAge` seconds
  (the workers are not keeping up, or none is running);
- ECS: `apiTasksMissing`, `workerTasksMissing`: fewer tasks running than desired for 5 minutes (tasks
  crashing, failing their health check, or unable to start). These read Container Insights'
  `RunningTaskCount` and `DesiredTaskCount`: the cluster this component creates has Container
  Insights on; a shared cluster (`clusterArn`) needs it on too, else these alarms stay
  INSUFFICIENT_DATA;
- Lambda: `workerErrors`, `workerThrottles`, `apiErrors`: function errors (crashes, timeouts, a
  malformed reply; not batch item failures, which are normal replies) and throttles.

The dashboard shows the queue's depth and oldest message, the DLQ, tasks enqueued and finished, the
runtime's tasks or invocations, its errors, and every alarm's state.

The pure parts (`alarm_specs`, `dashboard_body`) take plain values, so the tests read them directly;
`Monitoring` turns them into resources once the names they refer to are known.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from .config import TaskServiceArgs

PERIOD = 60
# Fewer tasks than desired this many minutes in a row: longer than a deployment's or a scale-out's
# start of a task (image pull, health check start period), short enough to matter.
TASKS_MISSING_MINUTES = 5


@dataclass(frozen=True)
class AlarmSpec:
    """One alarm, as plain values: what it watches, and when it fires."""

    key: str
    description: str
    threshold: float
    comparison: str
    evaluation_periods: int = 1
    # A single metric: (namespace, metric name, statistic, dimension name -> reference). A reference
    # names an entry of the values `Monitoring` resolves (queue, dlq, cluster, worker_service, ...).
    metric: tuple[str, str, str, dict[str, str]] | None = None
    # Or metric math: the ids' metrics, and the expression the alarm reads.
    queries: dict[str, tuple[str, str, str, dict[str, str]]] = field(default_factory=dict)
    expression: str = ""
    treat_missing_data: str = "notBreaching"

    def summary(self) -> str:
        """The metric as a person reads it (for the stack's outputs)."""
        if self.metric:
            namespace, name, stat, _ = self.metric
            return f"{stat} of {namespace} {name}"
        return self.expression + " (" + ", ".join(
            f"{i} = {q[2]} of {q[0]} {q[1]}" for i, q in self.queries.items()) + ")"


def _sqs(name: str, stat: str, queue_ref: str) -> tuple[str, str, str, dict[str, str]]:
    return ("AWS/SQS", name, stat, {"QueueName": queue_ref})


def alarm_specs(args: TaskServiceArgs) -> list[AlarmSpec]:
    """The alarms of `args.runtime`, in a fixed order."""
    specs = [
        AlarmSpec(
            "dlqNotEmpty", "Messages in the dead-letter queue: tasks failed maxReceiveCount times",
            threshold=0, comparison="GreaterThanThreshold",
            metric=_sqs("ApproximateNumberOfMessagesVisible", "Maximum", "dlq")),
        AlarmSpec(
            "oldestMessageAge",
            f"A task has waited {args.alarm_oldest_message_age} s or more in the queue: the workers "
            "are not keeping up",
            threshold=args.alarm_oldest_message_age, comparison="GreaterThanOrEqualToThreshold",
            metric=_sqs("ApproximateAgeOfOldestMessage", "Maximum", "queue")),
    ]
    if args.runtime == "lambda":
        def fn(metric: str, ref: str) -> tuple[str, str, str, dict[str, str]]:
            return ("AWS/Lambda", metric, "Sum", {"FunctionName": ref})

        specs += [
            AlarmSpec("workerErrors", "The worker function failed (crash, timeout or malformed reply)",
                      threshold=0, comparison="GreaterThanThreshold", metric=fn("Errors", "worker_function")),
            AlarmSpec("workerThrottles", "The worker function was throttled (account or reserved concurrency)",
                      threshold=0, comparison="GreaterThanThreshold", metric=fn("Throttles", "worker_function")),
            AlarmSpec("apiErrors", "The API function failed (crash or timeout)",
                      threshold=0, comparison="GreaterThanThreshold", metric=fn("Errors", "api_function")),
        ]
    else:
        for role in ("api", "worker"):
            def insight(metric: str, role: str = role) -> tuple[str, str, str, dict[str, str]]:
                return ("ECS/ContainerInsights", metric, "Average",
                        {"ClusterName": "cluster", "ServiceName": f"{role}_service"})

            specs.append(AlarmSpec(
                f"{role}TasksMissing",
                f"Fewer {role} tasks running than desired for {TASKS_MISSING_MINUTES} minutes: tasks "
                "crashing, unhealthy or unable to start",
                threshold=1, comparison="GreaterThanOrEqualToThreshold",
                evaluation_periods=TASKS_MISSING_MINUTES,
                queries={"desired": insight("DesiredTaskCount"), "running": insight("RunningTaskCount")},
                expression="desired - running", treat_missing_data="missing"))
    return specs


def _metric_line(namespace: str, name: str, dims: dict[str, str], v: dict[str, Any], **options: Any) -> list:
    """A dashboard `metrics` entry: namespace, name, dimension pairs, then rendering options."""
    line: list[Any] = [namespace, name]
    for dim, ref in dims.items():
        line += [dim, v[ref]]
    return line + ([options] if options else [])


def dashboard_body(args: TaskServiceArgs, v: dict[str, Any]) -> dict[str, Any]:
    """The dashboard's JSON, from resolved values `v` (region, queue, dlq, alarm_arns, and the
    runtime's names: cluster and services, or functions)."""

    def widget(title: str, metrics: list, stat: str = "Maximum", **properties: Any) -> dict[str, Any]:
        return {"type": "metric", "properties": {
            "title": title, "region": v["region"], "view": "timeSeries", "period": PERIOD, "stat": stat,
            "metrics": metrics, **properties}}

    def sqs(name: str, ref: str, **options: Any) -> list:
        return _metric_line("AWS/SQS", name, {"QueueName": ref}, v, **options)

    widgets = [
        widget("Queue depth", [
            sqs("ApproximateNumberOfMessagesVisible", "queue", label="waiting"),
            sqs("ApproximateNumberOfMessagesNotVisible", "queue", label="running (in flight)"),
            sqs("ApproximateNumberOfMessagesDelayed", "queue", label="delayed"),
        ]),
        widget("Oldest message age (s)", [sqs("ApproximateAgeOfOldestMessage", "queue", label="oldest")],
               annotations={"horizontal": [{"label": "alarm", "value": args.alarm_oldest_message_age}]}),
        widget("Dead-letter queue", [sqs("ApproximateNumberOfMessagesVisible", "dlq", label="dead letters")],
               annotations={"horizontal": [{"label": "alarm", "value": 0}]}),
        widget("Tasks enqueued and finished (per minute)", [
            sqs("NumberOfMessagesSent", "queue", label="enqueued"),
            sqs("NumberOfMessagesDeleted", "queue", label="finished (deleted)"),
        ], stat="Sum"),
    ]
    if args.runtime == "lambda":
        def fn(metric: str, ref: str, label: str, **options: Any) -> list:
            return _metric_line("AWS/Lambda", metric, {"FunctionName": ref}, v, label=label, **options)

        widgets += [
            widget("Invocations (per minute)", [
                fn("Invocations", "worker_function", "worker"), fn("Invocations", "api_function", "API"),
            ], stat="Sum"),
            widget("Concurrent executions", [
                fn("ConcurrentExecutions", "worker_function", "worker"),
                fn("ConcurrentExecutions", "api_function", "API"),
            ]),
            widget("Errors and throttles (per minute)", [
                fn("Errors", "worker_function", "worker errors"), fn("Throttles", "worker_function", "worker throttles"),
                fn("Errors", "api_function", "API errors"), fn("Throttles", "api_function", "API throttles"),
            ], stat="Sum"),
            widget("Duration (ms)", [
                fn("Duration", "worker_function", "worker p99", stat="p99"),
                fn("Duration", "api_function", "API p99", stat="p99"),
            ]),
        ]
    else:
        def insight(metric: str, role: str, label: str, **options: Any) -> list:
            return _metric_line("ECS/ContainerInsights", metric,
                                {"ClusterName": "cluster", "ServiceName": f"{role}_service"}, v,
                                label=label, **options)

        def util(metric: str, role: str, label: str) -> list:
            return _metric_line("AWS/ECS", metric, {"ClusterName": "cluster", "ServiceName": f"{role}_service"},
                                v, label=label)

        widgets += [
            widget("Tasks (running and desired)", [
                insight("RunningTaskCount", "worker", "worker running"),
                insight("DesiredTaskCount", "worker", "worker desired"),
                insight("RunningTaskCount", "api", "API running"),
                insight("DesiredTaskCount", "api", "API desired"),
            ]),
            widget("CPU and memory (%)", [
                util("CPUUtilization", "worker", "worker CPU"), util("MemoryUtilization", "worker", "worker memory"),
                util("CPUUtilization", "api", "API CPU"), util("MemoryUtilization", "api", "API memory"),
            ], stat="Average"),
        ]
        if "load_balancer" in v:
            dims = {"LoadBalancer": "load_balancer", "TargetGroup": "target_group"}
            widgets.append(widget("API through the load balancer (per minute)", [
                _metric_line("AWS/ApplicationELB", "RequestCount", dims, v, label="requests"),
                _metric_line("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", dims, v, label="5xx from the API"),
                _metric_line("AWS/ApplicationELB", "UnHealthyHostCount", dims, v, label="unhealthy targets",
                             stat="Maximum"),
            ], stat="Sum"))
    if v.get("alarm_arns"):
        widgets.append({"type": "alarm", "properties": {"title": "Alarms", "alarms": list(v["alarm_arns"])}})
    # Two columns of 12 units (the grid is 24 wide), 6 high.
    for i, w in enumerate(widgets):
        w.update(x=(i % 2) * 12, y=(i // 2) * 6, width=12, height=6)
    return {"widgets": widgets}


class Monitoring:
    """Creates the alarms and the dashboard as children of `parent`.

    `refs` maps the names `alarm_specs` and `dashboard_body` use to Inputs: queue and dlq (queue
    names), region, and the runtime's cluster and service names or function names. Exposes
    `alarms` (key -> name, metric, threshold, ...) and `dashboard_name` (None when off).
    """

    def __init__(self, name: str, args: TaskServiceArgs, refs: dict[str, pulumi.Input[str]],
                 parent: pulumi.Resource):
        opts = pulumi.ResourceOptions(parent=parent)
        tags = dict(args.tags)
        actions = [args.alarm_topic_arn] if args.alarm_topic_arn else []
        self.alarms: dict[str, dict[str, Any]] = {}
        created: list[aws.cloudwatch.MetricAlarm] = []
        if args.enable_alarms:
            for spec in alarm_specs(args):
                alarm = aws.cloudwatch.MetricAlarm(
                    f"{name}-{spec.key}", alarm_description=spec.description,
                    comparison_operator=spec.comparison, threshold=spec.threshold,
                    evaluation_periods=spec.evaluation_periods, datapoints_to_alarm=spec.evaluation_periods,
                    treat_missing_data=spec.treat_missing_data, alarm_actions=actions, ok_actions=actions,
                    tags=tags, opts=opts, **self._metric_args(spec, refs))
                created.append(alarm)
                self.alarms[spec.key] = {
                    "name": alarm.name, "metric": spec.summary(), "comparison": spec.comparison,
                    "threshold": spec.threshold, "periodSeconds": PERIOD,
                    "evaluationPeriods": spec.evaluation_periods, "notifies": args.alarm_topic_arn or None,
                }
        self.dashboard_name: pulumi.Output[str | None] = pulumi.Output.from_input(None)
        if args.enable_dashboard:
            values = pulumi.Output.all(alarm_arns=pulumi.Output.all(*[a.arn for a in created]), **refs)
            dashboard = aws.cloudwatch.Dashboard(
                f"{name}-dashboard",
                # Dashboard names are unique in an account (not per region), queue names per region.
                dashboard_name=pulumi.Output.concat(name, "-", refs["queue"], "-", refs["region"]),
                dashboard_body=values.apply(lambda v: json.dumps(dashboard_body(args, v))),
                opts=opts)
            self.dashboard_name = dashboard.dashboard_name

    @staticmethod
    def _metric_args(spec: AlarmSpec, refs: dict[str, pulumi.Input[str]]) -> dict[str, Any]:
        def dims(d: dict[str, str]) -> dict[str, pulumi.Input[str]]:
            return {k: refs[ref] for k, ref in d.items()}

        if spec.metric:
            namespace, metric, stat, d = spec.metric
            return {"namespace": namespace, "metric_name": metric, "statistic": stat, "period": PERIOD,
                    "dimensions": dims(d)}
        queries = [{"id": i, "return_data": False, "metric": {
            "namespace": q[0], "metric_name": q[1], "stat": q[2], "period": PERIOD, "dimensions": dims(q[3])}}
            for i, q in spec.queries.items()]
        return {"metric_queries": [*queries, {"id": "value", "expression": spec.expression,
                                              "label": spec.key, "return_data": True}]}
