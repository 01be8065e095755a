"""The task service component: queue, DLQ and logs always; then ECS services or Lambda functions.

A `pulumi.ComponentResource` so a larger stack can embed it next to its own resources (and pass a
shared cluster, VPC and subnets); `__main__.py` is only one way to instantiate it.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from . import ecs, lambda_functions, monitoring
from .config import QUEUE_RETENTION_SECONDS, TaskServiceArgs, check

# Messages that failed maxReceiveCount times are kept for SQS's maximum, for inspection and redrive.
DLQ_RETENTION_SECONDS = 14 * 24 * 3600
# The name the stack entry point gives the component: the prefix of its resources and log groups.
COMPONENT_NAME = "task-service"


def redrive_policy(dlq_arn: str, max_receive_count: int) -> str:
    """The queue's RedrivePolicy attribute: after `max_receive_count` receives, to the DLQ."""
    return json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count})


class TaskService(pulumi.ComponentResource):
    """The task service. Outputs: `api_url`, `queue_url`, `dlq_url` (None when disabled), `alarms`
    (key -> alarm name, metric, threshold; see modules/monitoring.py) and `dashboard_name`.

    With `enabled=False` the component registers itself but creates no cloud resource, so a larger
    stack can switch the service off without removing it from its program.
    """

    api_url: pulumi.Output[str | None]
    queue_url: pulumi.Output[str | None]
    dlq_url: pulumi.Output[str | None]
    alarms: dict[str, dict]
    dashboard_name: pulumi.Output[str | None]

    def __init__(self, name: str, args: TaskServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("lambda-ecs-tasks:index:TaskService", name, None, opts)
        self.args = args
        self.runtime: ecs.EcsResources | lambda_functions.LambdaResources | None = None
        if not args.enabled:
            self.api_url = self.queue_url = self.dlq_url = pulumi.Output.from_input(None)
            self.alarms, self.dashboard_name = {}, pulumi.Output.from_input(None)
            self.register_outputs({"api_url": None, "queue_url": None, "dlq_url": None, "alarms": {},
                                   "dashboard_name": None})
            return
        # A component built from code (not from stack config) is held to the same rules.
        check(args)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        self.dlq = aws.sqs.Queue(
            f"{name}-dlq", name=f"{args.queue_name}-dlq", message_retention_seconds=DLQ_RETENTION_SECONDS,
            tags=tags, opts=child)
        self.queue = aws.sqs.Queue(
            f"{name}-queue", name=args.queue_name, visibility_timeout_seconds=args.effective_visibility_timeout,
            message_retention_seconds=QUEUE_RETENTION_SECONDS,
            redrive_policy=self.dlq.arn.apply(lambda arn: redrive_policy(arn, args.max_receive_count)),
            tags=tags, opts=child)
        # Named by role, not runtime: moving from ECS to Lambda keeps the logs in the same groups.
        self.api_logs = aws.cloudwatch.LogGroup(
            f"{name}-api-logs", name=f"/{name}/api", retention_in_days=args.log_retention_days,
            tags=tags, opts=child)
        self.worker_logs = aws.cloudwatch.LogGroup(
            f"{name}-worker-logs", name=f"/{name}/worker", retention_in_days=args.log_retention_days,
            tags=tags, opts=child)

        region = aws.get_region_output(opts=pulumi.InvokeOptions(parent=self)).region
        # What the alarms and the dashboard refer to, by the names modules/monitoring.py uses.
        refs: dict[str, pulumi.Input[str]] = {"queue": self.queue.name, "dlq": self.dlq.name, "region": region}
        if args.runtime == "lambda":
            fns = lambda_functions.LambdaResources(
                name, args, lambda_functions.Shared(self.queue, self.api_logs, self.worker_logs), self)
            refs |= {"api_function": fns.api_function.name, "worker_function": fns.worker_function.name}
            self.runtime = fns
        else:
            shared = ecs.Shared(
                self.queue, self.api_logs, self.worker_logs, region=region,
                partition=aws.get_partition_output(opts=pulumi.InvokeOptions(parent=self)).partition)
            services = ecs.EcsResources(name, args, shared, self)
            refs |= {"cluster": services.cluster_name, "api_service": services.api_service.name,
                     "worker_service": services.worker_service.name}
            if services.load_balancer is not None and services.target_group is not None:
                refs |= {"load_balancer": services.load_balancer.arn_suffix,
                         "target_group": services.target_group.arn_suffix}
            self.runtime = services
        watch = monitoring.Monitoring(name, args, refs, self)

        self.api_url = self.runtime.api_url
        self.queue_url = self.queue.url
        self.dlq_url = self.dlq.url
        self.alarms = watch.alarms
        self.dashboard_name = watch.dashboard_name
        self.register_outputs({"api_url": self.api_url, "queue_url": self.queue_url, "dlq_url": self.dlq_url,
                               "alarms": self.alarms, "dashboard_name": self.dashboard_name})
