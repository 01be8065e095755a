# Shared helpers for the scripts in this folder. Source it; do not run it.
# Everything here is plain bash so a fresh machine needs nothing but Python and cargo.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Tools the scripts install (LocalStack's venv, cargo-lambda) live in a per-user cache so a second
# clone reuses them; per-run state (pid files, logs) lives under target/, which git ignores.
TOOLS_DIR="${TASKS_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lambda-ecs-tasks}"
STATE_DIR="${TASKS_STATE_DIR:-$REPO_ROOT/target/run}"

# .env (see .env.example): KEY=VALUE lines, as `docker run --env-file` reads them. A variable already
# set in the environment wins over the file; a line that is not KEY=VALUE stops the script.
if [ -f "$REPO_ROOT/.env" ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%$'\r'}"
    case "$line" in '' | '#'*) continue ;; esac
    key="${line%%=*}"
    if [ "$key" = "$line" ] || ! [[ "$key" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
      printf 'error: %s/.env: not KEY=VALUE: %s\n' "$REPO_ROOT" "$line" >&2; exit 1
    fi
    [ -n "${!key+x}" ] || export "$key=${line#*=}"
  done <"$REPO_ROOT/.env"
  unset line key
fi

# LocalStack defaults, the same values the README, the tests and `cargo lambda watch` use.
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-$AWS_REGION}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"

log() { printf '%s\n' "$*" >&2; }
# usage SCRIPT: the comment block at the top of SCRIPT (after the #! line), without the '# '.
usage() { sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$1"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# `SCRIPT -h` or `SCRIPT --help`, for every script: its usage, and nothing else (no install, no
# build, no start; `scripts/bench --help` must not start a 13-minute run). Sourced without
# arguments, lib.sh sees the script's own.
case "${1:-}" in -h | --help) usage "$0"; exit 0 ;; esac

# find_python prints a Python 3.12+ interpreter, or fails with a message that says what to install.
# pyenv shims for python3.13 exist on PATH but fail outside a pyenv-managed folder, so every
# candidate is tried by running it, not by `command -v`.
find_python() {
  local candidates=("${TASKS_PYTHON:-}" python3.13 python3.12 python3)
  if command -v pyenv >/dev/null 2>&1; then
    local root; root="$(pyenv root)"
    candidates+=("$root"/versions/3.13*/bin/python3 "$root"/versions/3.12*/bin/python3)
  fi
  local py
  for py in "${candidates[@]}"; do
    [ -n "$py" ] || continue
    if "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then
      printf '%s\n' "$py"; return 0
    fi
  done
  die "LocalStack needs Python 3.12 or newer and none was found (tried python3.13, python3.12, python3 and pyenv's versions). Install one (e.g. 'pyenv install 3.13') or set TASKS_PYTHON to its path."
}

# free_port prints a TCP port free on 127.0.0.1 now (the kernel's choice).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for CMD... runs CMD until it succeeds, for at most $WAIT_SECONDS (default 60).
wait_for() {
  local deadline=$((SECONDS + ${WAIT_SECONDS:-60}))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}
