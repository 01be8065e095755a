"""Pulumi unit-test mocks: run the component against a fake engine and record what it creates.

No Pulumi CLI, no cloud: `pulumi.runtime.set_mocks` answers every resource registration and
provider call in-process, so the tests see each resource's type, name and inputs.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modules import TaskService, TaskServiceArgs  # noqa: E402

ACCOUNT = "123456789012"
REGION = "us-east-1"


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
        return pulumi.Output.all(service.api_url, service.queue_url, service.dlq_url).apply(
            lambda v: deployment.outputs.update(api_url=v[0], queue_url=v[1], dlq_url=v[2]))

    program()
    return deployment


@pytest.fixture
def deploy():
    return run
