"""`ProcessRuntimeExecutor`: one LocalStack execution environment as one `adapter emulate` process.

LocalStack's Lambda service decides when environments start and stop, which environment takes an
invocation (one at a time each), and what it does with results and logs. This class does what the
Docker executor's container and init do: start the function with the environment LocalStack
computed, wait until it has initialised, pass each invocation to it, and hand back its reply and
its logs. The adapter does the Lambda side of the work: the Runtime API, the deadline, killing and
re-initialising a function that timed out or crashed, and `START`/`END`/`REPORT` lines.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

from localstack import config
from localstack.services.lambda_.invocation.executor_endpoint import StatusErrorException
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)

from .output import OutputRouter
from .runnable import InvalidEntrypoint, NotRunnable, bootstrap_path, check_runnable

LOG = logging.getLogger(__name__)

# Where the adapter binary is: this variable, else `adapter` on PATH.
ADAPTER_ENV = "LAMBDA_PROCESS_ADAPTER"
# Lambda's init phase is limited to 10 s; LocalStack waits LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT (20 s
# by default) for `start` and stops the environment after that.
INIT_TIMEOUT_SECONDS = 10
# After `stop`: time for the adapter to stop the function (SIGTERM, then SIGKILL) and exit.
STOP_GRACE_SECONDS = 3
# After a reply: how long to wait for the invocation's REPORT line to come through the pipe.
LOGS_WAIT_SECONDS = 2.0
# Attempts at starting an adapter when the ports picked for it were taken in the meantime.
START_ATTEMPTS = 3


def adapter_binary() -> str | None:
    return os.environ.get(ADAPTER_ENV) or shutil.which("adapter")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _error_payload(error_type: str, message: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


class _PortTaken(Exception):
    pass


class ProcessRuntimeExecutor(RuntimeExecutor):
    """Runs one execution environment as an `adapter emulate` process on this host."""

    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self._process: subprocess.Popen | None = None
        self._output = OutputRouter()
        self._invoke_port: int | None = None
        self._admin_port: int | None = None
        self._connection: http.client.HTTPConnection | None = None
        self._invoke_lock = threading.Lock()
        # Guards _process against stop() from LocalStack's startup timer while start() runs.
        self._process_lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._stopped = threading.Event()

    # Preparation of a version: checks only; the code itself is unzipped by LocalStack.

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        cfg = function_version.config
        try:
            check_runnable(
                runtime=cfg.runtime,
                package_type=cfg.package_type,
                architectures=list(cfg.architectures or []),
                layers=list(cfg.layers or []),
            )
        except NotRunnable as e:
            raise LambdaRuntimeException(str(e)) from None
        if adapter_binary() is None:
            raise LambdaRuntimeException(
                f"the 'process' Lambda executor needs the adapter binary: set {ADAPTER_ENV} "
                "(scripts/localstack up does) or put `adapter` on PATH"
            )
        if cfg.code:
            cfg.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        pass

    @classmethod
    def validate_environment(cls) -> bool:
        if adapter_binary() is None:
            LOG.warning(
                "The 'process' Lambda executor cannot find the adapter: set %s or put `adapter` on PATH",
                ADAPTER_ENV,
            )
            return False
        return True

    # The environment's life.

    def start(self, env_vars: dict[str, str]) -> None:
        code_dir = str(self.function_version.config.code.get_unzipped_code_location())
        try:
            bootstrap = bootstrap_path(code_dir)
        except InvalidEntrypoint as e:
            raise StatusErrorException(
                str(e), payload=_error_payload("Runtime.InvalidEntrypoint", str(e))
            ) from None
        for attempt in range(START_ATTEMPTS):
            try:
                self._start_adapter(env_vars, code_dir, bootstrap)
                return
            except _PortTaken:
                LOG.debug("adapter for %s lost its port; retrying (%d)", self.id, attempt + 1)
                self._output = OutputRouter()
        raise LambdaRuntimeException("the adapter could not bind a loopback port")

    def _start_adapter(self, env_vars: dict[str, str], code_dir: str, bootstrap: str) -> None:
        cfg = self.function_version.config
        fid = self.function_version.id
        self._invoke_port, self._admin_port = _free_port(), _free_port()
        env = {key: str(value) for key, value in env_vars.items()}
        env.setdefault("PATH", os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"))
        # The code is here, not in /var/task, on this host.
        env["LAMBDA_TASK_ROOT"] = code_dir
        # The adapter's own lines would land in the function's logs: warnings only.
        env["ADAPTER_LOG"] = "warn"
        command = [
            adapter_binary() or "adapter",
            "emulate",
            "--invoke-listen", f"127.0.0.1:{self._invoke_port}",
            "--admin-listen", f"127.0.0.1:{self._admin_port}",
            "--function-name", fid.function_name,
            "--region", fid.region,
            "--account-id", fid.account,
            "--memory-size", str(cfg.memory_size),
            "--timeout", str(cfg.timeout),
            "--init-timeout", str(INIT_TIMEOUT_SECONDS),
            "--log-group", env.get("AWS_LAMBDA_LOG_GROUP_NAME", f"/aws/lambda/{fid.function_name}"),
            "--max-concurrency", "1",
            "--shutdown-grace", "1",
            "--stop-on-stdin-eof",
            "--", bootstrap,
        ]  # fmt: skip
        # stdin is a pipe only we hold: when LocalStack dies, even by SIGKILL, the kernel closes it
        # and the adapter stops its function and exits. Its own session keeps a Ctrl-C in
        # LocalStack's terminal from reaching it before LocalStack stops it.
        with self._process_lock:
            if self._stopped.is_set():
                raise LambdaRuntimeException("the environment was stopped while it started")
            self._process = subprocess.Popen(
                command,
                cwd=code_dir,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._reader = threading.Thread(
            target=self._read_output, args=(self._process, self._output),
            name=f"lambda-process-{self.id}", daemon=True,
        )  # fmt: skip
        self._reader.start()
        self._wait_until_ready(INIT_TIMEOUT_SECONDS + 5)

    @staticmethod
    def _read_output(process: subprocess.Popen, output: OutputRouter) -> None:
        for raw in process.stdout:
            output.feed(raw.decode("utf-8", errors="replace"))
        output.close()

    def _wait_until_ready(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self._stopped.is_set():
                raise LambdaRuntimeException("the environment was stopped while it started")
            if self._process.poll() is not None:
                self._raise_start_failure()
            if self._ready():
                return
            time.sleep(0.02)
        self.stop()
        raise LambdaRuntimeException(f"the adapter did not become ready within {seconds:.0f} s")

    def _ready(self) -> bool:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self._admin_port, timeout=1)
            connection.request("GET", "/readyz")
            ready = connection.getresponse().status == 200
            connection.close()
            return ready
        except OSError:
            return False

    def _raise_start_failure(self) -> None:
        self._process.wait()
        # What the adapter wrote before it exited, to its end (its function dies with it).
        self._reader.join(timeout=2)
        history = self._output.history()
        reason = next(
            (
                line.removeprefix("adapter: ")
                for line in reversed(history.splitlines())
                if line.startswith("adapter: ")
            ),
            f"the adapter exited with status {self._process.returncode}",
        )
        if "could not listen on" in reason:
            self._close_pipes(self._process)
            raise _PortTaken()
        if "init error" in reason:
            error_type = "Runtime.InitError"  # the function reported it (then exited or was killed)
        elif "exit" in reason:
            error_type = "Runtime.ExitError"
        else:
            error_type = "Runtime.InitError"
        LOG.warning("Lambda %s failed to initialise: %s", self.function_version.qualified_arn, reason)
        raise StatusErrorException(reason, payload=_error_payload(error_type, reason))

    def stop(self) -> None:
        with self._process_lock:
            self._stopped.set()
            process = self._process
        if self._connection:
            self._connection.close()
        if process is None:
            return
        if process.poll() is None:
            try:
                process.stdin.close()
                process.terminate()
                process.wait(timeout=STOP_GRACE_SECONDS)
            except (OSError, subprocess.TimeoutExpired):
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()
        self._close_pipes(process)

    @staticmethod
    def _close_pipes(process: subprocess.Popen) -> None:
        for pipe in (process.stdin, process.stdout):
            try:
                pipe.close()
            except OSError:
                pass

    # Invocations.

    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        """Raises `StatusErrorException` when the environment is gone (LocalStack then answers
        with its payload and stops the environment); anything else is the function's answer."""
        request_id = payload["invoke-id"]
        with self._invoke_lock:
            status, is_error, body = self._send(payload)
            if status != 200:
                # The adapter refused it before any process took it (it was shutting down).
                is_error = True
                body = _error_payload("Runtime.Unavailable", body.decode("utf-8", "replace"))
            logs = self._output.take(request_id, timeout=LOGS_WAIT_SECONDS)
            return InvocationResult(request_id, body, is_error=is_error, logs=logs)

    def _send(self, payload: dict[str, str]) -> tuple[int, bool, bytes]:
        headers = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": payload["invoke-id"],
        }
        if trace := payload.get("trace-id"):
            headers["X-Amzn-Trace-Id"] = trace
        path = f"/2015-03-31/functions/{self.function_version.id.function_name}/invocations"
        body = (payload.get("payload") or "").encode()
        # The adapter answers by then: an invocation may wait up to its timeout for a process that
        # restarts, then run for up to its timeout.
        timeout = 2 * self.function_version.config.timeout + INIT_TIMEOUT_SECONDS + 5
        for attempt in range(2):
            reused = self._connection is not None
            if self._connection is None:
                self._connection = http.client.HTTPConnection("127.0.0.1", self._invoke_port, timeout=timeout)
            try:
                self._connection.request("POST", path, body=body, headers=headers)
                response = self._connection.getresponse()
                data = response.read()
                return response.status, response.getheader("X-Amz-Function-Error") is not None, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                # A kept-alive connection the adapter had closed: the request never ran. Sent
                # again once on a new connection; anything else is not retried, so an invocation
                # never runs twice.
                self._drop_connection()
                if not (reused and attempt == 0 and self._process.poll() is None):
                    self._environment_gone(e)
            except (http.client.HTTPException, OSError) as e:
                self._drop_connection()
                self._environment_gone(e)
        raise AssertionError("unreachable")

    def _drop_connection(self) -> None:
        if self._connection:
            self._connection.close()
        self._connection = None

    def _environment_gone(self, error: Exception) -> None:
        message = f"Runtime exited with error: the execution environment stopped answering ({error})"
        LOG.warning("Lambda %s: %s", self.function_version.qualified_arn, message)
        raise StatusErrorException(message, payload=_error_payload("Runtime.ExitError", message))

    # What LocalStack asks about the environment.

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        host = config.GATEWAY_LISTEN[0].host
        return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host

    def get_runtime_endpoint(self) -> str:
        # Unused: the adapter, not LocalStack's executor endpoint, is the Runtime API here.
        return f"http://127.0.0.1:{self._invoke_port or 0}"

    def get_logs(self) -> str:
        return self._output.history()
