#!/usr/bin/env bash
# kiln vs MLflow tracking-server benchmark (see bench/README.md).
#
#   bench/tracking/run.sh            # full run: 100,000 runs for search, 2 GiB artifact, ~10 min
#   bench/tracking/run.sh --quick    # 10,000 runs, shorter phases, 512 MiB artifact, ~4 min
#
# Extra arguments go to bench.py (--runs N, --reps N, --upload-mib N, --mlflow-workers N,
# --skip-mlflow-upload, --keep). Environment:
#   KILN_BIN          use this kiln binary instead of building one
#   KILN_CEILING      use this `ceiling` example binary (the round-trip floor) instead of building one
#   CARGO_TARGET_DIR  where to build kiln (default: <repo>/target)
#   KILN_BENCH_VENV   the MLflow venv (default: <repo>/bench/.venv)
#   MLFLOW_WORKERS    uvicorn workers for `mlflow server` (default: 1)
#
# Installs what it needs: wrk and curl (apt), a venv with mlflow==3.17.2 (pip from PyPI).
# Results: a table on stdout and bench/out/tracking-<timestamp>.json.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${KILN_BENCH_VENV:-$repo/bench/.venv}"
mlflow_version="3.17.2"

log() { echo "bench: $*" >&2; }

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "$@" >&2 || { apt-get update -q >&2 && apt-get install -y -q "$@" >&2; }
}

# --- tools
missing=()
for tool in wrk curl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
fi
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    log "installing python3-venv"
    apt_install python3-venv
fi

# --- MLflow venv
if ! "$venv/bin/mlflow" --version 2>/dev/null | grep -q "$mlflow_version"; then
    log "creating $venv with mlflow==$mlflow_version (a few minutes the first time)"
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "mlflow==$mlflow_version" >&2
fi

# --- kiln, and the machine's round-trip floor (kiln-serve's `ceiling` example, --raw mode)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
if [[ -z "${KILN_BIN:-}" || -z "${KILN_CEILING:-}" ]]; then
    log "cargo build --release -p kiln, -p kiln-serve --example ceiling (target dir $CARGO_TARGET_DIR)"
    (cd "$repo" && cargo build --release -q -p kiln && cargo build --release -q -p kiln-serve --example ceiling)
fi
kiln="${KILN_BIN:-$CARGO_TARGET_DIR/release/kiln}"
floor="${KILN_CEILING:-$CARGO_TARGET_DIR/release/examples/ceiling}"
for bin in "$kiln" "$floor"; do
    [[ -x "$bin" ]] || { log "error: no binary at $bin"; exit 1; }
done

exec "$venv/bin/python" -u "$here/bench.py" --kiln "$kiln" --floor "$floor" --mlflow "$venv/bin/mlflow" "$@"
