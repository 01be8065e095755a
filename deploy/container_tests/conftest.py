"""The image under test, Docker, LocalStack's SQS, and containers run from the ECS task definitions.

`scripts/container-test` builds the image and starts Docker and LocalStack first; these fixtures
only find them. Every container a test starts is removed when it ends, logs printed on failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from containers import Local, docker_run_args, ecs_settings, free_port  # noqa: E402

DOCKER = os.environ.get("DOCKER", "docker")
IMAGE = os.environ.get("IMAGE_TAG", "lambda-ecs-tasks")
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
# Every container a test starts carries this label; scripts/container-test removes what is left of
# them (a test run killed midway) at its end.
LABEL = {"lambda-ecs-tasks.test": "1"}
# The deploy's settings, with a short shutdown grace (stopTimeout follows it) so a stop test takes
# seconds; everything else is the program's default.
OVERRIDES = ["shutdown_grace=2"]


def docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done


def wait_until(what: str, condition: Callable[[], Any], timeout: float, every: float = 0.2) -> Any:
    """Polls `condition` until it returns something truthy, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class Container:
    """One running container, by name."""

    def __init__(self, name: str):
        self.name = name

    def logs(self) -> str:
        done = docker("logs", self.name, check=False)
        return done.stdout + done.stderr

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON lines of the container's output (the functions' and the adapter's)."""
        lines = []
        for line in self.logs().splitlines():
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                lines.append(value)
        return lines

    def lines_with(self, message: str, **fields: Any) -> list[dict[str, Any]]:
        def matches(line: dict[str, Any]) -> bool:
            text = line.get("fields", {}).get("message", line.get("message"))
            merged = {**line, **line.get("fields", {})}
            return text == message and all(merged.get(k) == v for k, v in fields.items())
        return [line for line in self.log_lines() if matches(line)]

    def state(self) -> dict[str, Any]:
        return json.loads(docker("inspect", "--format", "{{json .State}}", self.name).stdout)

    def health(self) -> str | None:
        return (self.state().get("Health") or {}).get("Status")

    def healthy_or_fail(self) -> bool:
        """True once Docker calls it healthy; an error at once if it is no longer running."""
        state = self.state()
        if not state["Running"]:
            raise AssertionError(f"{self.name} stopped (exit {state['ExitCode']}):\n{self.logs()}")
        return (state.get("Health") or {}).get("Status") == "healthy"


@pytest.fixture(scope="session")
def image() -> str:
    done = docker("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False)
    if done.returncode != 0:
        pytest.fail(f"image {IMAGE} not found: build it with scripts/image (scripts/container-test does)")
    return IMAGE


@pytest.fixture(scope="session")
def settings() -> dict[str, Any]:
    return ecs_settings(OVERRIDES)


@pytest.fixture(scope="session")
def sqs():
    return boto3.client("sqs", endpoint_url=ENDPOINT, region_name=os.environ.get("AWS_REGION", "us-east-1"),
                        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
                        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"))


@pytest.fixture
def queue(sqs) -> Iterator[Callable[..., str]]:
    """Makes a fresh queue (name unique to the test) and deletes it afterwards."""
    made: list[str] = []

    def make(visibility_timeout: int = 60) -> str:
        url = sqs.create_queue(QueueName=f"containers-{uuid.uuid4().hex[:12]}",
                               Attributes={"VisibilityTimeout": str(visibility_timeout)})["QueueUrl"]
        made.append(url)
        return url

    yield make
    for url in made:
        sqs.delete_queue(QueueUrl=url)


@pytest.fixture
def run(image, settings, request) -> Iterator[Callable[..., Container]]:
    """Starts a role's container from its task definition; removes every one at the end of the test,
    printing its logs when the test failed."""
    started: list[Container] = []

    def start(role: str, queue_url: str, **local: Any) -> Container:
        name = f"test-{role}-{uuid.uuid4().hex[:8]}"
        args = docker_run_args(settings[role], Local(queue_url=queue_url, admin_port=free_port(), **local),
                               name=name, image=image, labels=LABEL)
        container = Container(name)
        started.append(container)  # before the run: a container created but not started is removed too
        docker("run", *args)
        return container

    yield start
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for container in started:
        if failed:
            print(f"--- docker logs {container.name} ---\n{container.logs()}")
        docker("rm", "--force", container.name, check=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
