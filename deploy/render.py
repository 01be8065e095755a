"""Renders the task service under Pulumi's unit-test mocks: what it would create, with no cloud.

No Pulumi CLI, no cloud: `pulumi.runtime.set_mocks` answers every resource registration and
provider call in-process, so the caller sees each resource's type, name and inputs. The tests use
it as their engine (tests/conftest.py). As a command it prints, as JSON, the Lambda settings of
`runtime: lambda` or the ECS task definitions (size and container) of `runtime: ecs`, so tools that
create the functions or run the containers elsewhere (the LocalStack tests, deploy/containers.py)
take them from the deploy and cannot drift from it:

    python deploy/render.py lambda [KEY=VALUE ...]
    python deploy/render.py ecs [KEY=VALUE ...]

KEY is a TaskServiceArgs field (snake_case); VALUE is JSON when it parses, else a string. Overrides
are checked like stack config; a bad one exits 2 with one line naming the key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import pulumi

# `python deploy/render.py` puts deploy/ on sys.path itself, except with -P or -I.
HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from modules import ConfigError, TaskService, TaskServiceArgs, parse  # noqa: E402
from modules.config import FIELD_TO_KEY, KEYS  # noqa: E402
from modules.lambda_functions import FUNCTIONS  # noqa: E402
from modules.task_service import COMPONENT_NAME  # noqa: E402

ACCOUNT = "123456789012"
REGION = "us-east-1"

# Fixed by the mode: with another runtime, or none at all, there is nothing Lambda to render.
MODE_KEYS = ("runtime", "enabled")


@dataclass
class Created:
    typ: str
    name: str
    inputs: dict[str, Any]
    custom: bool


class Mocks(pulumi.runtime.Mocks):
    """Gives each resource the computed outputs the program reads (ARNs, URLs, DNS names)."""

    def __init__(self) -> None:
        self.created: list[Created] = []
        self.calls: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.created.append(Created(args.typ, args.name, dict(args.inputs), bool(args.custom)))
        physical = args.inputs.get("name") or args.name
        service = args.typ.split(":")[1].split("/")[0]
        state = {**args.inputs, "name": physical,
                 "arn": f"arn:aws:{service}:{REGION}:{ACCOUNT}:{args.typ.rsplit(':', 1)[-1].lower()}/{physical}"}
        if args.typ == "aws:sqs/queue:Queue":
            state["arn"] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{physical}"
            state["url"] = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{physical}"
        elif args.typ == "aws:cloudwatch/logGroup:LogGroup":
            state["arn"] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{physical}"
        elif args.typ == "aws:lb/loadBalancer:LoadBalancer":
            state["dnsName"] = f"{physical}-1234.{REGION}.elb.amazonaws.com"
            state["arnSuffix"] = f"app/{physical}/1234"
        elif args.typ == "aws:lb/targetGroup:TargetGroup":
            state["arnSuffix"] = f"targetgroup/{physical}/5678"
        elif args.typ == "aws:lambda/functionUrl:FunctionUrl":
            state["functionUrl"] = f"https://abcdefgh.lambda-url.{REGION}.on.aws/"
        return f"{physical}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append(args.token)
        answers = {
            "aws:index/getRegion:getRegion": {"region": REGION, "name": REGION, "id": REGION},
            "aws:index/getPartition:getPartition": {"partition": "aws", "dnsSuffix": "amazonaws.com",
                                                    "id": "aws", "reverseDnsPrefix": "com.amazonaws"},
            "aws:ec2/getVpc:getVpc": {"id": "vpc-default", "default": True, "cidrBlock": "172.31.0.0/16"},
            "aws:ec2/getSubnets:getSubnets": {"id": REGION, "ids": ["subnet-default-a", "subnet-default-b"]},
        }
        return answers.get(args.token, {}), []


@dataclass
class Deployment:
    """What one run of the component created, and its resolved outputs."""

    created: list[Created]
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def resources(self) -> list[Created]:
        """Cloud resources only (the component itself is not one)."""
        return [c for c in self.created if c.custom]

    def of_type(self, typ: str) -> list[Created]:
        return [c for c in self.resources if c.typ == typ]

    def one(self, typ: str, name: str | None = None) -> Created:
        found = [c for c in self.of_type(typ) if name is None or c.name == name]
        assert len(found) == 1, f"expected one {typ} {name or ''}, got {[c.name for c in found]}"
        return found[0]

    def types(self) -> set[str]:
        return {c.typ for c in self.resources}

    def container(self, task_name: str) -> dict[str, Any]:
        """The single container definition of a task definition, decoded."""
        (definition,) = json.loads(self.one("aws:ecs/taskDefinition:TaskDefinition", task_name)
                                   .inputs["containerDefinitions"])
        return definition

    def policy(self, name: str) -> dict[str, Any]:
        return json.loads(self.one("aws:iam/rolePolicy:RolePolicy", name).inputs["policy"])


def run(args: TaskServiceArgs, name: str = "svc") -> Deployment:
    """Builds `TaskService(name, args)` under fresh mocks and waits for everything it registers."""
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="task-service", stack="test", preview=False)
    deployment = Deployment(mocks.created)

    @pulumi.runtime.test
    def program():
        service = TaskService(name, args)
        return pulumi.Output.all(
            api_url=service.api_url, queue_url=service.queue_url, dlq_url=service.dlq_url,
            alarms=pulumi.Output.from_input(service.alarms), dashboard_name=service.dashboard_name,
        ).apply(deployment.outputs.update)

    program()
    return deployment


def _plain(value: Any) -> Any:
    """Pulumi hands every number back as a float; whole ones print as the ints the program set."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def lambda_settings(deployment: Deployment, name: str) -> dict[str, Any]:
    """The settings another tool needs to create the same functions, mapping, URL and queue.

    Read from the inputs the program registered (camelCase), not from TaskServiceArgs, so they are
    what `pulumi up` would send. A setting the program leaves unset is null (AWS's default applies).
    """
    functions = {}
    for fn in FUNCTIONS:
        f = deployment.one("aws:lambda/function:Function", f"{name}-{fn}").inputs
        logging = f.get("loggingConfig") or {}
        functions[fn] = {
            "runtime": f.get("runtime"),  # None with lambdaPackage=image
            "handler": f.get("handler"),
            "architectures": f.get("architectures"),
            "timeout": f.get("timeout"),
            "memory_size": f.get("memorySize"),
            "environment": (f.get("environment") or {}).get("variables", {}),
            "log_format": logging.get("logFormat"),
            "log_group": logging.get("logGroup"),
        }
    mapping = deployment.one("aws:lambda/eventSourceMapping:EventSourceMapping").inputs
    url = deployment.one("aws:lambda/functionUrl:FunctionUrl").inputs
    queue = deployment.one("aws:sqs/queue:Queue", f"{name}-queue").inputs
    return _plain({
        "functions": functions,
        "event_source_mapping": {
            "batch_size": mapping.get("batchSize"),
            "maximum_batching_window_in_seconds": mapping.get("maximumBatchingWindowInSeconds"),
            "function_response_types": mapping.get("functionResponseTypes"),
            "maximum_concurrency": (mapping.get("scalingConfig") or {}).get("maximumConcurrency"),
            "filter_patterns": [f["pattern"] for f in (mapping.get("filterCriteria") or {}).get("filters", [])],
        },
        "function_url": {"authorization_type": url.get("authorizationType")},
        "queue": {
            "visibility_timeout_seconds": queue.get("visibilityTimeoutSeconds"),
            "max_receive_count": json.loads(queue["redrivePolicy"])["maxReceiveCount"],
        },
    })


