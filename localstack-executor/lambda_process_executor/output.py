"""Splits the output of one execution environment into each invocation's logs.

The adapter writes the function's stdout and stderr and its own `START`/`END`/`REPORT` lines to
one pipe. A function writes its lines before it posts its reply and the adapter writes `END` and
`REPORT` after the reply arrives, so on that one pipe every line between `START RequestId: X` and
`REPORT RequestId: X` is invocation X's. Lines outside any invocation (the function's init, a
background thread) are put in front of the next invocation's logs, where Lambda's log stream shows
them too.
"""

from __future__ import annotations

import re
import threading
from collections import deque

_START = re.compile(r"^START RequestId: (\S+)")
_REPORT = re.compile(r"^REPORT RequestId: (\S+)")

# What `get_logs` (LocalStack's view of the whole environment) keeps, and what waits for the next
# invocation at most: enough for a crash report, bounded against a function that floods its output.
HISTORY_LINES = 2_000
PENDING_LINES = 1_000
# Finished invocations whose logs nobody has taken yet (an invoke that failed on its own side).
UNCLAIMED = 64


class _Invocation:
    def __init__(self, leading: list[str]) -> None:
        self.lines = leading
        self.done = False


class OutputRouter:
    """Thread-safe: one thread feeds lines, invoking threads wait for their invocation's logs."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._history: deque[str] = deque(maxlen=HISTORY_LINES)
        self._pending: deque[str] = deque(maxlen=PENDING_LINES)
        self._current: tuple[str, _Invocation] | None = None
        self._finished: dict[str, _Invocation] = {}
        self._closed = False

    def feed(self, line: str) -> None:
        """Takes one line of output (with or without its newline)."""
        line = line.rstrip("\n")
        with self._cond:
            self._history.append(line)
            if start := _START.match(line):
                invocation = _Invocation(list(self._pending))
                self._pending.clear()
                invocation.lines.append(line)
                self._current = (start.group(1), invocation)
                return
            if self._current is None:
                self._pending.append(line)
                return
            request_id, invocation = self._current
            invocation.lines.append(line)
            report = _REPORT.match(line)
            if report and report.group(1) == request_id:
                invocation.done = True
                self._current = None
                self._finished[request_id] = invocation
                while len(self._finished) > UNCLAIMED:
                    self._finished.pop(next(iter(self._finished)))
                self._cond.notify_all()

    def close(self) -> None:
        """The output ended (the process exited): nobody waits any longer."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, request_id: str, timeout: float) -> str:
        """The logs of `request_id`, waiting up to `timeout` seconds for its `REPORT` line; what
        was seen of it by then if the line never comes (the process died mid-invocation)."""
        with self._cond:
            self._cond.wait_for(
                lambda: request_id in self._finished or self._closed, timeout=timeout
            )
            invocation = self._finished.pop(request_id, None)
            if invocation is None and self._current and self._current[0] == request_id:
                invocation = self._current[1]
                self._current = None
            if invocation is None:
                return ""
            return "\n".join(invocation.lines) + "\n"

    def history(self) -> str:
        """The last lines of all output, for LocalStack's diagnostics after a failed start."""
        with self._cond:
            return "\n".join(self._history)
