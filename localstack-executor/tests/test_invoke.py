"""LocalStack's own Lambda service runs a real `lambda_runtime` function through the executor.

The function is `test-functions`' `fixture`, whose event chooses what it does (reply, error,
panic, exit, hang) and whose reply describes the process that ran it (pid, request id, deadline,
`AWS_LAMBDA_*` environment).
"""

from __future__ import annotations

import base64
import threading

import pytest

from conftest import invoke, log_messages, wait_for


def test_invoke_returns_the_reply_with_lambdas_context(lam, fixture_zip, create_function):
    name = create_function(fixture_zip, timeout=7, memory=256)
    reply, response = invoke(lam, name, {"action": "ok"})
    assert response["StatusCode"] == 200 and "FunctionError" not in response
    assert reply["event"] == {"action": "ok"}
    # One request id for LocalStack, the function and the logs.
    assert reply["request_id"] == response["ResponseMetadata"]["RequestId"]
    assert reply["function_arn"].endswith(f":function:{name}")
    assert reply["trace_id"].startswith("Root=1-")
    assert 0 < reply["deadline_ms"] - reply["started_ms"] <= 7_000
    env = reply["env"]
    assert (env["AWS_LAMBDA_FUNCTION_NAME"], env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]) == (name, "256")
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{name}"


@pytest.mark.parametrize("action, error_type, message", [
    ("error", None, "fixture error on purpose"),
    ("panic", None, "Lambda panicked: fixture panic on purpose"),
    ("exit", "Runtime.ExitError", "Runtime exited with error: exit status 3"),
    ("hang", "Sandbox.Timedout", "Task timed out after 2.00 seconds"),
])
def test_failures_are_lambdas_function_errors_and_the_next_invoke_works(
        lam, fixture_zip, create_function, action, error_type, message):
    name = create_function(fixture_zip, timeout=2)
    first, _ = invoke(lam, name, {"action": "ok"})
    reply, response = invoke(lam, name, {"action": action}, LogType="Tail")
    assert response["FunctionError"] == "Unhandled"
    assert reply["errorMessage"] == message
    if error_type:
        assert reply["errorType"] == error_type
    tail = base64.b64decode(response["LogResult"]).decode()
    assert f"END RequestId: {response['ResponseMetadata']['RequestId']}" in tail
    if action in ("exit", "hang"):
        assert message in tail  # Lambda's own line about the invocation it lost
    after, response = invoke(lam, name, {"action": "ok"})
    assert "FunctionError" not in response and after["event"] == {"action": "ok"}
    if action in ("exit", "hang", "panic"):
        # A lost or panicked process is replaced (a panic inside the handler is caught, but
        # lambda_runtime reports it as an error and keeps running: same process).
        assert (after["pid"] != first["pid"]) == (action != "panic")


def test_logs_reach_tail_and_cloudwatch_logs(lam, logs, fixture_zip, create_function):
    name = create_function(fixture_zip)
    _, response = invoke(lam, name, {"action": "panic"}, LogType="Tail")
    request_id = response["ResponseMetadata"]["RequestId"]
    tail = base64.b64decode(response["LogResult"]).decode().splitlines()
    start = tail.index(f"START RequestId: {request_id} Version: $LATEST")
    # The function's own stderr, between START and END, in order.
    panic = next(i for i, line in enumerate(tail) if "fixture panic on purpose" in line)
    end = tail.index(f"END RequestId: {request_id}")
    assert start < panic < end
    assert tail[end + 1].startswith(f"REPORT RequestId: {request_id}\tDuration: ")
    wait_for(lambda: any(m.startswith(f"REPORT RequestId: {request_id}")
                         for m in log_messages(logs, f"/aws/lambda/{name}")),
             30, "the REPORT line in CloudWatch Logs")


def test_concurrent_invokes_run_in_environments_of_their_own(lam, fixture_zip, create_function):
    name = create_function(fixture_zip)
    replies = []

    def call():
        replies.append(invoke(lam, name, {"action": "ok", "sleep_ms": 500})[0])

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(replies) == 3
    assert len({reply["pid"] for reply in replies}) == 3


@pytest.mark.parametrize("env, error_type, words", [
    ({"FIXTURE_INIT": "fail"}, "Runtime.InitError", ["fixture init failed on purpose"]),
    ({"FIXTURE_INIT": "exit"}, "Runtime.ExitError", ["exit status 3"]),
    ({"FIXTURE_INIT_WAIT_FILE": "/nonexistent/never"}, "Runtime.InitError", ["/next"]),
])
def test_init_failures_are_errors_that_name_the_cause(lam, fixture_zip, create_function, env, error_type, words):
    name = create_function(fixture_zip, env=env)
    reply, response = invoke(lam, name, {})
    assert response["FunctionError"] == "Unhandled"
    assert reply["errorType"] == error_type
    for word in words:
        assert word in reply["errorMessage"]


def test_a_zip_without_bootstrap_is_an_invalid_entrypoint(lam, create_function, tmp_path):
    import io
    import zipfile

    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("handler.sh", "#!/bin/sh\n")
    name = create_function(data.getvalue())
    reply, response = invoke(lam, name, {})
    assert response["FunctionError"] == "Unhandled"
    assert reply["errorType"] == "Runtime.InvalidEntrypoint"
    assert "bootstrap" in reply["errorMessage"]


def test_a_runtime_it_cannot_run_fails_creation_with_the_runtimes_it_runs(lam, fixture_zip, create_function):
    name = create_function(fixture_zip, runtime="python3.12", wait=False)
    config = wait_for(lambda: (c := lam.get_function_configuration(FunctionName=name))["State"] != "Pending" and c,
                      30, "the function to leave Pending")
    assert config["State"] == "Failed"
    assert "'python3.12'" in config["StateReason"] and "provided.al2023" in config["StateReason"]
    with pytest.raises(lam.exceptions.ResourceConflictException):
        invoke(lam, name, {})


def test_deleting_the_function_stops_its_processes(lam, fixture_zip, create_function):
    name = create_function(fixture_zip)
    reply, _ = invoke(lam, name, {"action": "ok"})
    function_pid = reply["pid"]
    adapter_pid = parent_of(function_pid)
    lam.delete_function(FunctionName=name)
    wait_for(lambda: not alive(function_pid) and not alive(adapter_pid), 30,
             "the function and its adapter to exit")


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        # The command name may hold spaces: the fields after its closing parenthesis are fixed.
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False

