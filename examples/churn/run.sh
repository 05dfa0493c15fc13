#!/usr/bin/env bash
# The customer-churn release loop, end to end through the kiln CLI on its embedded defaults
# (SQLite at .kiln/kiln.db and artifacts in .kiln/artifacts of a throwaway working directory).
# No Python: kiln and curl.
#
#   validate data → train v1 → evaluate with gates → register → promote to champion → serve →
#   predict with curl → train a better v2 → promote (gate passes, the server swaps to v2) →
#   train a worse v3 → promotion refused → rollback (the server goes back to v1)
#
#   examples/churn/run.sh                          # builds kiln (release) first
#   KILN_BIN=target/debug/kiln examples/churn/run.sh
#
# Knobs: KILN_BIN (skip the build), KILN_CHURN_WORKDIR (keep the store there instead of a temp dir).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

if [[ -z "${KILN_BIN:-}" ]]; then
    echo "==> cargo build --release --locked -p kiln" >&2
    (cd "$repo" && cargo build --release --locked -p kiln)
    target="${CARGO_TARGET_DIR:-$repo/target}"
    [[ "$target" = /* ]] || target="$repo/$target"
    KILN_BIN="$target/release/kiln"
fi
[[ "$KILN_BIN" = /* ]] || KILN_BIN="$repo/$KILN_BIN"
[[ -x "$KILN_BIN" ]] || { echo "kiln binary not found at $KILN_BIN" >&2; exit 1; }
command -v curl >/dev/null || { echo "this example needs curl (apt-get install curl)" >&2; exit 1; }

if [[ -n "${KILN_CHURN_WORKDIR:-}" ]]; then
    workdir="$KILN_CHURN_WORKDIR"
    mkdir -p "$workdir"
    cleanup_workdir=false
else
    workdir="$(mktemp -d /tmp/kiln-churn.XXXXXX)"
    cleanup_workdir=true
fi
workdir="$(cd "$workdir" && pwd)"
cp "$here/data/churn.csv" "$here/data/holdout.csv" "$here/schema.yaml" "$workdir/"
cd "$workdir"
# The embedded defaults, whatever the caller's environment says.
unset KILN_BACKEND_STORE_URI KILN_ARTIFACTS_DESTINATION KILN_TRACKING_URI

serve_pid=""
cleanup() {
    local rc=$?
    if [[ -n "$serve_pid" ]] && kill -0 "$serve_pid" 2>/dev/null; then
        kill -TERM "$serve_pid" 2>/dev/null || true
        wait "$serve_pid" 2>/dev/null || true
    fi
    if [[ $rc -ne 0 && -f "$workdir/serve.log" ]]; then
        echo "--- kiln serve log ($workdir/serve.log), last lines:" >&2
        tail -n 30 "$workdir/serve.log" >&2 || true
    fi
    if $cleanup_workdir; then
        rm -rf "$workdir"
    fi
    exit $rc
}
trap cleanup EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
kiln() {
    printf '$ kiln %s\n' "$*" >&2
    "$KILN_BIN" "$@"
}
fail() { echo "FAILED: $*" >&2; exit 1; }
# `kiln train --register … --json` prints the run; pull the registered version out of it.
version_of() { sed -n '/"registered"/,/}/s/.*"version": *"\([0-9][0-9]*\)".*/\1/p' "$1" | head -n1; }

step "1. Validate the data against its contract (schema.yaml): the unit test of the loop"
kiln data validate churn.csv --schema schema.yaml --junit validate-churn.xml
kiln data validate holdout.csv --schema schema.yaml --junit validate-holdout.xml

step "2. Train v1: gradient-boosted trees, 80/20 split, without the support-ticket count yet"
kiln train --data churn.csv --target churn --task classification --model gbdt \
    --split 0.8/0.2 --stratify --exclude support_calls \
    --experiment churn --run-name v1-no-tickets --register churn --json >train-v1.json
v1="$(version_of train-v1.json)"
[[ -n "$v1" ]] || fail "kiln train printed no registered version (train-v1.json)"
echo "registered churn v$v1" >&2

step "3. Evaluate v1 on the holdout with gates (non-zero exit when a gate fails; JUnit for CI)"
kiln evaluate --model "models:/churn/$v1" --data holdout.csv \
    --require "roc_auc>=0.75" --require "accuracy>=0.70" --junit gates-v1.xml

step "4. Promote v1 to champion (its gates are checked again on the holdout)"
kiln models promote churn "$v1" --alias champion --on holdout.csv --require "roc_auc>=0.75" \
    --reason "first release"

step "5. Serve models:/churn@champion (follows the alias, re-resolved every second)"
"$KILN_BIN" serve models:/churn@champion --port 0 --poll-interval 1s >serve.log 2>&1 &
serve_pid=$!
url=""
for _ in $(seq 300); do
    url="$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' serve.log | head -n1)"
    [[ -n "$url" ]] && break
    kill -0 "$serve_pid" 2>/dev/null || fail "kiln serve exited during startup"
    sleep 0.1
done
[[ -n "$url" ]] || fail "kiln serve did not start"
echo "kiln serve on $url" >&2

request='{"dataframe_split": {
  "columns": ["tenure_months", "monthly_charges", "total_charges", "support_calls", "avg_session_min",
              "days_since_login", "num_products", "age", "contract", "payment_method"],
  "data": [[2, 95.5, 190.0, 6, 8.5, 40.0, 1, 23, "month-to-month", "check"],
           [60, 45.0, 2700.0, 0, 35.0, 1.5, 4, 51, "two-year", "bank"]]}}'

