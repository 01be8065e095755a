"""The task service's own functions (`scripts/build-lambda`'s zips) under LocalStack's Lambda, set
up as the deploy's `runtime: lambda` mode sets them up (settings from `deploy/render.py`).

One setting is not the deploy's where a test needs a failed message back soon: the queue's
visibility timeout (the deploy's is six times the worker's 310 s timeout, as AWS advises), and
with it the worker's timeout, which Lambda wants no longer than the visibility timeout.
"""

from __future__ import annotations

import copy
import http.client
import json
import subprocess
import uuid
from urllib.parse import urlsplit

import pytest

from conftest import (
    ENDPOINT, REGION, REPO, aws_env, extract_bootstrap, free_port, invoke, lambda_zip, log_messages, queue_arn, ready, stop_process, wait_for,
)

EVENTS = REPO / "functions"


def function_settings(deploy_settings: dict, function: str, queue_url: str) -> dict:
    """create_function's arguments for `function`, as the deploy sets them."""
    f = deploy_settings["functions"][function]
    return {
        "runtime": f["runtime"], "timeout": f["timeout"], "memory": f["memory_size"],
        "env": {**f["environment"], "QUEUE_URL": queue_url},
        "Architectures": f["architectures"],
    }


def receive_all(sqs, url: str, expected: int, timeout: float = 30) -> list[dict]:
    seen: dict[str, dict] = {}

    def probe():
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                           AttributeNames=["All"]).get("Messages", []):
            seen[message["MessageId"]] = message
        return len(seen) >= expected

    wait_for(probe, timeout, f"{expected} messages on {url}", interval=0)
    return list(seen.values())