def ecs_settings(deployment: Deployment, name: str) -> dict[str, Any]:
    """Per role (api, worker): the task's size and its one container definition, as ECS gets them."""
    settings = {}
    for role in ("api", "worker"):
        task = deployment.one("aws:ecs/taskDefinition:TaskDefinition", f"{name}-{role}").inputs
        settings[role] = {
            "cpu": int(task["cpu"]),
            "memory": int(task["memory"]),
            "container": deployment.container(f"{name}-{role}"),
        }
    return _plain(settings)


RENDERERS = {"lambda": lambda_settings, "ecs": ecs_settings}


class UsageError(ValueError):
    """An override the command cannot use; the message is one line and names the key."""


def lambda_args(overrides: list[str]) -> TaskServiceArgs:
    """TaskServiceArgs(runtime="lambda") with `KEY=VALUE` overrides, checked like stack config."""
    return mode_args("lambda", overrides)


def mode_args(runtime: str, overrides: list[str]) -> TaskServiceArgs:
    """TaskServiceArgs(runtime=runtime) with `KEY=VALUE` overrides, checked like stack config."""
    types = {f.name: f.type for f in dataclasses.fields(TaskServiceArgs)}
    raw: dict[str, Any] = {}
    for item in overrides:
        name, sep, text = item.partition("=")
        if not sep:
            raise UsageError(f"{item}: not KEY=VALUE")
        if name not in types:
            raise UsageError(f"{name}: unknown key; known keys: {', '.join(sorted(set(types) - set(MODE_KEYS)))}")
        if name in MODE_KEYS:
            raise UsageError(f"{name}: set by the mode ({runtime}), not an override")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        # A string field keeps what was typed (log_level=1e3 stays "1e3", not "1000.0").
        if types[name] == "str" and value is not None and not isinstance(value, str):
            value = text
        raw[FIELD_TO_KEY[name]] = value
    try:
        return parse({**raw, "runtime": runtime})
    except ConfigError as error:
        # Problems name config keys (batchSize); say them as they were given here (batch_size).
        raise UsageError("; ".join(re.sub(r"^(\w+):", lambda m: f"{KEYS.get(m[1], m[1])}:", p)
                                   for p in error.problems)) from error


def render(runtime: str, args: TaskServiceArgs) -> dict[str, Any]:
    """The settings of `runtime` ("lambda" or "ecs") for `args`, as the command prints them."""
    return RENDERERS[runtime](run(args, COMPONENT_NAME), COMPONENT_NAME)


def main(argv: list[str]) -> int:
    """The command; exits 2 on bad usage, like argparse, so callers can tell it from a crash."""
    if len(argv) < 1 or argv[0] not in RENDERERS:
        print("usage: render.py lambda|ecs [KEY=VALUE ...]", file=sys.stderr)
        return 2
    try:
        args = mode_args(argv[0], argv[1:])
    except UsageError as error:
        print(f"render.py: {error}", file=sys.stderr)
        return 2
    # Whatever the engine prints goes to stderr: stdout carries the JSON alone.
    with contextlib.redirect_stdout(sys.stderr):
        settings = render(argv[0], args)
    json.dump(settings, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # Exit without the interpreter's teardown: Pulumi's mocks leave asyncio event loops whose
    # finalizers, run at teardown, now and then print "Exception ignored in BaseEventLoop.__del__"
    # (a closed self-pipe) to stderr, which callers rightly read as output (1 run in 15 here).
    os._exit(code)
