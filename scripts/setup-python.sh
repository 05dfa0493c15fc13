#!/usr/bin/env bash
# Create (or refresh) the Python venv used by kiln's compatibility tests and examples.
#
#   scripts/setup-python.sh            # venv at <repo>/.venv
#   KILN_VENV=/some/dir scripts/setup-python.sh
#
# Idempotent: a stamp file inside the venv records a hash of scripts/requirements-test.txt
# (and of the interpreter version); when it matches, the script exits at once.
# Prints nothing on stdout except the venv path on the last line, so callers may use
# `VENV="$(scripts/setup-python.sh | tail -n1)"`.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${KILN_VENV:-$repo/.venv}"
req="$repo/scripts/requirements-test.txt"
python="${KILN_PYTHON:-python3}"

log() { echo "setup-python: $*" >&2; }

if ! command -v "$python" >/dev/null 2>&1; then
    log "error: $python not found"
    exit 1
fi

hash="$( { cat "$req"; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
stamp="$venv/.kiln-requirements.sha256"

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$hash" ]]; then
    echo "$venv"
    exit 0
fi

# The venv module is part of the standard library, but Debian's python3 splits it out.
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    log "installing python3-venv"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q python3-venv >&2 || { apt-get update -q >&2 && apt-get install -y -q python3-venv >&2; }
fi

if [[ ! -x "$venv/bin/python" ]]; then
    log "creating venv at $venv"
    "$python" -m venv "$venv" >&2
fi

log "installing $(grep -cv '^\s*\(#\|$\)' "$req") pinned requirements into $venv (a few minutes the first time)"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2
"$venv/bin/python" -c 'import mlflow, sklearn, pandas, pytest, requests, boto3, moto' >&2

echo "$hash" >"$stamp"
log "ready"
echo "$venv"
