#!/usr/bin/env bash
# The full test run, as CI does it (`.ci/run` execs this):
#   format and lint, build, Rust tests, the Python MLflow-compatibility suite against the real
#   MLflow client (sqlite + local files, and PostgreSQL + S3 via scripts/services.sh), and the
#   README's examples (churn release loop, MLflow iris) with the debug binary.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -k flows -x     # arguments go to pytest
#
# Knobs: CARGO_TARGET_DIR (honoured), KILN_VENV, KILN_PG_PORT, KILN_MOTO_PORT.
# With CI=true, missing PostgreSQL/S3 services fail the Python tests instead of skipping them.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

start=$SECONDS
section() {
    printf '\n==== %s  [%ds]\n' "$*" "$((SECONDS - start))"
}

section "Python venv (scripts/setup-python.sh)"
venv="$(scripts/setup-python.sh | tail -n1)"
"$venv/bin/python" -c 'import mlflow, sys; print(f"python {sys.version.split()[0]}, mlflow {mlflow.__version__}")'

section "Services: PostgreSQL + moto S3 (scripts/services.sh)"
trap 'scripts/services.sh stop || true' EXIT
services_env="$(scripts/services.sh start)"
eval "$services_env"
echo "$services_env"
if [[ "${CI:-}" == "true" ]]; then
    export KILN_REQUIRE_SERVICES=1
fi

target="${CARGO_TARGET_DIR:-$repo/target}"
[[ "$target" = /* ]] || target="$repo/$target"
export KILN_BIN="$target/debug/kiln"

section "cargo fmt --all --check"
cargo fmt --all --check

section "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

section "cargo build -p kiln"
cargo build -p kiln
echo "KILN_BIN=$KILN_BIN"

section "cargo test --workspace"
cargo test --workspace

section "pytest tests/python (MLflow $("$venv/bin/python" -c 'import mlflow; print(mlflow.__version__)') client against kiln)"
"$venv/bin/python" -m pytest tests/python -q "$@"

section "examples/churn/run.sh (the README's main command)"
examples/churn/run.sh

section "examples/iris-mlflow/run.sh"
examples/iris-mlflow/run.sh

section "all checks passed"
