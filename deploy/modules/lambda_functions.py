"""runtime=lambda: the same two binaries, deployed as Lambda functions (no ECS resources).

The code is what `cargo lambda build --release --output-format zip` leaves in
`target/lambda/{enqueue,sleep}/bootstrap.zip`; the SQS event source mapping reports batch item
failures, exactly as the adapter's SQS source does on ECS.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from . import policies
from .config import TaskServiceArgs, filter_patterns

FUNCTIONS = ("enqueue", "sleep")


def code_path(args: TaskServiceArgs, function: str) -> str:
    """Where the function's zip is, relative to the Pulumi program's folder (deploy/)."""
    return os.path.join(args.lambda_code_dir, function, "bootstrap.zip")


def missing_artifacts(args: TaskServiceArgs, base_dir: str) -> list[str]:
    """The zips `pulumi up` would upload that do not exist (checked before planning, not in tests)."""
    if args.lambda_package == "image":
        return []
    paths = [os.path.normpath(os.path.join(base_dir, code_path(args, f))) for f in FUNCTIONS]
    return [p for p in paths if not os.path.isfile(p)]


@dataclass
class Shared:
    queue: aws.sqs.Queue
    api_logs: aws.cloudwatch.LogGroup
    worker_logs: aws.cloudwatch.LogGroup


class LambdaResources:
    """Creates the Lambda runtime's resources as children of `parent`; exposes `api_url`."""

    def __init__(self, name: str, args: TaskServiceArgs, shared: Shared, parent: pulumi.Resource):
        opts = pulumi.ResourceOptions(parent=parent)
        tags = dict(args.tags)
        arch = [args.architecture]
        env = {"variables": {"QUEUE_URL": shared.queue.url, "RUST_LOG": args.log_level}}

        def role(role_name: str, actions: tuple[str, ...], logs: aws.cloudwatch.LogGroup):
            r = aws.iam.Role(
                role_name, assume_role_policy=json.dumps(policies.assume_role("lambda.amazonaws.com")),
                tags=tags, opts=opts)
            policy = aws.iam.RolePolicy(
                f"{role_name}-policy", role=r.id,
                policy=pulumi.Output.all(shared.queue.arn, logs.arn).apply(
                    lambda a: json.dumps(policies.lambda_policy(actions, a[0], a[1]))),
                opts=opts)
            return r, policy

        def package(binary: str) -> dict:
            if args.lambda_package == "image":
                # The ECS image itself; Lambda runs the function binary instead of /app/entrypoint.
                return {"package_type": "Image", "image_uri": args.image_ref,
                        "image_config": {"entry_points": [f"/app/{binary}"]}}
            return {"package_type": "Zip", "runtime": "provided.al2023", "handler": "bootstrap",
                    "code": pulumi.FileArchive(code_path(args, binary))}

        def function(fn_name: str, binary: str, r: aws.iam.Role, logs, timeout: int, memory: int):
            return aws.lambda_.Function(
                fn_name, architectures=arch, **package(binary), role=r.arn, timeout=timeout,
                memory_size=memory, environment=env,
                # The same log groups as on ECS, so moving between runtimes keeps one place to look.
                logging_config={"log_format": "Text", "log_group": logs.name},
                tags=tags, opts=opts)

        api_role, _ = role(f"{name}-enqueue-fn", policies.API_QUEUE_ACTIONS, shared.api_logs)
        worker_role, worker_policy = role(f"{name}-sleep-fn", policies.WORKER_QUEUE_ACTIONS, shared.worker_logs)
        self.api_function = function(f"{name}-enqueue", "enqueue", api_role, shared.api_logs,
                                     args.api_timeout, args.api_memory)
        self.worker_function = function(f"{name}-sleep", "sleep", worker_role, shared.worker_logs,
                                        args.worker_timeout, args.worker_memory)

        self.function_url = aws.lambda_.FunctionUrl(
            f"{name}-enqueue-url", function_name=self.api_function.name,
            authorization_type=args.function_url_auth, invoke_mode=args.api_invoke_mode, opts=opts)
        if args.function_url_auth == "NONE":
            # A public URL needs both statements since AWS's October 2025 change: invoking through
            # the URL, and the function invocation it makes.
            aws.lambda_.Permission(
                f"{name}-enqueue-url-public", action="lambda:InvokeFunctionUrl", function=self.api_function.name,
                principal="*", function_url_auth_type="NONE", opts=opts)
            aws.lambda_.Permission(
                f"{name}-enqueue-url-invoke", action="lambda:InvokeFunction", function=self.api_function.name,
                principal="*", invoked_via_function_url=True, opts=opts)

        self.event_source_mapping = aws.lambda_.EventSourceMapping(
            f"{name}-sleep-sqs", event_source_arn=shared.queue.arn, function_name=self.worker_function.arn,
            batch_size=args.batch_size, maximum_batching_window_in_seconds=args.batching_window,
            function_response_types=["ReportBatchItemFailures"],
            scaling_config={"maximum_concurrency": args.worker_max_concurrency},
            filter_criteria=({"filters": [{"pattern": p} for p in filter_patterns(args.filter_criteria)]}
                             if args.filter_criteria else None),
            # The role's policy must exist before Lambda validates the mapping's access to the queue.
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[worker_policy])))
        self.api_url: pulumi.Output[str] = self.function_url.function_url
