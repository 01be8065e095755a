#!/bin/sh
# Tests deploy/docker/entrypoint (the image's /app/entrypoint) against a stub adapter that prints
# its arguments, one per line, and the variables the entrypoint may set. POSIX sh, run with dash
# when present (Debian's /bin/sh, the image's shell). Quiet on success; exits 1 on the first failure.
set -eu

here="$(cd "$(dirname "$0")" && pwd)"
entrypoint="$here/entrypoint"
shell="$(command -v dash || command -v sh)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cat >"$work/adapter" <<'STUB'
#!/bin/sh
echo "pid=$$"
echo "queue=${ADAPTER_QUEUE_URL:-}"
for arg in "$@"; do echo "arg=$arg"; done
STUB
chmod +x "$work/adapter"

failures=0
# run ENV... [-- ARGS...]: the entrypoint with only ENV set among the variables it reads.
run() {
  (
    unset SERVICE_ROLE QUEUE_URL ADAPTER_QUEUE_URL
    export APP_DIR="$work"
    while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do export "$1"; shift; done
    [ "$#" -eq 0 ] || shift
    exec "$shell" "$entrypoint" "$@"
  )
}
# check NAME EXPECTED_STATUS EXPECTED_OUTPUT ENV... [-- ARGS...]
check() {
  name="$1" want_status="$2" want="$3"
  shift 3
  status=0
  run "$@" >"$work/out" 2>"$work/stderr" || status=$?
  got="$(grep -v '^pid=' "$work/out" || true)"
  if [ "$status" != "$want_status" ] || [ "$got" != "$want" ]; then
    printf 'FAIL %s\n  status: want %s got %s\n  want:\n%s\n  got:\n%s\n  stderr: %s\n' \
      "$name" "$want_status" "$status" "$want" "$got" "$(cat "$work/stderr")" >&2
    failures=$((failures + 1))
  fi
}
lines() { printf '%s\n' "$@"; }

check "api role" 0 "$(lines "queue=" arg=http arg=-- "arg=$work/enqueue")" \
  SERVICE_ROLE=api
check "worker role maps QUEUE_URL" 0 "$(lines "queue=http://q/1/tasks" arg=sqs arg=-- "arg=$work/sleep")" \
  SERVICE_ROLE=worker QUEUE_URL=http://q/1/tasks
check "ADAPTER_QUEUE_URL wins over QUEUE_URL" 0 "$(lines "queue=http://a/1/x" arg=sqs arg=-- "arg=$work/sleep")" \
  SERVICE_ROLE=worker QUEUE_URL=http://q/1/tasks ADAPTER_QUEUE_URL=http://a/1/x
check "flags after a role go before --" 0 \
  "$(lines "queue=" arg=sqs arg=--batch-size arg=5 arg=-- "arg=$work/sleep")" \
  SERVICE_ROLE=worker -- --batch-size 5
check "arguments pass through unchanged" 0 \
  "$(lines "queue=" arg=http arg=--listen "arg=0.0.0.0:9000" arg=-- arg=/app/enqueue "arg=a b")" \
  -- http --listen 0.0.0.0:9000 -- /app/enqueue "a b"
check "arguments win over SERVICE_ROLE" 0 "$(lines "queue=" arg=healthcheck)" \
  SERVICE_ROLE=worker -- healthcheck
check "flags without a role go to the adapter" 0 "$(lines "queue=" arg=--version)" \
  -- --version
check "unknown role" 64 "" SERVICE_ROLE=foo
if ! grep -q "SERVICE_ROLE='foo'.*allowed: api or worker" "$work/stderr"; then
  echo "FAIL unknown role: message does not name SERVICE_ROLE and what is allowed: $(cat "$work/stderr")" >&2
  failures=$((failures + 1))
fi
check "nothing to do" 64 ""
if ! grep -q "usage:" "$work/stderr"; then
  echo "FAIL nothing to do: no usage message" >&2
  failures=$((failures + 1))
fi

# exec, not a child: the adapter must be the process ECS signals.
out="$(APP_DIR="$work" SERVICE_ROLE=api "$shell" -c 'echo "outer=$$"; exec "$0" "$1"' "$shell" "$entrypoint")"
outer="$(printf '%s\n' "$out" | sed -n 's/^outer=//p')"
inner="$(printf '%s\n' "$out" | sed -n 's/^pid=//p')"
if [ -z "$outer" ] || [ "$outer" != "$inner" ]; then
  echo "FAIL exec: the adapter ran as pid $inner, not as the entrypoint's pid $outer" >&2
  failures=$((failures + 1))
fi

[ "$failures" = 0 ] || { echo "entrypoint: $failures test(s) failed" >&2; exit 1; }
