"""No function process or adapter outlives LocalStack, even when LocalStack is killed with SIGKILL
and so stops nothing itself. Runs a LocalStack of its own (scripts/localstack, another port)."""

from __future__ import annotations

import os
import signal
import subprocess

from conftest import REPO, client, free_port, invoke, unique, wait_for, ROLE
from test_invoke import alive, parent_of


def test_no_process_outlives_a_killed_localstack(tmp_path, fixture_zip):
    endpoint = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "TASKS_STATE_DIR": str(tmp_path),
           "LAMBDA_PROCESS_ADAPTER": str(REPO / "target" / "debug" / "adapter")}
    script = str(REPO / "scripts" / "localstack")
    pid_file = tmp_path / "localstack" / "pid"
    try:
        subprocess.run([script, "up"], env=env, check=True, timeout=180)
        localstack = int(pid_file.read_text())
        lam = client("lambda", endpoint)
        name = unique("orphan")
        lam.create_function(FunctionName=name, Runtime="provided.al2023", Handler="bootstrap", Role=ROLE,
                            Code={"ZipFile": fixture_zip})
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.2})
        reply, _ = invoke(lam, name, {"action": "ok"})
        function = reply["pid"]
        adapter = parent_of(function)
        assert alive(function) and alive(adapter)

        os.kill(localstack, signal.SIGKILL)
        wait_for(lambda: not alive(function) and not alive(adapter), 30,
                 "the function and its adapter to exit after LocalStack's SIGKILL")
    finally:
        if pid_file.exists():
            try:
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run([script, "down"], env=env, check=False, timeout=60)
