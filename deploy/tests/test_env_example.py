""".env.example: the settings file the scripts read (scripts/lib.sh) and `docker run --env-file` takes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def entries() -> dict[str, str]:
    found = {}
    with open(os.path.join(REPO, ".env.example"), encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), line
            # docker's --env-file keeps quotes and spaces as they are: there must be none.
            assert not re.search(r"[\"' ]", value), line
            found[key] = value
    return found


def test_holds_the_localstack_defaults_the_scripts_use():
    assert entries() == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:4566", "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        "QUEUE_NAME": "tasks", "RUST_LOG": "info",
    }


def source_lib(tmp_path, env_text: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Sources a copy of scripts/lib.sh in a scratch repo holding `env_text` as its .env."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(os.path.join(REPO, "scripts", "lib.sh"), tmp_path / "scripts" / "lib.sh")
    (tmp_path / ".env").write_text(env_text)
    script = f'source "{tmp_path}/scripts/lib.sh"; echo "$QUEUE_NAME $AWS_REGION $RUST_LOG"'
    clean = {k: v for k, v in os.environ.items() if k not in ("QUEUE_NAME", "AWS_REGION", "RUST_LOG")}
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                          env={**clean, **env})


def test_lib_reads_dotenv_and_the_shell_wins(tmp_path):
    with open(os.path.join(REPO, ".env.example"), encoding="utf-8") as f:
        text = f.read().replace("QUEUE_NAME=tasks", "QUEUE_NAME=mine").replace("AWS_REGION=us-east-1", "AWS_REGION=eu-west-1")
    done = source_lib(tmp_path, text, RUST_LOG="debug")
    assert (done.returncode, done.stdout) == (0, "mine eu-west-1 debug\n"), done.stderr


def test_a_line_that_is_not_key_value_stops_with_its_text(tmp_path):
    done = source_lib(tmp_path, "QUEUE_NAME=ok\nexport FOO=bar\n")
    assert done.returncode == 1
    assert "not KEY=VALUE: export FOO=bar" in done.stderr
