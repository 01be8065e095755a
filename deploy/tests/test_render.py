"""render.py as a command: the Lambda settings other tools (the LocalStack tests) read from the deploy."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from modules import TaskServiceArgs
from render import UsageError, lambda_args

RENDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "render.py")
DEFAULTS = TaskServiceArgs(runtime="lambda")


def render(*overrides: str, cwd: str, mode: str = "lambda") -> subprocess.CompletedProcess[str]:
    """Runs the command as a caller would: its own process, from a folder that is not deploy/."""
    return subprocess.run([sys.executable, RENDER, mode, *overrides], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> dict:
    done = render(cwd=str(tmp_path_factory.mktemp("cwd")))
    assert (done.returncode, done.stderr) == (0, "")
    return json.loads(done.stdout)  # the whole of stdout: no log lines around the JSON


def test_prints_the_functions_mapping_url_and_queue(settings):
    assert list(settings) == ["functions", "event_source_mapping", "function_url", "queue"]
    assert set(settings["functions"]) == {"enqueue", "sleep"}


@pytest.mark.parametrize(("fn", "timeout", "memory", "role"), [
    ("enqueue", DEFAULTS.api_timeout, DEFAULTS.api_memory, "api"),
    ("sleep", DEFAULTS.worker_timeout, DEFAULTS.worker_memory, "worker"),
])
def test_functions_have_the_deploys_settings(settings, fn, timeout, memory, role):
    f = settings["functions"][fn]
    assert (f["runtime"], f["handler"], f["architectures"]) == ("provided.al2023", "bootstrap", ["x86_64"])
    assert (f["timeout"], f["memory_size"]) == (timeout, memory)
    assert type(f["timeout"]) is type(f["memory_size"]) is int  # not the engine's floats
    assert f["environment"] == {"QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/tasks",
                                "RUST_LOG": DEFAULTS.log_level}
    assert (f["log_format"], f["log_group"]) == ("Text", f"/task-service/{role}")


def test_sleep_timeout_mapping_and_queue_follow_the_defaults(settings):
    assert settings["functions"]["sleep"]["timeout"] == 310
    assert settings["event_source_mapping"] == {
        "batch_size": 10, "maximum_batching_window_in_seconds": 0,
        "function_response_types": ["ReportBatchItemFailures"],
        "maximum_concurrency": DEFAULTS.worker_max_concurrency, "filter_patterns": []}
    assert settings["function_url"] == {"authorization_type": "NONE"}
    assert settings["queue"] == {"visibility_timeout_seconds": DEFAULTS.effective_visibility_timeout,
                                 "max_receive_count": 3}


def test_overrides_show_up(tmp_path):
    done = render("batch_size=100", "batching_window=5", "worker_max_concurrency=20", "log_level=debug",
                  "function_url_auth=AWS_IAM", cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    s = json.loads(done.stdout)
    assert s["event_source_mapping"] == {
        "batch_size": 100, "maximum_batching_window_in_seconds": 5,
        "function_response_types": ["ReportBatchItemFailures"], "maximum_concurrency": 20,
        "filter_patterns": []}
    assert s["functions"]["sleep"]["environment"]["RUST_LOG"] == "debug"
    assert s["function_url"] == {"authorization_type": "AWS_IAM"}
    assert s["queue"]["visibility_timeout_seconds"] == 6 * 310 + 5


@pytest.mark.parametrize("override", ["batchsize=3", "batch_size=0"])
def test_a_bad_override_exits_2_with_one_line_naming_the_key(tmp_path, override):
    done = render(override, cwd=str(tmp_path))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.count("\n") == 1 and override.split("=")[0] + ":" in done.stderr


@pytest.mark.parametrize(("override", "message"), [
    ("batchsize=3", "batchsize: unknown key"),
    ("batch_size=0", "batch_size: 0 is out of range"),
    ("batch_size=ten", "batch_size: 'ten' is not an integer"),
    # The deploy's own rule: more than 10 messages a batch needs a batching window.
    ("batch_size=100", "batch_size: 100 needs batchingWindow"),
    ("runtime=ecs", "runtime: set by the mode"),
    ("batch_size", "batch_size: not KEY=VALUE"),
])
def test_overrides_are_checked_like_stack_config(override, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        lambda_args([override])


def test_values_are_json_when_they_parse_else_strings():
    args = lambda_args(["subnet_ids=[\"subnet-1\"]", "vpc_id=vpc-1", "tags={\"team\": \"tasks\"}",
                        "queue_name=1e3", "worker_min_count=null"])
    assert (args.subnet_ids, args.vpc_id, dict(args.tags)) == (("subnet-1",), "vpc-1", {"team": "tasks"})
    assert (args.queue_name, args.worker_min_count, args.runtime) == ("1e3", None, "lambda")


def test_ecs_prints_each_roles_size_and_container_as_ecs_gets_them(tmp_path):
    done = render("shutdown_grace=3", "worker_cpu=512", cwd=str(tmp_path), mode="ecs")
    assert (done.returncode, done.stderr) == (0, "")
    s = json.loads(done.stdout)
    assert set(s) == {"api", "worker"}
    assert (s["worker"]["cpu"], s["worker"]["memory"]) == (512, DEFAULTS.worker_memory)
    api, worker = s["api"]["container"], s["worker"]["container"]
    assert (api["command"], worker["command"]) == (["http", "--", "/app/enqueue"], ["sqs", "--", "/app/sleep"])
    assert worker["stopTimeout"] == 3 + 5 and worker["user"] == "10001:10001"
    assert {"name": "ADAPTER_SHUTDOWN_GRACE", "value": "3"} in worker["environment"]
    assert api["portMappings"][0]["containerPort"] == 8080 and "portMappings" not in worker


def test_ecs_refuses_to_change_the_runtime(tmp_path):
    done = render("runtime=lambda", cwd=str(tmp_path), mode="ecs")
    assert (done.returncode, done.stdout) == (2, "")
    assert "runtime: set by the mode (ecs)" in done.stderr
