"""The stack entry point: stack config in, component out, bad config refused before planning."""

from __future__ import annotations

import os
import runpy

import pulumi
import pytest

from conftest import Mocks

MAIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "__main__.py")


def run_main(config: dict[str, str]) -> Mocks:
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="task-service", stack="test", preview=False)
    pulumi.runtime.set_all_config({f"task-service:{k}": v for k, v in config.items()})

    @pulumi.runtime.test
    def program():
        runpy.run_path(MAIN)

    try:
        program()
    finally:
        pulumi.runtime.set_all_config({})
    return mocks


def test_main_reads_stack_config():
    mocks = run_main({"runtime": "ecs", "queueName": "jobs", "apiDesiredCount": "3",
                      "subnetIds": '["subnet-1"]', "vpcId": "vpc-1", "clusterArn": "arn:aws:ecs:x:1:cluster/c"})
    queues = [c.inputs["name"] for c in mocks.created if c.typ == "aws:sqs/queue:Queue"]
    assert sorted(queues) == ["jobs", "jobs-dlq"]
    services = {c.name: c.inputs for c in mocks.created if c.typ == "aws:ecs/service:Service"}
    assert services["task-service-api"]["desiredCount"] == 3


def test_main_refuses_bad_config_with_a_clear_message():
    with pytest.raises(pulumi.RunError, match=r"runtime: 'foo' is not supported; allowed: ecs or lambda"):
        run_main({"runtime": "foo"})


def test_main_asks_for_the_lambda_zips_before_planning(tmp_path):
    with pytest.raises(pulumi.RunError, match="scripts/build-lambda"):
        run_main({"runtime": "lambda", "lambdaCodeDir": str(tmp_path)})


def test_main_with_the_service_disabled_creates_nothing():
    mocks = run_main({"enabled": "false"})
    assert [c for c in mocks.created if c.custom] == []
