"""What this executor can run, and a clear reason when it cannot. Pure: no LocalStack imports.

Two kinds of refusal, placed where Lambda would place them:
- what the executor itself cannot do (another runtime, a container image, another architecture,
  layers) fails the function's creation: LocalStack marks the version `Failed` with our reason,
  which `get-function` shows and every invoke reports;
- a broken package (no `bootstrap`, not executable) is a failed init, as on Lambda: creation
  succeeds and each invoke answers with `Runtime.InvalidEntrypoint`.
"""

from __future__ import annotations

import os
import platform

# The OS-only runtimes: the function is an executable `bootstrap` that speaks the Runtime API.
RUNTIMES = ("provided.al2023", "provided.al2", "provided")

# Lambda's architecture names for what this host runs natively.
_HOST_ARCHITECTURES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


class NotRunnable(Exception):
    """The executor cannot run this function at all; the message says why and what it runs."""


class InvalidEntrypoint(Exception):
    """The package has no usable `bootstrap` (Lambda's `Runtime.InvalidEntrypoint`)."""


def host_architecture() -> str:
    """This machine's architecture as Lambda names it (`x86_64` or `arm64`)."""
    machine = platform.machine().lower()
    return _HOST_ARCHITECTURES.get(machine, machine)


def check_runnable(
    *, runtime: str | None, package_type: str, architectures: list[str], layers: list
) -> None:
    """Raises `NotRunnable` unless this executor can run a function configured like this."""
    supported = ", ".join(RUNTIMES)
    if package_type != "Zip":
        raise NotRunnable(
            f"the 'process' Lambda executor runs zip packages only (runtimes {supported}); "
            f"a {package_type} package needs LocalStack's Docker executor"
        )
    if runtime not in RUNTIMES:
        raise NotRunnable(
            f"the 'process' Lambda executor runs the runtimes {supported}, not {runtime!r}; "
            "use LocalStack's Docker executor for managed runtimes"
        )
    host = host_architecture()
    wanted = architectures[0] if architectures else "x86_64"
    if wanted != host:
        raise NotRunnable(
            f"the function is built for {wanted} and this host runs {host} code only; "
            f"build it for {host} (cargo lambda build{' --arm64' if host == 'arm64' else ''})"
        )
    if layers:
        raise NotRunnable("the 'process' Lambda executor does not support layers")


def bootstrap_path(code_dir: str) -> str:
    """The package's `bootstrap`, or `InvalidEntrypoint` saying what is wrong with it."""
    path = os.path.join(code_dir, "bootstrap")
    if not os.path.lexists(path):
        raise InvalidEntrypoint(
            "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]: "
            "the zip must hold an executable named 'bootstrap' at its root"
        )
    if not os.path.isfile(path):
        raise InvalidEntrypoint(f"bootstrap is not a regular file ({path})")
    if not os.access(path, os.X_OK):
        raise InvalidEntrypoint(
            f"fork/exec {path}: permission denied: bootstrap is not executable "
            "(zip it with its mode bits, as `cargo lambda build --output-format zip` does)"
        )
    return path
