"""Shared pieces of the LocalStack tests: clients, zips of real binaries, functions, queues, waits.

The tests run against the LocalStack that `scripts/localstack up` starts (scripts/test does), whose
Lambda runs functions through this package's executor; the clients are the real AWS SDK (boto3).
Binaries come from the workspace: `target/debug/fixture` (scripts/test builds it) and the zips
`scripts/build-lambda` leaves in `target/lambda/`.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import subprocess
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

REPO = Path(__file__).resolve().parents[2]
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
REGION = os.environ.get("AWS_REGION", "us-east-1")
ROLE = "arn:aws:iam::000000000000:role/lambda-test"

T = TypeVar("T")


def wait_for(probe: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Calls `probe` until it returns something truthy, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def aws_env(**extra: str) -> dict[str, str]:
    """The environment for a process of ours that talks to this LocalStack (the adapter, a function)."""
    return {**os.environ, "AWS_ENDPOINT_URL": ENDPOINT, "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", **extra}


def extract_bootstrap(function: str, into: Path) -> Path:
    """The executable inside `scripts/build-lambda`'s zip of `function`."""
    with zipfile.ZipFile(io.BytesIO(lambda_zip(function))) as archive:
        archive.extract("bootstrap", into)
    bootstrap = into / "bootstrap"
    bootstrap.chmod(0o755)
    return bootstrap


def client(service: str, endpoint: str = ENDPOINT):
    # No retries: a test must see the first answer; a long read timeout covers slow functions.
    return boto3.client(
        service, endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id="test", aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=120),
    )  # fmt: skip


@pytest.fixture(scope="session")
def lam():
    return client("lambda")


@pytest.fixture(scope="session")
def sqs():
    return client("sqs")


@pytest.fixture(scope="session")
def logs():
    return client("logs")


def zip_executable(path: Path) -> bytes:
    """A Lambda zip with `path` as its executable `bootstrap`."""
    if not path.is_file():
        raise AssertionError(f"{path} is missing: run scripts/test (it builds it first)")
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        archive.writestr(info, path.read_bytes())
    return data.getvalue()


def lambda_zip(function: str) -> bytes:
    """What `scripts/build-lambda` built for `function`."""
    path = REPO / "target" / "lambda" / function / "bootstrap.zip"
    if not path.is_file():
        raise AssertionError(f"{path} is missing: run scripts/build-lambda (scripts/test does)")
    return path.read_bytes()


@pytest.fixture(scope="session")
def fixture_zip() -> bytes:
    return zip_executable(REPO / "target" / "debug" / "fixture")


@pytest.fixture
def create_function(lam):
    """Creates functions that are deleted after the test; returns their names."""
    created = []

    def create(zip_bytes: bytes, name: str | None = None, *, runtime="provided.al2023",
               timeout=10, memory=128, env: dict | None = None, wait=True, **extra) -> str:
        name = name or unique("fn")
        lam.create_function(
            FunctionName=name, Runtime=runtime, Handler="bootstrap", Role=ROLE,
            Code={"ZipFile": zip_bytes}, Timeout=timeout, MemorySize=memory,
            Environment={"Variables": env or {}}, **extra)
        created.append(name)
        if wait:
            lam.get_waiter("function_active_v2").wait(
                FunctionName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300})
        return name

    yield create
    for name in created:
        try:
            lam.delete_function(FunctionName=name)
        except ClientError:
            # Gone already; or Failed, which LocalStack 2026.3 cannot delete ("Unable to find
            # version manager"): harmless for a test's uniquely named function.
            pass


def invoke(lam, name: str, event, **extra) -> tuple[dict, dict]:
    """Invokes `name` synchronously; returns the decoded payload and the whole response."""
    response = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode(), **extra)
    return json.loads(response["Payload"].read() or b"null"), response


@pytest.fixture
def make_queue(sqs):
    """Creates a queue and its DLQ (redrive after `max_receive`), deleted after the test."""
    created = []

    def make(*, visibility: int, max_receive: int) -> tuple[str, str]:
        name = unique("q")
        dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = sqs.create_queue(QueueName=name, Attributes={
            "VisibilityTimeout": str(visibility),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)}),
        })["QueueUrl"]
        created.extend([url, dlq])
        return url, dlq

    yield make
    for url in created:
        try:
            sqs.delete_queue(QueueUrl=url)
        except Exception:  # noqa: BLE001 - best-effort cleanup of a test queue
            pass


def queue_arn(sqs, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def log_messages(logs, group: str) -> list[str]:
    """Every message in a CloudWatch Logs group so far (none while it does not exist)."""
    try:
        pages = logs.get_paginator("filter_log_events").paginate(logGroupName=group)
        return [event["message"] for page in pages for event in page["events"]]
    except logs.exceptions.ResourceNotFoundException:
        return []


@pytest.fixture(scope="session")
def deploy_settings() -> dict:
    """The Lambda settings of the deploy's `runtime: lambda` mode, rendered under Pulumi's mocks,
    so that what these tests create cannot drift from what `pulumi up` creates."""
    venv = subprocess.run([str(REPO / "scripts" / "deploy-venv")], check=True,
                          capture_output=True, text=True).stdout.strip()
    rendered = subprocess.run([f"{venv}/bin/python", str(REPO / "deploy" / "render.py"), "lambda"],
                              check=True, capture_output=True, text=True)
    return json.loads(rendered.stdout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(admin_port: int) -> bool:
    """Whether an adapter's admin listener says ready."""
    try:
        connection = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=1)
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except OSError:
        return False


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM, and SIGKILL if it has not exited 30 s later: a test leaves no process behind."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
