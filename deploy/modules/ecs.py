"""runtime=ecs: both Lambda binaries as Fargate services, each hosted by the adapter.

The API task runs `adapter http -- /app/enqueue` behind an ALB; the worker task runs
`adapter sqs -- /app/sleep`, which reproduces Lambda's SQS event source mapping. Every adapter flag
is passed as its `ADAPTER_*` environment variable so the task definition shows the whole setup.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from . import policies
from .config import TaskServiceArgs

API_PORT = 8080
ALB_PORT = 80
API_CONTAINER = "api"
WORKER_CONTAINER = "worker"
# `adapter healthcheck` asks the adapter's admin listener (127.0.0.1:9090) for /readyz.
# The image's own user (Dockerfile: USER 10001:10001), stated so the task definition shows it.
CONTAINER_USER = "10001:10001"
CONTAINER_HEALTH_CHECK = {
    "command": ["CMD", "/app/adapter", "healthcheck"],
    "interval": 15,
    "timeout": 5,
    "retries": 3,
    "startPeriod": 30,
}


@dataclass
class Shared:
    """What the ECS resources take from the runtime-independent part of the component."""

    queue: aws.sqs.Queue
    api_logs: aws.cloudwatch.LogGroup
    worker_logs: aws.cloudwatch.LogGroup
    region: pulumi.Output[str]
    partition: pulumi.Output[str]


def api_environment(args: TaskServiceArgs, queue_url: str, region: str, log_group: str) -> dict[str, str]:
    """The API container's environment: the function's own, then the adapter's flags."""
    return {
        "QUEUE_URL": queue_url,
        "AWS_REGION": region,
        "RUST_LOG": args.log_level,
        "ADAPTER_LISTEN": f"0.0.0.0:{API_PORT}",
        # Behind the ALB, which appends the client's address; without it nobody vouches for it.
        **({"ADAPTER_TRUST_FORWARDED_FOR": "true"} if args.enable_load_balancer else {}),
        "ADAPTER_TIMEOUT": str(args.api_timeout),
        "ADAPTER_INVOKE_MODE": args.api_invoke_mode,
        "ADAPTER_MAX_CONCURRENCY": str(args.api_max_concurrency),
        "ADAPTER_PER_PROCESS_CONCURRENCY": str(args.api_per_process_concurrency),
        "ADAPTER_SHUTDOWN_GRACE": str(args.shutdown_grace),
        "ADAPTER_MEMORY_SIZE": str(args.api_memory),
        "ADAPTER_LOG_GROUP": log_group,
    }


def worker_environment(args: TaskServiceArgs, queue_url: str, region: str, log_group: str) -> dict[str, str]:
    """The worker container's environment; the SQS flags mirror the Lambda event source mapping."""
    pollers = {} if args.worker_pollers is None else {"ADAPTER_POLLERS": str(args.worker_pollers)}
    filters = {"ADAPTER_FILTER_CRITERIA": args.filter_criteria} if args.filter_criteria else {}
    return pollers | filters | {
        "QUEUE_URL": queue_url,
        "AWS_REGION": region,
        "RUST_LOG": args.log_level,
        "ADAPTER_QUEUE_URL": queue_url,
        "ADAPTER_BATCH_SIZE": str(args.batch_size),
        "ADAPTER_BATCHING_WINDOW": str(args.batching_window),
        "ADAPTER_REPORT_BATCH_ITEM_FAILURES": "true",
        "ADAPTER_MAX_CONCURRENCY": str(args.worker_max_concurrency),
        "ADAPTER_PER_PROCESS_CONCURRENCY": str(args.worker_per_process_concurrency),
        "ADAPTER_TIMEOUT": str(args.worker_timeout),
        "ADAPTER_SHUTDOWN_GRACE": str(args.shutdown_grace),
        "ADAPTER_MEMORY_SIZE": str(args.worker_memory),
        "ADAPTER_LOG_GROUP": log_group,
    }


def container_definition(
    *, name: str, args: TaskServiceArgs, command: list[str], environment: dict[str, str],
    log_group: str, region: str, port: int | None,
) -> dict[str, Any]:
    """One container. The entry point is the adapter itself (not /app/entrypoint): the task
    definition then states the whole command line, and SERVICE_ROLE stays a `docker run` shortcut."""
    definition: dict[str, Any] = {
        "name": name,
        "image": args.image_ref,
        "essential": True,
        "user": CONTAINER_USER,
        "entryPoint": ["/app/adapter"],
        "command": command,
        "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
        "healthCheck": CONTAINER_HEALTH_CHECK,
        # SIGTERM starts the adapter's drain; ECS waits this long before SIGKILL.
        "stopTimeout": args.stop_timeout,
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": log_group,
                "awslogs-region": region,
                "awslogs-stream-prefix": name,
            },
        },
    }
    if port is not None:
        definition["portMappings"] = [{"containerPort": port, "hostPort": port, "protocol": "tcp", "name": "http"}]
    return definition


