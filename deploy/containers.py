"""Runs the ECS task definitions' containers with Docker, the way ECS runs them, on this host.

The container definitions are the Pulumi program's own (`render.py ecs`, under its mocks), not a
second copy, so what runs here is what `pulumi up` would register. Honoured as ECS does:
`entryPoint`, `command`, `environment`, `user`, `healthCheck` (command, interval, timeout, retries,
start period), `stopTimeout` (the grace `docker stop` gives before SIGKILL), and the task's `cpu`
and `memory` (as `--cpus` and `--memory`).

What ECS gives a task that Docker does not, the runner supplies, and only that:
- awsvpc gives each task its own network namespace. Here every container shares the host's
  network, so that all traffic (LocalStack's included) stays on loopback; each container gets its
  own ports instead: `ADAPTER_LISTEN` for the port mapping's `containerPort` (on 127.0.0.1), and
  `ADAPTER_ADMIN_LISTEN` for the admin listener (its health check, `adapter healthcheck`, asks
  the address in that variable).
- the task role gives credentials and the VPC reaches SQS; here `AWS_ENDPOINT_URL` and the
  endpoint's credentials (LocalStack's `test`/`test` unless the environment says otherwise).
- the queue the stack would create; here the queue URL given (`QUEUE_URL` and `ADAPTER_QUEUE_URL`).
- the `awslogs` log driver; here Docker's default, read with `docker logs`.

    python deploy/containers.py api|worker --queue-url URL [--name N] [--image I]
                                [--port P] [--admin-port P] [--no-limits] [--foreground] [--run]
                                [KEY=VALUE ...]

prints the `docker run` arguments (JSON list) for one role, or with `--run` runs them (scripts/containers
does); KEY=VALUE are render.py's overrides. `python deploy/containers.py compose` prints the
repository's compose.yaml, the same two containers for `docker compose`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from render import UsageError, mode_args, render  # noqa: E402

ROLES = ("api", "worker")


def ecs_settings(overrides: list[str] | None = None) -> dict[str, Any]:
    """The ECS task definitions (size and container, per role) the Pulumi program would register."""
    args = mode_args("ecs", list(overrides or []))
    with contextlib.redirect_stdout(sys.stderr):
        return render("ecs", args)


@dataclass
class Local:
    """What this host gives a container in place of what ECS gives a task."""

    queue_url: str
    endpoint_url: str = field(default_factory=lambda: os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"))
    region: str = field(default_factory=lambda: os.environ.get("AWS_REGION", "us-east-1"))
    access_key_id: str = field(default_factory=lambda: os.environ.get("AWS_ACCESS_KEY_ID", "test"))
    secret_access_key: str = field(default_factory=lambda: os.environ.get("AWS_SECRET_ACCESS_KEY", "test"))
    # None: the port mapping's containerPort (8080 for the API).
    port: int | None = None
    admin_port: int = 9090


def free_port() -> int:
    """A port free on 127.0.0.1 now (the kernel's choice), for a container on the host network."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _seconds(value: Any) -> str:
    return f"{int(value)}s"


def health_flags(check: dict[str, Any]) -> list[str]:
    """ECS's `healthCheck` as `docker run` flags. Docker's CLI takes the command as one shell
    string, so a `CMD` form becomes the same words quoted for `/bin/sh -c`."""
    kind, *words = check["command"]
    if kind == "CMD":
        command = shlex.join(words)
    elif kind == "CMD-SHELL":
        (command,) = words
    else:
        raise ValueError(f"healthCheck command must start with CMD or CMD-SHELL, got {kind!r}")
    flags = ["--health-cmd", command]
    for key, flag in (("interval", "--health-interval"), ("timeout", "--health-timeout"),
                      ("startPeriod", "--health-start-period")):
        if key in check:
            flags += [flag, _seconds(check[key])]
    if "retries" in check:
        flags += ["--health-retries", str(int(check["retries"]))]
    return flags


def environment(container: dict[str, Any], local: Local) -> dict[str, str]:
    """The definition's environment, with what this host supplies in place of ECS (module doc)."""
    env = {e["name"]: e["value"] for e in container.get("environment", [])}
    for name in ("QUEUE_URL", "ADAPTER_QUEUE_URL"):
        if name in env:
            env[name] = local.queue_url
    env["AWS_REGION"] = local.region
    env["AWS_ENDPOINT_URL"] = local.endpoint_url
    env["AWS_ACCESS_KEY_ID"] = local.access_key_id
    env["AWS_SECRET_ACCESS_KEY"] = local.secret_access_key
    mappings = container.get("portMappings") or []
    if mappings:
        env["ADAPTER_LISTEN"] = f"127.0.0.1:{local.port or mappings[0]['containerPort']}"
    # `adapter healthcheck` asks the address in ADAPTER_ADMIN_LISTEN, which it inherits.
    env["ADAPTER_ADMIN_LISTEN"] = f"127.0.0.1:{local.admin_port}"
    return env


def docker_run_args(task: dict[str, Any], local: Local, *, name: str, image: str | None = None,
                    limits: bool = True, foreground: bool = False,
                    labels: dict[str, str] | None = None) -> list[str]:
    """`docker run` arguments (after `docker run`) for one role's task definition (`ecs_settings`);
    `image` replaces the definition's (a local tag in place of the ECR reference, say); `labels`
    mark the container for whoever cleans up after it."""
    container = task["container"]
    # In the foreground (`--rm`, signals passed on by the client), for a caller that owns the process.
    args = ["--rm"] if foreground else ["--detach"]
    args += ["--name", name, "--network", "host"]
    for key, value in sorted((labels or {}).items()):
        args += ["--label", f"{key}={value}"]
    if container.get("user"):
        args += ["--user", container["user"]]
    if "stopTimeout" in container:
        args += ["--stop-timeout", str(int(container["stopTimeout"]))]
    if "healthCheck" in container:
        args += health_flags(container["healthCheck"])
    if limits:
        # Fargate sizes the task: cpu in 1/1024 of a vCPU, memory in MiB.
        args += ["--cpus", f"{task['cpu'] / 1024:g}", "--memory", f"{task['memory']}m"]
    for key, value in sorted(environment(container, local).items()):
        args += ["--env", f"{key}={value}"]
    entry = container.get("entryPoint") or []
    command = list(container.get("command") or [])
    if entry:
        # Docker takes one entry point word; ECS joins the rest before the command, as here.
        args += ["--entrypoint", entry[0]]
        command = entry[1:] + command
    return args + [image or container["image"]] + command


# compose.yaml's values for what this host supplies (module doc), from the shell or .env.
COMPOSE_LOCAL = {
    "queue_url": "${QUEUE_URL:?set QUEUE_URL: scripts/localstack queue prints one}",
    "endpoint_url": "${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}",
    "region": "${AWS_REGION:-us-east-1}",
    "access_key_id": "${AWS_ACCESS_KEY_ID:-test}",
    "secret_access_key": "${AWS_SECRET_ACCESS_KEY:-test}",
}
COMPOSE_ADMIN_PORTS = {"api": 9090, "worker": 9091}


def compose(settings: dict[str, Any], image: str | None = None) -> str:
    """compose.yaml for both roles, from the same task definitions and the same rules as
    `docker_run_args` (JSON is YAML, so no YAML library is needed to write it)."""
    services = {}
    for role in ROLES:
        task, container = settings[role], settings[role]["container"]
        local = Local(**COMPOSE_LOCAL, admin_port=COMPOSE_ADMIN_PORTS[role])
        check = container["healthCheck"]
        service: dict[str, Any] = {
            "image": image or container["image"],
            "network_mode": "host",
            "user": container["user"],
            "entrypoint": container["entryPoint"],
            "command": container["command"],
            "environment": dict(sorted(environment(container, local).items())),
            "healthcheck": {"test": check["command"], "interval": _seconds(check["interval"]),
                            "timeout": _seconds(check["timeout"]), "retries": int(check["retries"]),
                            "start_period": _seconds(check["startPeriod"])},
            "stop_grace_period": _seconds(container["stopTimeout"]),
            "cpus": task["cpu"] / 1024,
            "mem_limit": f"{task['memory']}m",
        }
        services[role] = service
    header = ("# Generated from the ECS task definitions of deploy/ (python deploy/containers.py compose >\n"
              "# compose.yaml); a deploy test fails when it differs. Run: QUEUE_URL=... docker compose up\n")
    return header + json.dumps({"services": services}, indent=2) + "\n"


def main(argv: list[str]) -> int:
    run = argparse.ArgumentParser(prog="containers.py", description="Prints the `docker run` arguments "
                                  "(a JSON list) that run one role's ECS task definition here.")
    run.add_argument("role", choices=(*ROLES, "compose"),
                     help="a role, or compose: print compose.yaml for both (other flags ignored)")
    run.add_argument("--queue-url")
    run.add_argument("--name", help="the container's name (default: task-service-ROLE)")
    run.add_argument("--image", help="in place of the definition's image (default: the definition's)")
    run.add_argument("--port", type=int, help="the API's port on 127.0.0.1 (default: its containerPort)")
    run.add_argument("--admin-port", type=int, default=9090)
    run.add_argument("--no-limits", action="store_true", help="leave out the task's cpu and memory")
    run.add_argument("--foreground", action="store_true",
                     help="attached and removed at exit (--rm) rather than detached")
    run.add_argument("--run", action="store_true", help="run `docker run` with them (DOCKER: the client) "
                     "instead of printing them")
    run.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="render.py's overrides")
    options = run.parse_intermixed_args(argv)
    try:
        settings = ecs_settings(options.overrides)
    except UsageError as error:
        print(f"containers.py: {error}", file=sys.stderr)
        return 2
    if options.role == "compose":
        sys.stdout.write(compose(settings, options.image))
        return 0
    if not options.queue_url:
        run.error("--queue-url is required with a role")
    local = Local(queue_url=options.queue_url, port=options.port, admin_port=options.admin_port)
    args = docker_run_args(settings[options.role], local, name=options.name or f"task-service-{options.role}",
                           image=options.image, limits=not options.no_limits, foreground=options.foreground)
    if options.run:
        docker = os.environ.get("DOCKER", "docker")
        os.execvp(docker, [docker, "run", *args])
    json.dump(args, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # Exit without the interpreter's teardown: Pulumi's mocks leave asyncio event loops whose
    # finalizers, run at teardown, now and then print "Exception ignored in BaseEventLoop.__del__"
    # (a closed self-pipe) to stderr, which callers rightly read as output (1 run in 15 here).
    os._exit(code)
