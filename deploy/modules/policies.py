"""IAM policy documents, as pure functions of ARNs, so least privilege can be asserted in tests.

Each role gets exactly the SQS actions its binary calls (see functions/enqueue/src/queue.rs and
adapter/src/sqs/queue.rs), on this queue's ARN only; batch calls (DeleteMessageBatch,
ChangeMessageVisibilityBatch) are authorised by the singular actions.
"""

from __future__ import annotations

import re
from typing import Any

# The API sends tasks and reads the queue's depth for GET /health.
API_QUEUE_ACTIONS = ("sqs:SendMessage", "sqs:GetQueueAttributes")
# The worker (the adapter's SQS source, or Lambda's event source mapping) receives, deletes,
# extends or releases visibility, and reads the queue's ARN and visibility timeout at start.
WORKER_QUEUE_ACTIONS = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
)
LOG_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents")
ECR_PULL_ACTIONS = ("ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage")

_ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(?P<repo>[^:@]+)"
)


def document(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(sid: str, actions: tuple[str, ...], resources: list[str]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": resources}


def assume_role(service: str) -> dict[str, Any]:
    """Trust policy letting one AWS service (ecs-tasks, lambda) assume the role."""
    return document({
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    })


def log_stream_arns(log_group_arn: str) -> list[str]:
    """Log streams of one group. The provider's group ARN has no `:*`; stream ARNs need it."""
    return [log_group_arn.removesuffix(":*") + ":*"]


def api_policy(queue_arn: str) -> dict[str, Any]:
    return document(allow("SendTasks", API_QUEUE_ACTIONS, [queue_arn]))


def worker_policy(queue_arn: str) -> dict[str, Any]:
    return document(allow("ConsumeTasks", WORKER_QUEUE_ACTIONS, [queue_arn]))


def lambda_policy(queue_actions: tuple[str, ...], queue_arn: str, log_group_arn: str) -> dict[str, Any]:
    """A function's role: its queue actions plus writing to its own log group."""
    return document(
        allow("Queue", queue_actions, [queue_arn]),
        allow("Logs", LOG_ACTIONS, log_stream_arns(log_group_arn)),
    )


def ecr_repository_arn(image: str, partition: str = "aws") -> str | None:
    """The ECR repository ARN of an image reference, or None when the image is not in ECR."""
    m = _ECR_IMAGE.match(image)
    if not m:
        return None
    return f"arn:{partition}:ecr:{m['region']}:{m['account']}:repository/{m['repo']}"


def execution_policy(log_group_arns: list[str], image: str, partition: str = "aws") -> dict[str, Any]:
    """The ECS execution role: write the two log groups, pull the image.

    `ecr:GetAuthorizationToken` is the one action AWS only grants on `*` (it is account-wide and
    reads nothing); it is added only when the image is in ECR, and pulling is scoped to the repository.
    """
    streams = [arn for group in log_group_arns for arn in log_stream_arns(group)]
    statements = [allow("Logs", LOG_ACTIONS, streams)]
    repo = ecr_repository_arn(image, partition)
    if repo:
        statements.append(allow("EcrToken", ("ecr:GetAuthorizationToken",), ["*"]))
        statements.append(allow("EcrPull", ECR_PULL_ACTIONS, [repo]))
    return document(*statements)