class EcsResources:
    """Creates the ECS runtime's resources as children of `parent`; exposes `api_url`."""

    def __init__(self, name: str, args: TaskServiceArgs, shared: Shared, parent: pulumi.Resource):
        self.name = name
        self.args = args
        self.shared = shared
        self.opts = pulumi.ResourceOptions(parent=parent)
        tags = dict(args.tags)

        self.cluster_arn, self.cluster_name = self._cluster(tags)
        vpc_id, subnet_ids = self._network()

        # Security groups: the ALB takes HTTP from the configured CIDR; the API takes traffic only
        # from the ALB; the worker takes none. All may call out (SQS, ECR, CloudWatch).
        egress = [{"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]}]
        self.api_sg = aws.ec2.SecurityGroup(
            f"{name}-api-sg", vpc_id=vpc_id, description="task-service API tasks", egress=egress,
            tags=tags, opts=self.opts)
        self.worker_sg = aws.ec2.SecurityGroup(
            f"{name}-worker-sg", vpc_id=vpc_id, description="task-service worker tasks", egress=egress,
            tags=tags, opts=self.opts)

        self.execution_role = self._role(f"{name}-execution", tags)
        execution_policy = aws.iam.RolePolicy(
            f"{name}-execution-policy", role=self.execution_role.id,
            policy=pulumi.Output.all(shared.api_logs.arn, shared.worker_logs.arn, shared.partition).apply(
                lambda a: json.dumps(policies.execution_policy([a[0], a[1]], args.image_ref, a[2]))),
            opts=self.opts)
        self.api_role = self._role(f"{name}-api-task", tags)
        api_policy = aws.iam.RolePolicy(
            f"{name}-api-task-policy", role=self.api_role.id,
            policy=shared.queue.arn.apply(lambda arn: json.dumps(policies.api_policy(arn))), opts=self.opts)
        self.worker_role = self._role(f"{name}-worker-task", tags)
        worker_policy = aws.iam.RolePolicy(
            f"{name}-worker-task-policy", role=self.worker_role.id,
            policy=shared.queue.arn.apply(lambda arn: json.dumps(policies.worker_policy(arn))), opts=self.opts)

        self.api_task = self._task_definition(
            "api", API_CONTAINER, ["http", "--", "/app/enqueue"], api_environment, shared.api_logs,
            self.api_role, args.api_cpu, args.api_memory, API_PORT, tags)
        self.worker_task = self._task_definition(
            "worker", WORKER_CONTAINER, ["sqs", "--", "/app/sleep"], worker_environment, shared.worker_logs,
            self.worker_role, args.worker_cpu, args.worker_memory, None, tags)

        network = {"subnets": subnet_ids, "assign_public_ip": args.assign_public_ip}
        self.api_url: pulumi.Output[str] = pulumi.Output.from_input("")
        self.load_balancer: aws.lb.LoadBalancer | None = None
        self.target_group: aws.lb.TargetGroup | None = None
        load_balancers = None
        # Tasks start only once their roles may do their work: a task that cannot read the queue at
        # start would exit and be restarted until IAM caught up.
        api_depends: list[pulumi.Resource] = [execution_policy, api_policy]
        if args.enable_load_balancer:
            target_group, listener = self._load_balancer(vpc_id, subnet_ids, tags)
            load_balancers = [{"target_group_arn": target_group.arn, "container_name": API_CONTAINER,
                               "container_port": API_PORT}]
            api_depends.append(listener)
        service_opts = pulumi.ResourceOptions.merge(self.opts, pulumi.ResourceOptions(depends_on=api_depends))
        self.api_service = aws.ecs.Service(
            f"{name}-api", cluster=self.cluster_arn, task_definition=self.api_task.arn,
            desired_count=args.api_desired_count, launch_type="FARGATE",
            network_configuration={**network, "security_groups": [self.api_sg.id]},
            load_balancers=load_balancers,
            health_check_grace_period_seconds=60 if load_balancers else None,
            deployment_circuit_breaker={"enable": True, "rollback": True},
            propagate_tags="SERVICE", tags=tags, opts=service_opts)

        # With autoscaling, the desired count belongs to Application Auto Scaling after creation.
        ignore = ["desiredCount"] if args.autoscaling else []
        self.worker_service = aws.ecs.Service(
            f"{name}-worker", cluster=self.cluster_arn, task_definition=self.worker_task.arn,
            desired_count=args.worker_desired_count, launch_type="FARGATE",
            network_configuration={**network, "security_groups": [self.worker_sg.id]},
            deployment_circuit_breaker={"enable": True, "rollback": True},
            propagate_tags="SERVICE", tags=tags,
            opts=pulumi.ResourceOptions.merge(self.opts, pulumi.ResourceOptions(
                ignore_changes=ignore, depends_on=[execution_policy, worker_policy])))
        if args.autoscaling:
            self._worker_autoscaling()

    def _cluster(self, tags: dict[str, str]) -> tuple[pulumi.Input[str], pulumi.Input[str]]:
        """The given cluster (the common case: a shared one), or a new one."""
        if self.args.cluster_arn:
            arn = pulumi.Output.from_input(self.args.cluster_arn)  # a string, or another resource's output
            return arn, arn.apply(lambda a: a.rsplit("/", 1)[-1])
        # Container Insights gives the running and desired task counts the alarms and the dashboard
        # read (modules/monitoring.py).
        insights = self.args.enable_alarms or self.args.enable_dashboard
        cluster = aws.ecs.Cluster(
            f"{self.name}-cluster", settings=[{"name": "containerInsights", "value": "enabled"}] if insights else None,
            tags=tags, opts=self.opts)
        return cluster.arn, cluster.name

    def _network(self) -> tuple[pulumi.Input[str], pulumi.Input[list[str]]]:
        """The given VPC and subnets, or the account's default VPC and all its subnets."""
        if self.args.vpc_id:
            vpc_id: pulumi.Input[str] = self.args.vpc_id
        else:
            vpc_id = aws.ec2.get_vpc_output(default=True, opts=pulumi.InvokeOptions(parent=self.opts.parent)).id
        if isinstance(self.args.subnet_ids, pulumi.Output):
            return vpc_id, self.args.subnet_ids
        if self.args.subnet_ids:
            return vpc_id, list(self.args.subnet_ids)
        subnets = aws.ec2.get_subnets_output(
            filters=[{"name": "vpc-id", "values": [vpc_id]}], opts=pulumi.InvokeOptions(parent=self.opts.parent))
        return vpc_id, subnets.ids

    def _role(self, name: str, tags: dict[str, str]) -> aws.iam.Role:
        return aws.iam.Role(
            name, assume_role_policy=json.dumps(policies.assume_role("ecs-tasks.amazonaws.com")),
            tags=tags, opts=self.opts)

    def _task_definition(self, role, container, command, environment, logs, task_role, cpu, memory, port, tags):
        """One Fargate task definition per role, both from the same image; only the command, the
        environment, the task role and the size differ."""
        args, shared = self.args, self.shared

        def definitions(values: list[str]) -> str:
            queue_url, region, log_group = values
            env = environment(args, queue_url, region, log_group)
            return json.dumps([container_definition(
                name=container, args=args, command=command, environment=env, log_group=log_group,
                region=region, port=port)])

        return aws.ecs.TaskDefinition(
            f"{self.name}-{role}", family=f"{self.name}-{role}", network_mode="awsvpc",
            requires_compatibilities=["FARGATE"], cpu=str(cpu), memory=str(memory),
            runtime_platform={"operating_system_family": "LINUX",
                              "cpu_architecture": "ARM64" if args.architecture == "arm64" else "X86_64"},
            execution_role_arn=self.execution_role.arn, task_role_arn=task_role.arn,
            container_definitions=pulumi.Output.all(shared.queue.url, shared.region, logs.name).apply(definitions),
            tags=tags, opts=self.opts)

    def _load_balancer(self, vpc_id, subnet_ids, tags):
        """An internet-facing ALB forwarding port 80 to the API tasks, health-checked on /health."""
        name, args = self.name, self.args
        alb_sg = aws.ec2.SecurityGroup(
            f"{name}-alb-sg", vpc_id=vpc_id, description="task-service load balancer",
            ingress=[{"protocol": "tcp", "from_port": ALB_PORT, "to_port": ALB_PORT,
                      "cidr_blocks": [args.alb_ingress_cidr]}],
            egress=[{"protocol": "tcp", "from_port": API_PORT, "to_port": API_PORT, "cidr_blocks": ["0.0.0.0/0"]}],
            tags=tags, opts=self.opts)
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-api-from-alb", security_group_id=self.api_sg.id, referenced_security_group_id=alb_sg.id,
            ip_protocol="tcp", from_port=API_PORT, to_port=API_PORT, opts=self.opts)
        alb = aws.lb.LoadBalancer(
            f"{name}-alb", load_balancer_type="application", security_groups=[alb_sg.id], subnets=subnet_ids,
            tags=tags, opts=self.opts)
        target_group = aws.lb.TargetGroup(
            f"{name}-api-tg", port=API_PORT, protocol="HTTP", target_type="ip", vpc_id=vpc_id,
            # The adapter drains for shutdownGrace; deregistration should not cut it short.
            deregistration_delay=args.shutdown_grace,
            health_check={"path": "/health", "matcher": "200", "interval": 15, "timeout": 5,
                          "healthy_threshold": 2, "unhealthy_threshold": 3},
            tags=tags, opts=self.opts)
        listener = aws.lb.Listener(
            f"{name}-http", load_balancer_arn=alb.arn, port=ALB_PORT, protocol="HTTP",
            default_actions=[{"type": "forward", "target_group_arn": target_group.arn}], opts=self.opts)
        self.api_url = pulumi.Output.concat("http://", alb.dns_name)
        self.load_balancer, self.target_group = alb, target_group
        return target_group, listener

    def _worker_autoscaling(self) -> None:
        """Step scaling on queue depth: add workers while messages wait, remove them once the queue
        (waiting and in flight) has been empty for five minutes, never below the minimum."""
        name, args, queue = self.name, self.args, self.shared.queue
        target = aws.appautoscaling.Target(
            f"{name}-worker-scaling", service_namespace="ecs", scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.concat("service/", self.cluster_name, "/", self.worker_service.name),
            min_capacity=args.effective_worker_min_count, max_capacity=args.worker_max_count, opts=self.opts)
        depth = args.worker_scale_out_depth

        def policy(direction: str, steps: list[dict[str, Any]]) -> aws.appautoscaling.Policy:
            return aws.appautoscaling.Policy(
                f"{name}-worker-scale-{direction}", policy_type="StepScaling",
                service_namespace=target.service_namespace, resource_id=target.resource_id,
                scalable_dimension=target.scalable_dimension,
                step_scaling_policy_configuration={"adjustment_type": "ChangeInCapacity", "cooldown": 60,
                                                   "metric_aggregation_type": "Maximum", "step_adjustments": steps},
                opts=self.opts)

        scale_out = policy("out", [
            {"metric_interval_lower_bound": "0", "metric_interval_upper_bound": str(4 * depth),
             "scaling_adjustment": 1},
            {"metric_interval_lower_bound": str(4 * depth), "scaling_adjustment": 2},
        ])
        scale_in = policy("in", [{"metric_interval_upper_bound": "0", "scaling_adjustment": -1}])
        dimensions = {"QueueName": queue.name}
        aws.cloudwatch.MetricAlarm(
            f"{name}-queue-backlog", comparison_operator="GreaterThanOrEqualToThreshold", evaluation_periods=1,
            metric_name="ApproximateNumberOfMessagesVisible", namespace="AWS/SQS", period=60, statistic="Maximum",
            threshold=depth, dimensions=dimensions, alarm_actions=[scale_out.arn], tags=dict(args.tags),
            opts=self.opts)

        def metric(id_: str, metric_name: str) -> dict[str, Any]:
            return {"id": id_, "return_data": False, "metric": {
                "metric_name": metric_name, "namespace": "AWS/SQS", "period": 60, "stat": "Maximum",
                "dimensions": dimensions}}

        aws.cloudwatch.MetricAlarm(
            f"{name}-queue-idle", comparison_operator="LessThanOrEqualToThreshold", evaluation_periods=5,
            threshold=0, alarm_actions=[scale_in.arn], tags=dict(args.tags),
            metric_queries=[
                metric("visible", "ApproximateNumberOfMessagesVisible"),
                metric("inflight", "ApproximateNumberOfMessagesNotVisible"),
                {"id": "total", "expression": "visible + inflight", "label": "messages", "return_data": True},
            ],
            opts=self.opts)
