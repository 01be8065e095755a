"""The image itself: who it runs as, what it holds, how big it is, and how its entry point refuses
a container started without a role."""

from __future__ import annotations

from conftest import docker

# The runtime stage is Debian slim plus three stripped binaries: well under this. A toolchain or
# a build folder leaking into the last stage would blow it.
MAX_IMAGE_MIB = 200


def test_runs_as_uid_10001_not_root(image):
    done = docker("run", "--rm", "--entrypoint", "id", image)
    assert done.stdout.split()[0:2] == ["uid=10001(app)", "gid=10001(app)"], done.stdout


def test_app_holds_the_adapter_both_functions_and_the_entrypoint(image):
    done = docker("run", "--rm", "--entrypoint", "/bin/sh", image, "-c",
                  "cd /app && for f in adapter enqueue sleep entrypoint; do test -x $f && echo $f; done")
    assert done.stdout.split() == ["adapter", "enqueue", "sleep", "entrypoint"]
    assert docker("run", "--rm", "--entrypoint", "/app/adapter", image, "--version").stdout.startswith("adapter ")


def test_size_is_reported_and_small(image):
    size = int(docker("image", "inspect", "--format", "{{.Size}}", image).stdout)
    print(f"image {image}: {size / 1024 / 1024:.1f} MiB")
    assert 0 < size < MAX_IMAGE_MIB * 1024 * 1024, f"{size / 1024 / 1024:.1f} MiB"


def test_no_role_and_no_arguments_exits_64_with_the_usage_line(image):
    done = docker("run", "--rm", image, check=False)
    assert done.returncode == 64
    assert done.stderr.startswith("usage: SERVICE_ROLE=api|worker"), done.stderr


def test_an_unknown_role_is_named_in_the_error(image):
    done = docker("run", "--rm", "-e", "SERVICE_ROLE=scheduler", image, check=False)
    assert done.returncode == 64
    assert "SERVICE_ROLE='scheduler' is not a role" in done.stderr, done.stderr


def test_healthcheck_is_the_adapters_own_command(image):
    check = docker("image", "inspect", "--format", "{{json .Config.Healthcheck.Test}}", image).stdout.strip()
    assert check == '["CMD","/app/adapter","healthcheck"]'
