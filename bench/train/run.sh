#!/usr/bin/env bash
# kiln's GBDT and logistic regression vs scikit-learn and LightGBM on the 1M-row churn table
# (see bench/README.md, section Train).
#
#   bench/train/run.sh            # 3 repetitions (~8 min on a quiet 2-core machine)
#   bench/train/run.sh --quick    # 1 repetition
#
# Extra arguments go to bench/train/bench.py (--reps N, --rows N, --trees N, --leaves N,
# --bins N, --rate X, --predict-reps N, --single N, --skip-logistic, --out FILE). Environment:
#   KILN_BIN                use this kiln binary instead of building one
#   KILN_PREDICT_LATENCY    use this predict_latency example binary instead of building one
#   CARGO_TARGET_DIR        where to build kiln (default: <repo>/target)
#   KILN_BENCH_TRAIN_VENV   the peers' venv (default: ~/.cache/kiln-bench-venv)
#   KILN_BENCH_DATA         where the generated table and its split are cached
#                           (default: ~/.cache/kiln-bench-data)
#   KILN_GEN_CHURN          the generator (default: /work/shared/bench-data/gen_churn.py)
#
# Installs what it needs: a venv with bench/train/requirements.txt (scikit-learn, lightgbm==4.7.0,
# pandas, numpy, pyarrow; pip from PyPI). Results: a table on stdout and
# bench/results/train-<date>[-quick].json.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${KILN_BENCH_TRAIN_VENV:-$HOME/.cache/kiln-bench-venv}"
req="$here/requirements.txt"

log() { echo "bench: $*" >&2; }

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    log "installing python3-venv"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q python3-venv >&2 || { apt-get update -q >&2 && apt-get install -y -q python3-venv >&2; }
fi

# --- peers' venv (a stamp holds the hash of requirements.txt)
hash="$(sha256sum "$req" | cut -d' ' -f1)"
stamp="$venv/.kiln-bench-train.sha256"
if [[ ! -x "$venv/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$hash" ]]; then
    log "installing $req into $venv (a few minutes the first time)"
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2
    "$venv/bin/python" -c 'import sklearn, lightgbm, pandas, pyarrow' >&2
    echo "$hash" >"$stamp"
fi

# --- kiln (release) and the predict_latency example
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
if [[ -z "${KILN_BIN:-}" || -z "${KILN_PREDICT_LATENCY:-}" ]]; then
    log "cargo build --release -p kiln, -p kiln-train --example predict_latency (target dir $CARGO_TARGET_DIR)"
    (cd "$repo" && cargo build --release -q -p kiln && cargo build --release -q -p kiln-train --example predict_latency)
fi
kiln="${KILN_BIN:-$CARGO_TARGET_DIR/release/kiln}"
predict="${KILN_PREDICT_LATENCY:-$CARGO_TARGET_DIR/release/examples/predict_latency}"
for bin in "$kiln" "$predict"; do
    [[ -x "$bin" ]] || { log "error: no binary at $bin"; exit 1; }
done

exec "$venv/bin/python" -u "$here/bench.py" --kiln "$kiln" --predict-latency "$predict" \
    --python "$venv/bin/python" "$@"
