"""Our SQS event source (`adapter sqs`) against LocalStack's event source mapping, on one scenario.

The same `sleep` binary, the same kind of queue and the same mixed batch: good tasks, a body that
is not JSON, and a task longer than the function timeout (which `sleep` fails at once). Each side
gets a queue of its own; both are compared on what was finished, what reached the DLQ, how often
each message was received, and what was left. At-least-once allows a task to run twice, so a good
task must finish at least once on each side; the rest must match exactly.

The outcome of both sides is written to `target/differential-sqs.json`, for the record.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections import Counter
from dataclasses import asdict, dataclass

from conftest import (
    REPO, aws_env, extract_bootstrap, free_port, lambda_zip, log_messages, queue_arn, ready, stop_process, wait_for,
)
from test_task_service import depth, receive_all

VISIBILITY = 3  # seconds: failed messages come back soon
MAX_RECEIVE = 2
TIMEOUT = 3  # the function timeout: no longer than the visibility timeout, as Lambda requires
BATCH_SIZE = 10


@dataclass
class Outcome:
    finished: dict[str, int]  # task id -> `task finished` lines
    started: dict[str, int]  # task id -> `task started` lines
    dead: dict[str, int]  # DLQ message body -> its ApproximateReceiveCount as the DLQ holds it
    left: int  # messages still in the source queue
    invocations: int  # REPORT lines: how many batches the function was invoked with


def scenario() -> tuple[list[str], list[str]]:
    """Bodies to send, and the task ids among them that can finish."""
    good = [str(uuid.uuid4()) for _ in range(3)]

    def task(task_id: str, seconds: float) -> str:
        return json.dumps({"version": 1, "task_id": task_id, "kind": "sleep", "duration_seconds": seconds,
                           "enqueued_at": "2026-12-01T00:00:00Z"})

    bodies = [task(t, 1) for t in good] + ["not json at all", task(str(uuid.uuid4()), 10)]
    return bodies, good


def count(lines: list[str], what: str) -> Counter:
    found: Counter = Counter()
    for line in lines:
        if what in line and (match := re.search(r'"task_id":"([0-9a-f-]{36})"', line)):
            found[match.group(1)] += 1
    return found


def settle(sqs, url: str, dlq: str, lines, good: list[str]) -> Outcome:
    """Waits until every good task finished and the two bad messages are dead, then reads it all."""
    wait_for(lambda: all(count(lines(), "task finished")[t] for t in good), 60, "every good task to finish",
             interval=0.5)
    dead = receive_all(sqs, dlq, 2, timeout=90)
    wait_for(lambda: depth(sqs, url) == 0, 30, "the source queue to be empty", interval=0.5)
    return Outcome(
        finished=dict(count(lines(), "task finished")),
        started=dict(count(lines(), "task started")),
        dead={m["Body"][:40]: int(m["Attributes"]["ApproximateReceiveCount"]) for m in dead},
        left=depth(sqs, url),
        invocations=sum(line.startswith("REPORT RequestId:") for line in lines()),
    )


def send(sqs, url: str, bodies: list[str]) -> None:
    entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)]
    assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")


def run_localstack(lam, sqs, logs, make_queue, create_function, bodies, good) -> Outcome:
    url, dlq = make_queue(visibility=VISIBILITY, max_receive=MAX_RECEIVE)
    name = create_function(lambda_zip("sleep"), timeout=TIMEOUT, env={"QUEUE_URL": url, "RUST_LOG": "info"})
    mapping = lam.create_event_source_mapping(
        FunctionName=name, EventSourceArn=queue_arn(sqs, url), BatchSize=BATCH_SIZE,
        MaximumBatchingWindowInSeconds=0, FunctionResponseTypes=["ReportBatchItemFailures"])["UUID"]
    try:
        send(sqs, url, bodies)
        return settle(sqs, url, dlq, lambda: log_messages(logs, f"/aws/lambda/{name}"), good)
    finally:
        lam.delete_event_source_mapping(UUID=mapping)


def run_adapter(sqs, make_queue, tmp_path, bodies, good) -> Outcome:
    url, dlq = make_queue(visibility=VISIBILITY, max_receive=MAX_RECEIVE)
    bootstrap = extract_bootstrap("sleep", tmp_path)
    admin = free_port()
    output = tmp_path / "adapter.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [str(REPO / "target" / "debug" / "adapter"), "sqs", "--queue-url", url,
             "--batch-size", str(BATCH_SIZE), "--batching-window", "0", "--timeout", str(TIMEOUT),
             "--admin-listen", f"127.0.0.1:{admin}", "--shutdown-grace", "1", "--platform-logs",
             "--", str(bootstrap)],
            env=aws_env(QUEUE_URL=url, RUST_LOG="info", ADAPTER_LOG="warn"),
            stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: ready(admin), 30, "adapter sqs to be ready")
            send(sqs, url, bodies)
            return settle(sqs, url, dlq, lambda: output.read_text().splitlines(), good)
        finally:
            stop_process(process)


def test_adapter_sqs_and_localstacks_mapping_agree(lam, sqs, logs, make_queue, create_function, tmp_path):
    bodies, good = scenario()
    ours = run_adapter(sqs, make_queue, tmp_path, bodies, good)
    theirs = run_localstack(lam, sqs, logs, make_queue, create_function, bodies, good)
    record = REPO / "target" / "differential-sqs.json"
    record.write_text(json.dumps({"adapter": asdict(ours), "localstack": asdict(theirs)}, indent=2))

    for side in (ours, theirs):
        assert set(side.finished) == set(good) and min(side.finished.values()) >= 1
        assert set(side.dead) == {bodies[3][:40], bodies[4][:40]}
        assert side.left == 0
    # What each message went through, side by side: the same receives before the DLQ.
    assert ours.dead == theirs.dead
    # Every message is received MAX_RECEIVE times before it dies, whatever the batching: at least
    # that many invocations, at most one per message receive.
    for side in (ours, theirs):
        assert MAX_RECEIVE <= side.invocations <= len(good) + 2 * MAX_RECEIVE
