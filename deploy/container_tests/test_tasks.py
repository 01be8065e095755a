"""The API and worker containers, run from the ECS task definitions as ECS runs them, against
LocalStack's SQS: health, tasks end to end, and what `docker stop` and `docker kill` of a worker
in the middle of a task do to that task."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone

from conftest import ENDPOINT, LABEL, Container, docker, free_port, wait_until


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def send_task(sqs, queue_url: str, seconds: float) -> str:
    """A task message as `enqueue` writes it; returns its task id."""
    task_id = str(uuid.uuid4())
    body = {"version": 1, "task_id": task_id, "kind": "sleep", "duration_seconds": seconds,
            "enqueued_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")}
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))
    return task_id


def counts(sqs, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages."""
    a = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def test_api_turns_healthy_takes_a_task_and_refuses_bad_bodies(run, queue, sqs):
    queue_url = queue()
    port = free_port()
    api = run("api", queue_url, port=port)
    # Docker's own verdict, from the task definition's health check (`adapter healthcheck`).
    wait_until("the API container to be healthy", lambda: api.healthy_or_fail(), timeout=120, every=1)
    status, body = post(f"http://127.0.0.1:{port}/tasks", b'{"duration_seconds": 1}')
    assert status == 202 and body["status"] == "queued", body
    assert post(f"http://127.0.0.1:{port}/tasks", b'{"duration_seconds": "soon"}')[0] == 422
    assert post(f"http://127.0.0.1:{port}/tasks", b'{"duration_seconds": ')[0] == 400
    # Only the good one reached the queue.
    wait_until("one message on the queue", lambda: counts(sqs, queue_url) == (1, 0), timeout=10)


def test_the_worker_finishes_what_the_api_enqueued(run, queue):
    queue_url = queue()
    port = free_port()
    api = run("api", queue_url, port=port)
    worker = run("worker", queue_url)
    status, body = wait_until("the API to take a task", lambda: _try_post(f"http://127.0.0.1:{port}/tasks"),
                              timeout=60)
    assert status == 202
    finished = wait_until("`task finished` in the worker's log",
                          lambda: worker.lines_with("task finished", task_id=body["task_id"]), timeout=60)
    assert finished[0]["receive_count"] == 1
    assert api.state()["Running"] and worker.state()["Running"]


def _try_post(url: str):
    try:
        return post(url, b'{"duration_seconds": 1}')
    except (urllib.error.URLError, ConnectionError):
        return None  # not listening yet


def test_docker_stop_mid_task_exits_0_and_hands_the_task_to_another_worker(run, queue, sqs, settings):
    # Visibility far above the test's waits: the message can only come back by being released.
    queue_url = queue(visibility_timeout=300)
    task_id = send_task(sqs, queue_url, seconds=8)
    first = run("worker", queue_url)
    wait_until("the first worker to start the task",
               lambda: first.lines_with("task started", task_id=task_id), timeout=60)
    stop_timeout = settings["worker"]["container"]["stopTimeout"]
    # Plain `docker stop`: the grace before SIGKILL is the container's own, from the definition.
    config = json.loads(docker("inspect", "--format", "{{json .Config}}", first.name).stdout)
    assert config["StopTimeout"] == stop_timeout
    docker("stop", first.name, timeout=stop_timeout + 30)
    state = first.state()
    # 0, not 137: the adapter drained and exited on SIGTERM before Docker's SIGKILL.
    assert (state["ExitCode"], state["OOMKilled"]) == (0, False), state
    assert not first.lines_with("task finished", task_id=task_id)
    wait_until("the task released to the queue", lambda: counts(sqs, queue_url) == (1, 0), timeout=30)
    second = run("worker", queue_url)
    finished = wait_until("the second worker to finish the task",
                          lambda: second.lines_with("task finished", task_id=task_id), timeout=60)
    assert finished[0]["receive_count"] == 2
    wait_until("the queue to be empty", lambda: counts(sqs, queue_url) == (0, 0), timeout=30)


def test_docker_kill_mid_task_redelivers_after_the_visibility_timeout(run, queue, sqs):
    # A short visibility timeout: the killed worker's extensions stop, and the message comes back.
    queue_url = queue(visibility_timeout=4)
    task_id = send_task(sqs, queue_url, seconds=6)
    first = run("worker", queue_url)
    wait_until("the first worker to start the task",
               lambda: first.lines_with("task started", task_id=task_id), timeout=60)
    docker("kill", first.name)
    assert first.state()["ExitCode"] == 137  # SIGKILL: nothing could be released
    second = run("worker", queue_url)
    finished = wait_until("the second worker to finish the redelivered task",
                          lambda: second.lines_with("task finished", task_id=task_id), timeout=90)
    assert finished[0]["receive_count"] >= 2
    wait_until("the queue to be empty", lambda: counts(sqs, queue_url) == (0, 0), timeout=30)


def test_service_role_shortcuts_serve_and_finish_as_the_readme_says(image, queue):
    """`docker run -e SERVICE_ROLE=api|worker --network host -e QUEUE_URL=...` (README), no task
    definition involved: the entry point alone chooses the command line."""
    queue_url = queue()
    port, names = free_port(), []
    common = ["--detach", "--network", "host", "-e", f"QUEUE_URL={queue_url}", "-e", f"AWS_ENDPOINT_URL={ENDPOINT}",
              "-e", "AWS_REGION=us-east-1", "-e", "AWS_ACCESS_KEY_ID=test", "-e", "AWS_SECRET_ACCESS_KEY=test"]
    try:
        for role, extra in (("api", ["-e", f"ADAPTER_LISTEN=127.0.0.1:{port}"]), ("worker", [])):
            name = f"test-{role}-{uuid.uuid4().hex[:8]}"
            names.append(name)
            labels = [f"--label={k}={v}" for k, v in LABEL.items()]
            docker("run", "--name", name, *labels, *common, "-e", f"SERVICE_ROLE={role}", *extra,
                   "-e", f"ADAPTER_ADMIN_LISTEN=127.0.0.1:{free_port()}", image)
        status, body = wait_until("the API to take a task", lambda: _try_post(f"http://127.0.0.1:{port}/tasks"),
                                  timeout=60)
        assert status == 202
        worker = Container(names[1])
        wait_until("`task finished` in the worker's log",
                   lambda: worker.lines_with("task finished", task_id=body["task_id"]), timeout=60)
        # The image's HEALTHCHECK asks each container's own admin port (ADAPTER_ADMIN_LISTEN), not
        # the default 9090 that another container on the host network may hold.
        for container in (Container(names[0]), worker):
            wait_until(f"{container.name} to be healthy", lambda c=container: c.healthy_or_fail(),
                       timeout=120, every=1)
    finally:
        for name in names:
            docker("rm", "--force", name, check=False)

