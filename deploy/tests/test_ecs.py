"""runtime=ecs under Pulumi's mocks: queue, IAM, task definitions, services, ALB, autoscaling."""

from __future__ import annotations

import json

import pytest

from conftest import ACCOUNT, REGION, run
from modules import ConfigError, TaskServiceArgs

QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:tasks"
DLQ_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:tasks-dlq"
TD = "aws:ecs/taskDefinition:TaskDefinition"
SERVICE = "aws:ecs/service:Service"


@pytest.fixture(scope="module")
def ecs():
    return run(TaskServiceArgs())


def env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["environment"]}


@pytest.mark.parametrize("runtime", ["ecs", "lambda"])
def test_queue_has_a_dlq_and_a_redrive_policy(runtime):
    d = run(TaskServiceArgs(runtime=runtime, max_receive_count=5))
    queue = d.one("aws:sqs/queue:Queue", "svc-queue")
    dlq = d.one("aws:sqs/queue:Queue", "svc-dlq")
    assert (queue.inputs["name"], dlq.inputs["name"]) == ("tasks", "tasks-dlq")
    assert json.loads(queue.inputs["redrivePolicy"]) == {"deadLetterTargetArn": DLQ_ARN, "maxReceiveCount": 5}
    assert dlq.inputs["messageRetentionSeconds"] == 14 * 24 * 3600
    assert "redrivePolicy" not in dlq.inputs
    groups = sorted(g.inputs["name"] for g in d.of_type("aws:cloudwatch/logGroup:LogGroup"))
    assert groups == ["/svc/api", "/svc/worker"]
    assert d.outputs["queue_url"].endswith(f"/{ACCOUNT}/tasks")
    assert d.outputs["dlq_url"].endswith(f"/{ACCOUNT}/tasks-dlq")


