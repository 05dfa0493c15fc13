#!/usr/bin/env bash
# Run the unchanged MLflow iris example against a kiln server started on its embedded defaults
# (.kiln/kiln.db and .kiln/artifacts under a throwaway working directory).
#
#   examples/iris-mlflow/run.sh                          # builds kiln (release) first
#   KILN_BIN=target/debug/kiln examples/iris-mlflow/run.sh
#
# Knobs: KILN_BIN (skip the build), KILN_IRIS_WORKDIR (keep the store there instead of a temp
# dir), KILN_VENV (the Python venv, see scripts/setup-python.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

if [[ -z "${KILN_BIN:-}" ]]; then
    echo "==> cargo build --release -p kiln" >&2
    (cd "$repo" && cargo build --release -p kiln)
    target="${CARGO_TARGET_DIR:-$repo/target}"
    [[ "$target" = /* ]] || target="$repo/$target"
    KILN_BIN="$target/release/kiln"
fi
[[ "$KILN_BIN" = /* ]] || KILN_BIN="$repo/$KILN_BIN"
[[ -x "$KILN_BIN" ]] || { echo "kiln binary not found at $KILN_BIN" >&2; exit 1; }

venv="$("$repo/scripts/setup-python.sh" | tail -n1)"
python="$venv/bin/python"

if [[ -n "${KILN_IRIS_WORKDIR:-}" ]]; then
    workdir="$KILN_IRIS_WORKDIR"
    mkdir -p "$workdir"
    cleanup_workdir=false
else
    workdir="$(mktemp -d /tmp/kiln-iris.XXXXXX)"
    cleanup_workdir=true
fi
workdir="$(cd "$workdir" && pwd)"

port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port"
server_pid=""

cleanup() {
    local rc=$?
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ $rc -ne 0 && -f "$workdir/server.log" ]]; then
        echo "--- kiln server log ($workdir/server.log), last lines:" >&2
        tail -n 50 "$workdir/server.log" >&2 || true
    fi
    if $cleanup_workdir; then
        rm -rf "$workdir"
    fi
    exit $rc
}
trap cleanup EXIT

echo "==> kiln server on $url (working dir $workdir)" >&2
(cd "$workdir" && exec "$KILN_BIN" server --host 127.0.0.1 --port "$port") >"$workdir/server.log" 2>&1 &
server_pid=$!

for _ in $(seq 300); do
    if "$python" -c 'import sys, urllib.request; sys.exit(urllib.request.urlopen(sys.argv[1], timeout=1).read().strip() != b"OK")' "$url/health" 2>/dev/null; then
        break
    fi
    kill -0 "$server_pid" 2>/dev/null || { echo "kiln server exited during startup" >&2; exit 1; }
    sleep 0.1
done

echo "==> python train.py (MLFLOW_TRACKING_URI=$url)" >&2
export MLFLOW_TRACKING_URI="$url"
export MLFLOW_HTTP_REQUEST_MAX_RETRIES="${MLFLOW_HTTP_REQUEST_MAX_RETRIES:-0}"
export MLFLOW_HTTP_REQUEST_TIMEOUT="${MLFLOW_HTTP_REQUEST_TIMEOUT:-60}"
(cd "$workdir" && "$python" "$here/train.py") | tee "$workdir/train.log"
run_id="$(sed -n 's/^run_id=\([0-9a-f]\{32\}\)$/\1/p' "$workdir/train.log" | tail -n1)"
[[ -n "$run_id" ]] || { echo "train.py printed no run_id" >&2; exit 1; }

echo "==> kiln runs show $run_id" >&2
"$KILN_BIN" runs show "$run_id" --tracking-uri "$url"
echo "==> iris example OK" >&2
