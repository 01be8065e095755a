#!/usr/bin/env python3
"""Measures the adapter under the hostile cases of issue 14, for the numbers in its note.

    python3 bench/hardening_probe.py [target/quick-release]

1. A connection flood: 20,000 connections that each send half a request head. RSS before, at
   the peak and after the header-read timeout closed them; whether /healthz answered meanwhile.
2. Crashing processes: 4 processes, 10% of requests make the function exit; the share of the
   other (healthy) requests that succeed.
3. A wedged process: the time from a reply after which the process stops polling to the next
   invocation's success (--timeout 5).

Standard library only. Starts and stops its own adapters on free ports.
"""

import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/quick-release"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Adapter:
    def __init__(self, function, *flags):
        self.http, self.admin = free_port(), free_port()
        self.process = subprocess.Popen(
            [f"{BIN}/adapter", "http", "--listen", f"127.0.0.1:{self.http}",
             "--admin-listen", f"127.0.0.1:{self.admin}", *flags, "--", f"{BIN}/{function}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not self.ready():
            if time.monotonic() > deadline:
                raise SystemExit("adapter not ready")
            time.sleep(0.05)

    def ready(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/readyz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def healthz(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def post(self, body, timeout=30):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http}/", data=json.dumps(body).encode(),
            headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                return r.status, r.headers.get("x-amz-function-error")
        except urllib.error.HTTPError as e:
            return e.code, None
        except OSError:
            return None, None

    def stop(self):
        self.process.terminate()
        self.process.wait(30)


async def flood(port, count):
    opened = []

    async def one():
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), timeout=5)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
            await writer.drain()
            opened.append(writer)
        except (OSError, asyncio.TimeoutError):
            pass

    for start in range(0, count, 500):
        await asyncio.gather(*(one() for _ in range(min(500, count - start))))
    return opened


async def connection_flood():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    adapter = Adapter("echo")
    pid = adapter.process.pid
    before = rss_mib(pid)
    writers = await flood(adapter.http, 20_000)
    peak = rss_mib(pid)
    healthy = await asyncio.to_thread(adapter.healthz)
    # The header-read timeout (10 s) closes the stalled connections the adapter accepted.
    await asyncio.sleep(12)
    status, _ = await asyncio.to_thread(adapter.post, {"after": "flood"})
    after = rss_mib(pid)
    for writer in writers:
        writer.close()
    await asyncio.sleep(1)
    closed = rss_mib(pid)
    # The adapter trims its heap at most every 10 s after a burst of closed connections.
    await asyncio.sleep(11)
    settled = rss_mib(pid)
    adapter.stop()
    return {"connections_opened": len(writers), "rss_before_mib": round(before, 1),
            "rss_peak_mib": round(peak, 1), "healthz_during_flood": healthy,
            "request_after_timeout": status, "rss_after_timeout_mib": round(after, 1),
            "rss_after_clients_closed_mib": round(closed, 1),
            "rss_11s_later_mib": round(settled, 1)}


def crashing_processes(requests=400):
    adapter = Adapter("fixture", "--max-concurrency", "4")
    results = []

    def run(i):
        crash = i % 10 == 0
        status, error = adapter.post({"action": "exit"} if crash else {"action": "ok"})
        results.append((crash, status == 200 and error is None))

    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(run, range(requests)))
    adapter.stop()
    healthy = [ok for crash, ok in results if not crash]
    return {"requests": requests, "crashing": requests - len(healthy),
            "healthy_succeeded": sum(healthy), "healthy": len(healthy),
            "healthy_success_share": round(sum(healthy) / len(healthy), 4)}


def wedged_process():
    adapter = Adapter("fixture", "--max-concurrency", "1", "--timeout", "5")
    adapter.post({"action": "wedge"})
    replied = time.monotonic()
    status, error = adapter.post({"action": "ok"})
    waited = time.monotonic() - replied
    adapter.stop()
    return {"next_status": status, "next_error": error, "seconds_until_served": round(waited, 2)}


if __name__ == "__main__":
    os.chdir(os.path.join(os.path.dirname(__file__), ".."))
    print(json.dumps({"connection_flood": asyncio.run(connection_flood()),
                      "crashing_processes": crashing_processes(),
                      "wedged_process": wedged_process()}, indent=2))