def test_task_roles_are_scoped_to_the_queue_with_no_wildcards(ecs):
    api = ecs.policy("svc-api-task-policy")["Statement"]
    worker = ecs.policy("svc-worker-task-policy")["Statement"]
    assert [(s["Action"], s["Resource"]) for s in api] == [
        (["sqs:SendMessage", "sqs:GetQueueAttributes"], [QUEUE_ARN])]
    assert [(s["Action"], s["Resource"]) for s in worker] == [
        (["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"],
         [QUEUE_ARN])]
    for statement in api + worker:
        assert statement["Effect"] == "Allow"
        assert not any("*" in a for a in statement["Action"])
        assert not any("*" in r for r in statement["Resource"])
    roles = {r.name: json.loads(r.inputs["assumeRolePolicy"]) for r in ecs.of_type("aws:iam/role:Role")}
    assert set(roles) == {"svc-execution", "svc-api-task", "svc-worker-task"}
    for trust in roles.values():
        assert trust["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    api_td, worker_td = ecs.one(TD, "svc-api").inputs, ecs.one(TD, "svc-worker").inputs
    assert api_td["taskRoleArn"].endswith("/svc-api-task")
    assert worker_td["taskRoleArn"].endswith("/svc-worker-task")
    assert api_td["executionRoleArn"] == worker_td["executionRoleArn"]


def test_execution_role_writes_only_its_log_groups_and_pulls_only_its_repository():
    public = run(TaskServiceArgs(image="ghcr.io/acme/tasks")).policy("svc-execution-policy")["Statement"]
    assert [s["Sid"] for s in public] == ["Logs"]
    assert public[0]["Resource"] == [f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/svc/api:*",
                                     f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/svc/worker:*"]
    image = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/team/tasks"
    ecr = {s["Sid"]: s for s in run(TaskServiceArgs(image=image)).policy("svc-execution-policy")["Statement"]}
    assert ecr["EcrPull"]["Resource"] == [f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/team/tasks"]
    # The one action AWS grants only on "*"; it reads nothing.
    assert ecr["EcrToken"] == {"Sid": "EcrToken", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"],
                               "Resource": ["*"]}


def test_api_task_definition(ecs):
    td = ecs.one(TD, "svc-api").inputs
    assert (td["networkMode"], td["requiresCompatibilities"], td["cpu"], td["memory"]) == (
        "awsvpc", ["FARGATE"], "256", "512")
    c = ecs.container("svc-api")
    assert c["image"] == "lambda-ecs-tasks:latest"
    assert c["entryPoint"] + c["command"] == ["/app/adapter", "http", "--", "/app/enqueue"]
    assert c["portMappings"] == [{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp", "name": "http"}]
    assert c["healthCheck"]["command"] == ["CMD", "/app/adapter", "healthcheck"]
    e = env(c)
    assert e["QUEUE_URL"] == f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/tasks"
    assert e["ADAPTER_LISTEN"] == "0.0.0.0:8080"
    assert e["ADAPTER_TRUST_FORWARDED_FOR"] == "true", "behind the ALB, X-Forwarded-For is the ALB's"
    assert e["ADAPTER_TIMEOUT"] == "10"
    # 64 invocations in 4 processes, not 64 processes in 512 MiB.
    assert (e["ADAPTER_MAX_CONCURRENCY"], e["ADAPTER_PER_PROCESS_CONCURRENCY"]) == ("64", "16")
    assert e["AWS_REGION"] == REGION
    assert "ADAPTER_QUEUE_URL" not in e
    logs = c["logConfiguration"]
    assert (logs["logDriver"], logs["options"]["awslogs-group"]) == ("awslogs", "/svc/api")


def test_worker_task_definition_takes_its_flags_from_config():
    args = TaskServiceArgs(batch_size=50, batching_window=2, worker_max_concurrency=16, worker_timeout=120,
                           worker_per_process_concurrency=8,
                           shutdown_grace=40, image="repo/tasks", image_tag="v1.2.3", worker_cpu=512,
                           worker_memory=1024, architecture="arm64")
    d = run(args)
    c = d.container("svc-worker")
    assert c["image"] == "repo/tasks:v1.2.3"
    assert c["entryPoint"] + c["command"] == ["/app/adapter", "sqs", "--", "/app/sleep"]
    assert "portMappings" not in c
    assert c["healthCheck"]["command"] == ["CMD", "/app/adapter", "healthcheck"]
    e = env(c)
    queue_url = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/tasks"
    assert e["QUEUE_URL"] == e["ADAPTER_QUEUE_URL"] == queue_url
    assert {k: e[k] for k in ("ADAPTER_BATCH_SIZE", "ADAPTER_BATCHING_WINDOW", "ADAPTER_MAX_CONCURRENCY",
                              "ADAPTER_TIMEOUT", "ADAPTER_SHUTDOWN_GRACE", "ADAPTER_REPORT_BATCH_ITEM_FAILURES",
                              "ADAPTER_PER_PROCESS_CONCURRENCY")} == {
        "ADAPTER_BATCH_SIZE": "50", "ADAPTER_BATCHING_WINDOW": "2", "ADAPTER_MAX_CONCURRENCY": "16",
        "ADAPTER_TIMEOUT": "120", "ADAPTER_SHUTDOWN_GRACE": "40", "ADAPTER_REPORT_BATCH_ITEM_FAILURES": "true",
        "ADAPTER_PER_PROCESS_CONCURRENCY": "8"}
    # ECS must not SIGKILL the adapter before its grace period and release of unfinished work end.
    assert c["stopTimeout"] > 40 and c["stopTimeout"] <= 120
    td = d.one(TD, "svc-worker").inputs
    assert (td["cpu"], td["memory"], td["runtimePlatform"]["cpuArchitecture"]) == ("512", "1024", "ARM64")


def test_every_adapter_variable_is_a_flag_the_adapter_knows(ecs):
    # The adapter's flags (adapter/src/cli.rs, adapter/src/sqs/mod.rs): a typo here would be ignored.
    known = {"ADAPTER_LISTEN", "ADAPTER_MAX_BODY_BYTES", "ADAPTER_FUNCTION_NAME", "ADAPTER_MEMORY_SIZE",
             "ADAPTER_LOG_GROUP", "ADAPTER_REGION", "ADAPTER_ACCOUNT_ID", "ADAPTER_MAX_CONCURRENCY",
             "ADAPTER_PER_PROCESS_CONCURRENCY", "ADAPTER_TIMEOUT", "ADAPTER_INIT_TIMEOUT", "ADAPTER_ADMIN_LISTEN",
             "ADAPTER_INVOKE_LISTEN", "ADAPTER_SHUTDOWN_GRACE", "ADAPTER_QUEUE_URL", "ADAPTER_BATCH_SIZE",
             "ADAPTER_BATCHING_WINDOW", "ADAPTER_REPORT_BATCH_ITEM_FAILURES", "ADAPTER_VISIBILITY_EXTENSION_MARGIN",
             "ADAPTER_POLLERS", "ADAPTER_TRUST_FORWARDED_FOR", "ADAPTER_PLATFORM_LOGS",
             "ADAPTER_STOP_ON_STDIN_EOF", "ADAPTER_FILTER_CRITERIA", "ADAPTER_INVOKE_MODE"}
    for task in ("svc-api", "svc-worker"):
        used = {k for k in env(ecs.container(task)) if k.startswith("ADAPTER_")}
        assert used <= known, used - known


def test_filter_criteria_reach_the_worker_adapter_only_when_set():
    assert "ADAPTER_FILTER_CRITERIA" not in env(run(TaskServiceArgs()).container("svc-worker"))
    criteria = json.dumps({"Filters": [{"Pattern": json.dumps({"body": {"kind": ["a"]}})}]})
    worker = env(run(TaskServiceArgs(filter_criteria=criteria)).container("svc-worker"))
    assert worker["ADAPTER_FILTER_CRITERIA"] == criteria


def test_api_invoke_mode_reaches_the_api_adapter():
    assert env(run(TaskServiceArgs()).container("svc-api"))["ADAPTER_INVOKE_MODE"] == "BUFFERED"
    api = env(run(TaskServiceArgs(api_invoke_mode="RESPONSE_STREAM")).container("svc-api"))
    assert api["ADAPTER_INVOKE_MODE"] == "RESPONSE_STREAM"


def test_worker_pollers_reach_the_adapter_only_when_set():
    unset = env(run(TaskServiceArgs()).container("svc-worker"))
    assert "ADAPTER_POLLERS" not in unset, "the adapter picks its own number"
    assert env(run(TaskServiceArgs(worker_pollers=8)).container("svc-worker"))["ADAPTER_POLLERS"] == "8"


@pytest.mark.parametrize("worker_timeout", [30, 310, 900])
def test_ecs_visibility_timeout_covers_the_adapter_timeout(worker_timeout):
    d = run(TaskServiceArgs(worker_timeout=worker_timeout))
    visibility = d.one("aws:sqs/queue:Queue", "svc-queue").inputs["visibilityTimeoutSeconds"]
    assert visibility >= int(env(d.container("svc-worker"))["ADAPTER_TIMEOUT"]) == worker_timeout


def test_services_take_desired_counts_and_network_from_config():
    d = run(TaskServiceArgs(api_desired_count=3, worker_desired_count=2, worker_max_count=6,
                            cluster_arn=f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/shared",
                            vpc_id="vpc-1", subnet_ids=("subnet-1", "subnet-2"), assign_public_ip=False))
    assert not d.of_type("aws:ecs/cluster:Cluster")
    api, worker = d.one(SERVICE, "svc-api").inputs, d.one(SERVICE, "svc-worker").inputs
    assert (api["desiredCount"], worker["desiredCount"]) == (3, 2)
    for service in (api, worker):
        assert service["cluster"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/shared"
        assert service["launchType"] == "FARGATE"
        assert service["networkConfiguration"]["subnets"] == ["subnet-1", "subnet-2"]
        assert service["networkConfiguration"]["assignPublicIp"] is False
    assert all(sg.inputs["vpcId"] == "vpc-1" for sg in d.of_type("aws:ec2/securityGroup:SecurityGroup"))
    scaling = d.one("aws:appautoscaling/target:Target").inputs
    assert (scaling["minCapacity"], scaling["maxCapacity"]) == (2, 6)
    assert scaling["resourceId"] == "service/shared/svc-worker"


def test_default_network_is_the_default_vpc(ecs):
    assert ecs.one("aws:ecs/cluster:Cluster")
    assert ecs.one(SERVICE, "svc-api").inputs["networkConfiguration"]["subnets"] == [
        "subnet-default-a", "subnet-default-b"]


def test_alb_forwards_to_the_api_and_checks_health(ecs):
    tg = ecs.one("aws:lb/targetGroup:TargetGroup").inputs
    assert (tg["port"], tg["protocol"], tg["targetType"]) == (8080, "HTTP", "ip")
    assert tg["healthCheck"]["path"] == "/health"
    listener = ecs.one("aws:lb/listener:Listener").inputs
    assert listener["port"] == 80 and listener["defaultActions"][0]["type"] == "forward"
    lb = ecs.one(SERVICE, "svc-api").inputs["loadBalancers"]
    assert [(b["containerName"], b["containerPort"]) for b in lb] == [("api", 8080)]
    assert ecs.outputs["api_url"] == f"http://svc-alb-1234.{REGION}.elb.amazonaws.com"
    # Only the ALB's security group may reach the API's port.
    rule = ecs.one("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule").inputs
    assert (rule["fromPort"], rule["toPort"]) == (8080, 8080) and "referencedSecurityGroupId" in rule


def test_without_load_balancer_there_is_no_alb():
    d = run(TaskServiceArgs(enable_load_balancer=False))
    assert not {t for t in d.types() if t.startswith("aws:lb/")}
    assert "loadBalancers" not in d.one(SERVICE, "svc-api").inputs
    assert d.outputs["api_url"] == ""
    assert "ADAPTER_TRUST_FORWARDED_FOR" not in env(d.container("svc-api")), "no proxy to trust"


def test_worker_scales_on_queue_depth(ecs):
    alarms = {a.name: a.inputs for a in ecs.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    backlog = alarms["svc-queue-backlog"]
    assert (backlog["namespace"], backlog["metricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert backlog["dimensions"] == {"QueueName": "tasks"} and backlog["threshold"] == 10
    assert backlog["alarmActions"] == ["arn:aws:appautoscaling:us-east-1:123456789012:policy/svc-worker-scale-out"]
    idle = alarms["svc-queue-idle"]
    assert {q["id"] for q in idle["metricQueries"]} == {"visible", "inflight", "total"}
    policies = {p.name: p.inputs for p in ecs.of_type("aws:appautoscaling/policy:Policy")}
    assert set(policies) == {"svc-worker-scale-out", "svc-worker-scale-in"}
    steps = policies["svc-worker-scale-out"]["stepScalingPolicyConfiguration"]["stepAdjustments"]
    assert all(s["scalingAdjustment"] > 0 for s in steps)


def test_no_autoscaling_when_min_equals_max():
    d = run(TaskServiceArgs(worker_desired_count=2, worker_max_count=2))
    assert not d.of_type("aws:appautoscaling/target:Target")
    # Only the alarms for people (test_monitoring.py) remain: none that scales.
    assert all(not a.inputs.get("alarmActions") for a in d.of_type("aws:cloudwatch/metricAlarm:MetricAlarm"))
    assert not {"svc-queue-backlog", "svc-queue-idle"} & {a.name for a in d.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}


def test_ecs_runtime_creates_no_lambda_resources(ecs):
    assert not {t for t in ecs.types() if t.startswith("aws:lambda/")}


@pytest.mark.parametrize("runtime", ["ecs", "lambda", "foo"])
def test_disabled_creates_nothing(runtime):
    d = run(TaskServiceArgs(enabled=False, runtime=runtime))
    assert d.resources == []
    assert [c.typ for c in d.created] == ["lambda-ecs-tasks:index:TaskService"]
    assert d.outputs == {"api_url": None, "queue_url": None, "dlq_url": None, "alarms": {}, "dashboard_name": None}


def test_the_component_refuses_bad_args_built_in_code():
    with pytest.raises(ConfigError, match="workerDesiredCount"):
        run(TaskServiceArgs(worker_desired_count=-1))


def test_a_larger_stack_can_pass_its_own_resources_outputs():
    import pulumi
    import pulumi_aws as aws

    from conftest import Mocks
    from modules import TaskService

    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="task-service", stack="test", preview=False)

    @pulumi.runtime.test
    def program():
        cluster = aws.ecs.Cluster("shared")
        vpc = aws.ec2.Vpc("net", cidr_block="10.0.0.0/16")
        subnet = aws.ec2.Subnet("net-a", vpc_id=vpc.id, cidr_block="10.0.1.0/24")
        TaskService("svc", TaskServiceArgs(cluster_arn=cluster.arn, vpc_id=vpc.id,
                                           subnet_ids=pulumi.Output.all(subnet.id)))

    program()
    created = {(c.typ, c.name): c.inputs for c in mocks.created if c.custom}
    assert ("aws:ecs/cluster:Cluster", "svc-cluster") not in created
    worker = created[("aws:ecs/service:Service", "svc-worker")]
    assert worker["cluster"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/shared"
    assert worker["networkConfiguration"]["subnets"] == ["net-a-id"]
    scaling = created[("aws:appautoscaling/target:Target", "svc-worker-scaling")]
    assert scaling["resourceId"] == "service/shared/svc-worker"
    assert "aws:ec2/getVpc:getVpc" not in mocks.calls
