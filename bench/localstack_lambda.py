"""LocalStack's Lambda with the 'process' executor, for scripts/bench (run with LocalStack's venv).

    localstack_lambda.py create --zip ZIP --name NAME
        creates a function from ZIP (provided.al2023) and waits until it is active, so that
        `invoke-rtt` can measure warm round trips through LocalStack's Invoke API
    localstack_lambda.py delete --name NAME
        deletes it
    localstack_lambda.py cold --zip ZIP --adapter ADAPTER --count N
        cold starts, N of each, with one client (http.client, one connection per call):
        - target=localstack-lambda: a new function's first invoke through LocalStack, from the
          request to the reply (LocalStack starts an environment: the adapter, then the function)
        - target=adapter-emulate: `adapter emulate -- bootstrap` spawned, to its first reply
        prints `bench lambda_cold target=... count=... p50_ms=... max_ms=...`

Both send the same function URL event as `invoke-rtt`. AWS_ENDPOINT_URL says where LocalStack is.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from urllib.parse import urlsplit

import boto3

ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
EVENT = json.dumps({
    "version": "2.0", "routeKey": "$default", "rawPath": "/echo", "rawQueryString": "",
    "headers": {"host": "127.0.0.1", "user-agent": "bench"},
    "requestContext": {"accountId": "000000000000", "apiId": "bench", "domainName": "127.0.0.1",
                       "domainPrefix": "bench", "requestId": "bench", "routeKey": "$default",
                       "stage": "$default", "time": "01/Dec/2026:00:00:00 +0000", "timeEpoch": 0,
                       "http": {"method": "GET", "path": "/echo", "protocol": "HTTP/1.1",
                                "sourceIp": "127.0.0.1", "userAgent": "bench"}},
    "isBase64Encoded": False,
}).encode()


def lambda_client():
    return boto3.client("lambda", endpoint_url=ENDPOINT, region_name=os.environ.get("AWS_REGION", "us-east-1"),
                        aws_access_key_id="test", aws_secret_access_key="test")


def create(client, name: str, code: bytes) -> None:
    client.create_function(FunctionName=name, Runtime="provided.al2023", Handler="bootstrap",
                           Role="arn:aws:iam::000000000000:role/bench", Code={"ZipFile": code},
                           Timeout=10, MemorySize=128)
    client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.1})


def invoke(host: str, port: int, name: str) -> bool:
    """One invocation on a new connection; False when nobody listens yet."""
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request("POST", f"/2015-03-31/functions/{name}/invocations", body=EVENT,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
    except ConnectionRefusedError:
        return False
    finally:
        connection.close()
    if response.status != 200 or response.getheader("X-Amz-Function-Error"):
        raise RuntimeError(f"invocation of {name} failed: {response.status}")
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cold_localstack(client, code: bytes, count: int) -> list[float]:
    parts = urlsplit(ENDPOINT)
    samples = []
    for _ in range(count):
        name = f"bench-cold-{uuid.uuid4().hex[:8]}"
        create(client, name, code)
        try:
            start = time.perf_counter()
            invoke(parts.hostname, parts.port, name)
            samples.append((time.perf_counter() - start) * 1000)
        finally:
            client.delete_function(FunctionName=name)
    return samples


def cold_emulate(adapter: str, code: bytes, count: int) -> list[float]:
    samples = []
    with tempfile.TemporaryDirectory() as folder:
        with zipfile.ZipFile(io.BytesIO(code)) as archive:
            archive.extract("bootstrap", folder)
        bootstrap = os.path.join(folder, "bootstrap")
        os.chmod(bootstrap, 0o755)
        for _ in range(count):
            port = free_port()
            start = time.perf_counter()
            process = subprocess.Popen(
                [adapter, "emulate", "--invoke-listen", f"127.0.0.1:{port}", "--admin-listen",
                 f"127.0.0.1:{free_port()}", "--function-name", "echo", "--", bootstrap],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "ADAPTER_LOG": "warn"})
            try:
                deadline = start + 30
                while not invoke("127.0.0.1", port, "echo"):
                    if time.perf_counter() > deadline:
                        raise RuntimeError("adapter emulate did not answer in 30 s")
                    time.sleep(0.001)
                samples.append((time.perf_counter() - start) * 1000)
            finally:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    return samples


def line(target: str, samples: list[float]) -> str:
    return (f"bench lambda_cold target={target} count={len(samples)} "
            f"p50_ms={statistics.median(samples):.1f} max_ms={max(samples):.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    c = commands.add_parser("create")
    c.add_argument("--zip", required=True)
    c.add_argument("--name", required=True)
    c = commands.add_parser("delete")
    c.add_argument("--name", required=True)
    c = commands.add_parser("cold")
    c.add_argument("--zip", required=True)
    c.add_argument("--adapter", required=True)
    c.add_argument("--count", type=int, default=5)
    args = parser.parse_args()
    client = lambda_client()
    if args.command == "delete":
        client.delete_function(FunctionName=args.name)
        return 0
    with open(args.zip, "rb") as f:
        code = f.read()
    if args.command == "create":
        create(client, args.name, code)
    else:
        print(line("localstack-lambda", cold_localstack(client, code, args.count)), flush=True)
        print(line("adapter-emulate", cold_emulate(args.adapter, code, args.count)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