def depth(sqs, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


@pytest.fixture
def enqueue(deploy_settings, make_queue, create_function):
    url, _ = make_queue(visibility=30, max_receive=deploy_settings["queue"]["max_receive_count"])
    name = create_function(lambda_zip("enqueue"), **function_settings(deploy_settings, "enqueue", url))
    return name, url


def test_enqueue_answers_an_http_api_event_and_queues_the_task(lam, sqs, enqueue):
    name, url = enqueue
    event = json.loads((EVENTS / "enqueue" / "events" / "post-task.http-api.json").read_text())
    reply, response = invoke(lam, name, event)
    assert "FunctionError" not in response
    assert reply["statusCode"] == 202
    body = json.loads(reply["body"])
    assert body["status"] == "queued" and body["duration_seconds"] == 2
    (message,) = receive_all(sqs, url, 1)
    assert json.loads(message["Body"])["task_id"] == body["task_id"]
    assert message["MessageId"] == body["message_id"]


class Http:
    """Requests to one base URL; `host` overrides the Host header (LocalStack routes function
    URLs by host name, which needs no DNS when the request goes to LocalStack's own address)."""

    def __init__(self, base: str, host: str | None = None) -> None:
        parts = urlsplit(base)
        self.address, self.host = (parts.hostname, parts.port), host

    def request(self, method: str, path: str, body: bytes = b"", content_type: str | None = "application/json"):
        connection = http.client.HTTPConnection(*self.address, timeout=30)
        headers = {"Content-Type": content_type} if content_type else {}
        if self.host:
            headers["Host"] = self.host
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        result = (response.status, response.getheader("Content-Type"), response.getheader("Allow"),
                  response.read())
        connection.close()
        return result


def url_host(function_url: str) -> str:
    """The Host a request to `function_url` is sent with: LocalStack names the URL after
    LOCALSTACK_HOST (`<id>.lambda-url.<region>.127.0.0.1:4566`), a host name that URL parsers,
    lambda_http's among them, read as a broken IPv4 address; `localhost` routes the same way."""
    parts = urlsplit(function_url)
    url_id = parts.hostname.split(".")[0]
    return f"{url_id}.lambda-url.{REGION}.localhost:{parts.port}"


BAD_REQUESTS = [
    ("POST", "/tasks", b'{"duration_seconds": 0.5}', "application/json"),
    ("POST", "/tasks", b'{"duration_seconds": 2, "priority": 1}', "application/json"),
    ("POST", "/tasks", b'{"duration_seconds": "2"}', "application/json"),
    ("POST", "/tasks", b"{not json", "application/json"),
    ("POST", "/tasks", b'{"duration_seconds": 2}', "text/plain"),
    ("POST", "/tasks", b'{"duration_seconds": 2, "pad": "' + b"x" * 70_000 + b'"}', "application/json"),
    ("DELETE", "/tasks", b"", None),
    ("GET", "/nowhere", b"", None),
]


@pytest.fixture
def adapter_http(enqueue, tmp_path):
    """The same `enqueue` binary under `adapter http`, for answers to compare with."""
    _, url = enqueue
    bootstrap = extract_bootstrap("enqueue", tmp_path)
    listen, admin = free_port(), free_port()
    env = aws_env(QUEUE_URL=url, ADAPTER_LOG="warn", RUST_LOG="warn")
    process = subprocess.Popen(
        [str(REPO / "target" / "debug" / "adapter"), "http", "--listen", f"127.0.0.1:{listen}",
         "--admin-listen", f"127.0.0.1:{admin}", "--", str(bootstrap)],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: ready(admin), 30, "adapter http to be ready")
        yield Http(f"http://127.0.0.1:{listen}")
    finally:
        stop_process(process)


def test_function_url_accepts_a_task_and_rejects_bad_bodies_as_the_adapter_does(
        lam, sqs, deploy_settings, enqueue, adapter_http):
    name, url = enqueue
    auth = deploy_settings["function_url"]["authorization_type"]
    function_url = lam.create_function_url_config(FunctionName=name, AuthType=auth)["FunctionUrl"]
    through_url = Http(ENDPOINT, host=url_host(function_url))

    status, content_type, _, body = through_url.request("POST", "/tasks", b'{"duration_seconds": 1.5}')
    assert (status, content_type) == (202, "application/json")
    accepted = json.loads(body)
    (message,) = receive_all(sqs, url, 1)
    assert json.loads(message["Body"])["task_id"] == accepted["task_id"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    for method, path, payload, content_type in BAD_REQUESTS:
        via_lambda = through_url.request(method, path, payload, content_type)
        via_adapter = adapter_http.request(method, path, payload, content_type)
        what = f"{method} {path} {payload[:40]!r} ({content_type})"
        assert 400 <= via_lambda[0] < 500, what
        status, content_type_back, allow, body = via_lambda
        assert (status, content_type_back, allow) == via_adapter[:3], what
        assert json.loads(body) == json.loads(via_adapter[3]), what
    # A rejected request enqueues nothing, under either host.
    assert depth(sqs, url) == 0


def test_sleep_runs_tasks_from_localstacks_event_source_mapping(
        lam, sqs, logs, deploy_settings, make_queue, create_function):
    max_receive = deploy_settings["queue"]["max_receive_count"]
    url, dlq = make_queue(visibility=4, max_receive=max_receive)
    settings = function_settings(deploy_settings, "sleep", url)
    settings["timeout"] = 4  # no longer than the queue's visibility timeout (see the module's doc)
    name = create_function(lambda_zip("sleep"), **settings)
    esm = deploy_settings["event_source_mapping"]
    mapping = lam.create_event_source_mapping(
        FunctionName=name, EventSourceArn=queue_arn(sqs, url), BatchSize=esm["batch_size"],
        MaximumBatchingWindowInSeconds=esm["maximum_batching_window_in_seconds"],
        FunctionResponseTypes=esm["function_response_types"],
        ScalingConfig={"MaximumConcurrency": esm["maximum_concurrency"]})["UUID"]
    try:
        task_ids = [str(uuid.uuid4()) for _ in range(3)]
        for task_id in task_ids:
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps({
                "version": 1, "task_id": task_id, "kind": "sleep", "duration_seconds": 1,
                "enqueued_at": "2026-12-01T00:00:00Z"}))
        poison = sqs.send_message(QueueUrl=url, MessageBody="this is not a task")["MessageId"]

        def finished():
            messages = log_messages(logs, f"/aws/lambda/{name}")
            return all(any("task finished" in m and task_id in m for m in messages) for task_id in task_ids)

        wait_for(finished, 60, "'task finished' for every task in CloudWatch Logs", interval=0.5)
        (dead,) = receive_all(sqs, dlq, 1, timeout=90)
        assert dead["MessageId"] == poison
        assert dead["Body"] == "this is not a task"
        wait_for(lambda: depth(sqs, url) == 0, 30, "the queue to be empty")
        messages = log_messages(logs, f"/aws/lambda/{name}")
        assert any(poison in m for m in messages), "the worker logs the message it could not use"
    finally:
        lam.delete_event_source_mapping(UUID=mapping)


def test_sleep_reports_exactly_the_bad_record_of_a_batch(lam, deploy_settings, make_queue, create_function):
    url, _ = make_queue(visibility=30, max_receive=3)
    name = create_function(lambda_zip("sleep"), **function_settings(deploy_settings, "sleep", url))
    # The example batch: a good task and one of 0.5 s (below the 1 s minimum); a second good one
    # joins them, so the bad record sits between two good ones.
    event = json.loads((EVENTS / "sleep" / "events" / "batch.json").read_text())
    good, bad = event["Records"]
    another = copy.deepcopy(good)
    another["messageId"] = str(uuid.uuid4())
    another["body"] = json.dumps({"version": 1, "task_id": str(uuid.uuid4()), "kind": "sleep",
                                  "duration_seconds": 1, "enqueued_at": "2026-12-01T00:00:00Z"})
    event["Records"].append(another)
    reply, response = invoke(lam, name, event)
    assert "FunctionError" not in response
    assert reply == {"batchItemFailures": [{"itemIdentifier": bad["messageId"]}]}