# predict: POST the two customers, print the answer and the version that gave it.
predict() {
    curl -sS --fail-with-body -D headers.txt -H 'Content-Type: application/json' \
        --data "$request" "$url/invocations" >answer.json
    served="$(sed -n 's/^[Xx]-[Kk]iln-[Mm]odel-[Vv]ersion: *\([0-9]*\).*/\1/p' headers.txt)"
    echo "model version $served answered: $(cat answer.json)" >&2
}
# wait_for_version N: the server follows the alias within a poll interval.
wait_for_version() {
    for _ in $(seq 100); do
        predict 2>/dev/null
        [[ "$served" == "$1" ]] && return 0
        sleep 0.2
    done
    fail "the server still answers with v$served, expected v$1"
}

step "6. Predict with curl"
echo "\$ curl -X POST $url/invocations -H 'Content-Type: application/json' --data '<two customers>'" >&2
predict
[[ "$served" == "$v1" ]] || fail "expected v$v1 to answer, got '$served'"

step "7. Train v2 with every feature and more, slower-learning trees"
kiln train --data churn.csv --target churn --task classification --model gbdt \
    --split 0.8/0.2 --stratify --param n_trees=200 --param learning_rate=0.03 \
    --experiment churn --run-name v2-all-features --register churn --json >train-v2.json
v2="$(version_of train-v2.json)"
[[ -n "$v2" ]] || fail "kiln train printed no registered version (train-v2.json)"
echo "registered churn v$v2" >&2

step "8. Promote v2 only if it beats the champion on the holdout: the gate passes"
kiln models promote churn "$v2" --alias champion --must-beat champion --on holdout.csv \
    --require "roc_auc>=0.75" --markdown promote-v2.md
wait_for_version "$v2"
echo "the running server swapped to v$v2 without a restart" >&2

step "9. Train v3, a rushed model (2 stumps), and try to promote it: refused"
kiln train --data churn.csv --target churn --task classification --model gbdt \
    --split 0.8/0.2 --stratify --param n_trees=2 --param num_leaves=2 \
    --experiment churn --run-name v3-rushed --register churn --json >train-v3.json
v3="$(version_of train-v3.json)"
[[ -n "$v3" ]] || fail "kiln train printed no registered version (train-v3.json)"
set +e
kiln models promote churn "$v3" --alias champion --must-beat champion --on holdout.csv \
    --require "roc_auc>=0.75"
rc=$?
set -e
[[ $rc -eq 1 ]] || fail "promoting the worse v$v3 should exit 1, got $rc"
predict
[[ "$served" == "$v2" ]] || fail "a refused promotion must leave v$v2 serving, got '$served'"
echo "promotion refused (exit 1): champion stays v$v2" >&2

step "10. Something is wrong in production: roll the champion back"
kiln models rollback churn --alias champion --reason "support tickets feed delayed"
wait_for_version "$v1"
echo "the running server is back on v$v1" >&2

step "The registry remembers: versions, lineage and the alias history"
kiln models versions churn
kiln models show churn "$v2"
kiln models history churn --alias champion

echo >&2
echo "==> churn release loop OK (v$v1 → v$v2 → v$v3 refused → rollback to v$v1)" >&2
