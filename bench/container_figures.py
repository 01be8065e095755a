"""The image's figures for scripts/bench: its size, and how long a container takes from `docker run`
to ready (the adapter's /readyz answers 200) and to healthy (Docker's verdict from the task
definition's health check). Prints `bench ...` lines; run with the deploy venv (it reads the task
definitions through deploy/containers.py).

    python bench/container_figures.py size IMAGE
    python bench/container_figures.py start IMAGE --queue-url URL [--runs 3]

The worker's drain in a container is measured by scripts/bench itself, with `observe` around
`docker run` (deploy/containers.py --foreground), beside the same drain as host processes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deploy"))

from containers import Local, docker_run_args, ecs_settings, free_port  # noqa: E402

DOCKER = os.environ.get("DOCKER", "docker")


def docker(*args: str) -> str:
    return subprocess.run([DOCKER, *args], check=True, capture_output=True, text=True, timeout=120).stdout


def runtime_base() -> str:
    """The runtime stage's base image, as the Dockerfile names it (its ARG defaults filled in)."""
    dockerfile = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Dockerfile")
    with open(dockerfile, encoding="utf-8") as f:
        text = f.read()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))
    (base,) = re.findall(r"^FROM (\S+) AS runtime$", text, re.M)
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], base)


def size(image: str) -> None:
    inspect = json.loads(docker("image", "inspect", image))[0]
    base = int(docker("image", "inspect", "--format", "{{.Size}}", runtime_base()))
    print(f"bench image size_mib={inspect['Size'] / 2**20:.1f} base_mib={base / 2**20:.1f} "
          f"layers={len(inspect['RootFS']['Layers'])}", flush=True)


def ready(admin_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def start(image: str, queue_url: str, runs: int) -> None:
    task = ecs_settings()["api"]
    interval = task["container"]["healthCheck"]["interval"]
    for run in range(1, runs + 1):
        admin = free_port()
        name = f"bench-api-{uuid.uuid4().hex[:8]}"
        args = docker_run_args(task, Local(queue_url=queue_url, port=free_port(), admin_port=admin),
                               name=name, image=image)
        began = time.monotonic()
        try:
            docker("run", *args)
            ready_ms = healthy_ms = None
            deadline = began + interval * 4 + 30
            while time.monotonic() < deadline and healthy_ms is None:
                now_ms = (time.monotonic() - began) * 1000
                if ready_ms is None and ready(admin):
                    ready_ms = now_ms
                if ready_ms is not None:
                    health = docker("inspect", "--format", "{{.State.Health.Status}}", name).strip()
                    if health == "healthy":
                        healthy_ms = now_ms
                time.sleep(0.01 if ready_ms is None else 0.1)
            print(f"bench container_start role=api run={run} ready_ms={_ms(ready_ms)} "
                  f"healthy_ms={_ms(healthy_ms)} health_interval_s={interval}", flush=True)
        finally:
            subprocess.run([DOCKER, "rm", "--force", name], capture_output=True, timeout=60)


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="container_figures.py")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("size")
    s.add_argument("image")
    st = sub.add_parser("start")
    st.add_argument("image")
    st.add_argument("--queue-url", required=True)
    st.add_argument("--runs", type=int, default=3)
    options = parser.parse_args(argv)
    if options.command == "size":
        size(options.image)
    else:
        start(options.image, options.queue_url, options.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
