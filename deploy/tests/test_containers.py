"""deploy/containers.py without Docker: how a task definition becomes `docker run` flags."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from containers import Local, compose, docker_run_args, ecs_settings, environment, health_flags

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONTAINERS = os.path.join(REPO, "deploy", "containers.py")
QUEUE = "http://127.0.0.1:4566/queue/us-east-1/000000000000/tasks"


@pytest.fixture(scope="module")
def settings():
    return ecs_settings(["shutdown_grace=4"])


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def envs(args: list[str]) -> dict[str, str]:
    pairs = [args[i + 1] for i, a in enumerate(args) if a == "--env"]
    return dict(p.split("=", 1) for p in pairs)


def test_worker_runs_as_its_definition_says(settings):
    args = docker_run_args(settings["worker"], Local(queue_url=QUEUE, admin_port=19091), name="w")
    c = settings["worker"]["container"]
    assert (flag(args, "--user"), flag(args, "--stop-timeout")) == ("10001:10001", "9")
    assert (flag(args, "--cpus"), flag(args, "--memory")) == ("0.25", "512m")
    assert flag(args, "--health-cmd") == "/app/adapter healthcheck"
    assert (flag(args, "--health-interval"), flag(args, "--health-start-period")) == ("15s", "30s")
    assert flag(args, "--entrypoint") == "/app/adapter"
    assert args[-4:] == [c["image"], "sqs", "--", "/app/sleep"]
    assert args[0] == "--detach" and "--rm" not in args


def test_environment_keeps_the_definitions_and_supplies_what_ecs_would(settings):
    env = environment(settings["worker"]["container"], Local(queue_url=QUEUE, admin_port=19091))
    assert env["ADAPTER_SHUTDOWN_GRACE"] == "4" and env["ADAPTER_BATCH_SIZE"] == "10"
    assert env["QUEUE_URL"] == env["ADAPTER_QUEUE_URL"] == QUEUE
    assert env["ADAPTER_ADMIN_LISTEN"] == "127.0.0.1:19091"
    assert "ADAPTER_LISTEN" not in env  # the worker has no port mapping
    api = environment(settings["api"]["container"], Local(queue_url=QUEUE, port=18080))
    assert api["ADAPTER_LISTEN"] == "127.0.0.1:18080"
    assert environment(settings["api"]["container"], Local(queue_url=QUEUE))["ADAPTER_LISTEN"] == "127.0.0.1:8080"


def test_foreground_labels_image_and_no_limits(settings):
    args = docker_run_args(settings["api"], Local(queue_url=QUEUE), name="a", image="local:tag", limits=False,
                           foreground=True, labels={"k": "v"})
    assert args[0] == "--rm" and "--detach" not in args
    assert flag(args, "--label") == "k=v"
    assert "--cpus" not in args and "--memory" not in args
    assert args[-4:] == ["local:tag", "http", "--", "/app/enqueue"]


def test_health_check_forms():
    assert health_flags({"command": ["CMD", "/bin/x", "a b"]})[:2] == ["--health-cmd", "/bin/x 'a b'"]
    assert health_flags({"command": ["CMD-SHELL", "curl -f x || exit 1"]}) == ["--health-cmd", "curl -f x || exit 1"]
    with pytest.raises(ValueError, match="CMD or CMD-SHELL"):
        health_flags({"command": ["NONE"]})


def test_cli_prints_json_and_a_bad_override_exits_2(tmp_path):
    def run(*argv):
        return subprocess.run([sys.executable, CONTAINERS, *argv], capture_output=True, text=True, timeout=60,
                              cwd=tmp_path, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    done = run("worker", "--queue-url", QUEUE, "batch_size=5")
    assert done.returncode == 0, done.stderr
    assert '"ADAPTER_BATCH_SIZE=5"' in done.stdout
    bad = run("worker", "--queue-url", QUEUE, "batchsize=5")
    assert (bad.returncode, bad.stdout) == (2, "")
    assert "batchsize: unknown key" in bad.stderr


def test_compose_yaml_is_generated_from_the_task_definitions():
    with open(os.path.join(REPO, "compose.yaml"), encoding="utf-8") as f:
        committed = f.read()
    assert committed == compose(ecs_settings()), "compose.yaml is stale: python deploy/containers.py compose > compose.yaml"
    services = yaml.safe_load(committed)["services"]
    assert services["worker"]["stop_grace_period"] == "30s"
    assert services["worker"]["environment"]["ADAPTER_ADMIN_LISTEN"] == "127.0.0.1:9091"
    assert services["api"]["healthcheck"]["test"] == ["CMD", "/app/adapter", "healthcheck"]
