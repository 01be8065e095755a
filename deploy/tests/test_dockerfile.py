"""Static checks of the Dockerfile and .dockerignore, parsed with BuildKit's own parser.

These run without Docker (deploy/container_tests build and run the image itself); they catch
what would break a build or the image's contract: stages in the right order (dependencies cached
before sources), every COPY source present and not ignored, the three binaries in /app, a
non-root user, and the entry point.
"""

from __future__ import annotations

import os
import re
import tomllib

import dockerfile
import pytest

from modules.ecs import CONTAINER_USER

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def commands():
    return dockerfile.parse_file(os.path.join(REPO, "Dockerfile"))


def stages(commands) -> dict[str, list]:
    """Instructions per stage, by stage name."""
    result: dict[str, list] = {}
    current = None
    for c in commands:
        if c.cmd == "FROM":
            current = c.value[-1] if len(c.value) == 3 else c.value[0]
            result[current] = []
        elif current is not None:
            result[current].append(c)
    return result


def ignore_patterns() -> list[tuple[bool, str]]:
    patterns = []
    with open(os.path.join(REPO, ".dockerignore"), encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = os.path.normpath(line.lstrip("!")).lstrip("/")
            patterns.append((negate, pattern))
    return patterns


def _match(pattern: str, path: str) -> bool:
    """Docker's rule: a pattern matches a path or any of its parent directories; `*` stays within
    one path segment and `**` spans any number of them."""
    regex = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            regex += ".*"
            i += 2
        elif pattern[i] == "*":
            regex += "[^/]*"
            i += 1
        else:
            regex += re.escape(pattern[i]) if pattern[i] != "?" else "[^/]"
            i += 1
    parts = path.split("/")
    return any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1))


def ignored(path: str) -> bool:
    result = False
    for negate, pattern in ignore_patterns():
        if _match(pattern, path):
            result = not negate
    return result


def test_dockerignore_matcher_follows_dockers_rules():
    assert _match("target", "target/release/adapter")
    assert _match("**/*.zip", "target/lambda/sleep/bootstrap.zip")
    assert not _match("deploy/*", "deployment")


def test_build_context_keeps_sources_and_drops_outputs():
    with open(os.path.join(REPO, "Cargo.toml"), "rb") as f:
        members = tomllib.load(f)["workspace"]["members"]
    for path in ["Cargo.toml", "Cargo.lock", "deploy/docker/entrypoint"] + [f"{m}/Cargo.toml" for m in members]:
        assert os.path.exists(os.path.join(REPO, path)), path
        assert not ignored(path), f"{path} is needed by the build but .dockerignore drops it"
    for path in ["target/release/adapter", ".git/HEAD", "deploy/venv/bin/python", "deploy/__main__.py",
                 "deploy/docker/entrypoint_test.sh", "target/lambda/enqueue/bootstrap.zip",
                 "README.md", "adapter/README.md", "compose.yaml", "docker-bake.hcl"]:
        assert ignored(path), f"{path} should not be sent to the Docker daemon"


def test_dependencies_are_cooked_before_sources_are_copied(commands):
    s = stages(commands)
    assert list(s) == ["chef", "planner", "builder", "runtime"]
    builder = [(c.cmd, " ".join(c.value)) for c in s["builder"]]
    cook = next(i for i, (cmd, v) in enumerate(builder) if cmd == "RUN" and 'cargo chef cook --profile "$PROFILE"' in v)
    copy_all = next(i for i, (cmd, v) in enumerate(builder) if cmd == "COPY" and v == ". .")
    build = next(i for i, (cmd, v) in enumerate(builder) if cmd == "RUN" and 'cargo build --profile "$PROFILE" --locked' in v)
    assert cook < copy_all < build
    assert builder[0] == ("ARG", "PROFILE=release")
    assert builder[1] == ("COPY", "/src/recipe.json recipe.json")
    for binary in ("adapter", "enqueue", "sleep"):
        assert f"--bin {binary}" in builder[build][1]
        assert f"--bin {binary}" in builder[cook][1]


def test_no_syntax_line_so_no_frontend_image_is_pulled():
    # A `# syntax=` directive makes BuildKit pull a frontend image: a registry the build must not need.
    with open(os.path.join(REPO, "Dockerfile"), encoding="utf-8") as f:
        assert not any(re.match(r"#\s*syntax\s*=", line) for line in f)


def test_runtime_image_is_small_non_root_and_runs_the_entrypoint(commands):
    runtime = stages(commands)["runtime"]
    first = next(c for c in commands if c.cmd == "FROM" and c.value[-1] == "runtime")
    assert first.value[0].startswith("debian:") and first.value[0].endswith("-slim")
    by_cmd = {c.cmd: c for c in runtime}
    assert by_cmd["USER"].value[0].split(":")[0] not in ("0", "root")
    # The task definitions state the image's user; the two must agree.
    assert by_cmd["USER"].value[0] == CONTAINER_USER
    assert by_cmd["ENTRYPOINT"].value == ("/app/entrypoint",)
    assert by_cmd["HEALTHCHECK"].value == ("CMD", "/app/adapter", "healthcheck")
    copies = [c for c in runtime if c.cmd == "COPY"]
    assert any(c.flags == ("--from=builder",) and c.value == ("/out/", "/app/") for c in copies)
    assert any(c.value == ("deploy/docker/entrypoint", "/app/entrypoint") for c in copies)
    # The adapter binary must not run as root: USER comes after everything that needs root.
    names = [c.cmd for c in runtime]
    assert names.index("USER") > max(i for i, n in enumerate(names) if n in ("RUN", "COPY"))


def test_rust_toolchain_is_at_least_the_workspace_minimum(commands):
    with open(os.path.join(REPO, "Cargo.toml"), "rb") as f:
        minimum = tomllib.load(f)["workspace"]["package"]["rust-version"]
    arg = next(c.value[0] for c in commands if c.cmd == "ARG" and c.value[0].startswith("RUST_VERSION="))
    version = arg.split("=", 1)[1]
    assert tuple(map(int, version.split("."))) >= tuple(map(int, minimum.split(".")))


def test_entrypoint_is_posix_sh_and_executable():
    path = os.path.join(REPO, "deploy/docker/entrypoint")
    with open(path, encoding="utf-8") as f:
        assert f.readline().strip() == "#!/bin/sh"
    assert os.access(path, os.X_OK)
