"""What the executor runs, and the reasons it gives for what it cannot."""

import os

import pytest

from lambda_process_executor.runnable import (
    InvalidEntrypoint,
    NotRunnable,
    bootstrap_path,
    check_runnable,
    host_architecture,
)


def runnable(**overrides):
    args = {"runtime": "provided.al2023", "package_type": "Zip",
            "architectures": [host_architecture()], "layers": []}
    args.update(overrides)
    check_runnable(**args)


def test_provided_runtimes_on_this_architecture_run():
    for runtime in ("provided.al2023", "provided.al2", "provided"):
        runnable(runtime=runtime)
    runnable(architectures=[])


@pytest.mark.parametrize("overrides, words", [
    ({"runtime": "python3.12"}, ["'python3.12'", "provided.al2023", "provided.al2"]),
    ({"package_type": "Image", "runtime": None}, ["zip packages only", "Image"]),
    ({"architectures": ["arm64" if host_architecture() == "x86_64" else "x86_64"]}, ["built for"]),
    ({"layers": ["arn:aws:lambda:us-east-1:000000000000:layer:x:1"]}, ["layers"]),
])
def test_what_it_cannot_run_is_refused_with_the_reason(overrides, words):
    with pytest.raises(NotRunnable) as refused:
        runnable(**overrides)
    for word in words:
        assert word in str(refused.value)


def test_bootstrap_must_exist_and_be_executable(tmp_path):
    with pytest.raises(InvalidEntrypoint, match="Couldn't find valid bootstrap"):
        bootstrap_path(str(tmp_path))
    bootstrap = tmp_path / "bootstrap"
    bootstrap.mkdir()
    with pytest.raises(InvalidEntrypoint, match="not a regular file"):
        bootstrap_path(str(tmp_path))
    bootstrap.rmdir()
    bootstrap.write_text("#!/bin/sh\n")
    os.chmod(bootstrap, 0o644)
    with pytest.raises(InvalidEntrypoint, match="permission denied"):
        bootstrap_path(str(tmp_path))
    os.chmod(bootstrap, 0o755)
    assert bootstrap_path(str(tmp_path)) == str(bootstrap)
