#!/usr/bin/env bash
# kiln serve vs `mlflow models serve` vs a minimal axum endpoint (the ceiling), on one churn
# model, with wrk at concurrency 1 and 32, plus a hot swap under load (see bench/README.md,
# section Serve).
#
#   bench/serve/run.sh            # 3 repetitions, 10 s phases (~10 min after the first setup)
#   bench/serve/run.sh --quick    # 1 repetition, 5 s phases (~4 min)
#
# Extra arguments go to bench/serve/bench.py (--reps N, --secs S, --rows N, --sk-trees N,
# --kiln-trees N, --skip-mlflow, --keep, --out FILE). Environment:
#   KILN_BIN                use this kiln binary instead of building one
#   KILN_CEILING            use this ceiling example binary instead of building one
#   CARGO_TARGET_DIR        where to build (default: <repo>/target)
#   KILN_BENCH_SERVE_VENV   the peers' venv (default: ~/.cache/kiln-bench-serve-venv)
#   KILN_GEN_CHURN          the table generator (default: /work/shared/bench-data/gen_churn.py)
#
# Installs what it needs: wrk (apt), a venv with bench/serve/requirements.txt (mlflow,
# scikit-learn, skl2onnx, onnx, pandas; pip from PyPI). Results: a table on stdout and
# bench/results/serve-<date>[-quick].json.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${KILN_BENCH_SERVE_VENV:-$HOME/.cache/kiln-bench-serve-venv}"
req="$here/requirements.txt"

log() { echo "bench: $*" >&2; }

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "$@" >&2 || { apt-get update -q >&2 && apt-get install -y -q "$@" >&2; }
}

command -v wrk >/dev/null 2>&1 || { log "installing wrk"; apt_install wrk; }
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    log "installing python3-venv"
    apt_install python3-venv
fi

# --- peers' venv (a stamp holds the hash of requirements.txt)
hash="$(sha256sum "$req" | cut -d' ' -f1)"
stamp="$venv/.kiln-bench-serve.sha256"
if [[ ! -x "$venv/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$hash" ]]; then
    log "installing $req into $venv (a few minutes the first time)"
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2
    "$venv/bin/python" -c 'import mlflow, sklearn, skl2onnx, onnx, pandas' >&2
    echo "$hash" >"$stamp"
fi

# --- kiln and the ceiling server (release, built once)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
if [[ -z "${KILN_BIN:-}" || -z "${KILN_CEILING:-}" ]]; then
    log "cargo build --release -p kiln, -p kiln-serve --example ceiling (target dir $CARGO_TARGET_DIR)"
    (cd "$repo" && cargo build --release -q -p kiln && cargo build --release -q -p kiln-serve --example ceiling)
fi
kiln="${KILN_BIN:-$CARGO_TARGET_DIR/release/kiln}"
ceiling="${KILN_CEILING:-$CARGO_TARGET_DIR/release/examples/ceiling}"
for bin in "$kiln" "$ceiling"; do
    [[ -x "$bin" ]] || { log "error: no binary at $bin"; exit 1; }
done

log "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
exec "$venv/bin/python" -u "$here/bench.py" --kiln "$kiln" --ceiling "$ceiling" \
    --mlflow "$venv/bin/mlflow" --python "$venv/bin/python" \
    --gen "${KILN_GEN_CHURN:-/work/shared/bench-data/gen_churn.py}" "$@"
