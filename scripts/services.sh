#!/usr/bin/env bash
# Throwaway backing services for kiln's tests: a PostgreSQL cluster and a moto S3 server,
# both on 127.0.0.1 only.
#
#   eval "$(scripts/services.sh start)"   # (re)start both, print `export …` lines on stdout
#   scripts/services.sh env               # print the `export …` lines again
#   scripts/services.sh stop              # stop both and remove their data
#
# Knobs: KILN_PG_PORT (54329), KILN_MOTO_PORT (5055), KILN_VENV (<repo>/.venv, for moto and boto3).
# Logs: /tmp/kiln-pg-<port>/postgres.log and /tmp/kiln-moto-<port>.log.
# Everything but the export lines goes to stderr.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pg_port="${KILN_PG_PORT:-54329}"
moto_port="${KILN_MOTO_PORT:-5055}"
venv="${KILN_VENV:-$repo/.venv}"
pg_dir="/tmp/kiln-pg-$pg_port"
pg_data="$pg_dir/data"
pg_sock="$pg_dir/sock"
pg_role="postgres"   # superuser name inside the cluster (initdb -U), not the OS user
moto_pidfile="/tmp/kiln-moto-$moto_port.pid"
moto_log="/tmp/kiln-moto-$moto_port.log"
bucket="${KILN_TEST_S3_BUCKET:-kiln-test}"

log() { echo "services: $*" >&2; }
die() { log "error: $*"; exit 1; }

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q "$@" >&2; then
        apt-get update -q >&2
        apt-get install -y -q "$@" >&2
    fi
}

# Directory holding initdb/pg_ctl/postgres; installs PostgreSQL from Debian when absent.
pg_bindir() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        if [[ -x "$d/pg_ctl" && -x "$d/initdb" && -x "$d/postgres" ]]; then
            echo "$d"
            return
        fi
    done
    if command -v pg_ctl >/dev/null && command -v initdb >/dev/null && command -v postgres >/dev/null; then
        dirname "$(command -v pg_ctl)"
        return
    fi
    return 1
}

ensure_postgres() {
    if ! pg_bindir >/dev/null || ! command -v psql >/dev/null; then
        [[ $EUID -eq 0 ]] || die "PostgreSQL is not installed and I am not root to apt-get install it"
        log "installing PostgreSQL from Debian"
        apt_install postgresql postgresql-client
    fi
}

# PostgreSQL refuses to run as root: as root, run the cluster as an unprivileged OS user.
pg_os_user() {
    if [[ $EUID -ne 0 ]]; then
        id -un
        return
    fi
    if ! id -u postgres >/dev/null 2>&1; then
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin postgres >&2
    fi
    echo postgres
}

as_pg() {
    local user="$1"
    shift
    if [[ $EUID -eq 0 ]]; then
        runuser -u "$user" -- "$@"
    else
        "$@"
    fi
}

print_env() {
    cat <<EOF
export KILN_TEST_PG_URL='postgresql://$pg_role@127.0.0.1:$pg_port/postgres'
export KILN_TEST_S3_ENDPOINT='http://127.0.0.1:$moto_port'
export KILN_TEST_S3_BUCKET='$bucket'
export AWS_ACCESS_KEY_ID='testing'
export AWS_SECRET_ACCESS_KEY='testing'
export AWS_DEFAULT_REGION='us-east-1'
export AWS_ALLOW_HTTP='true'
EOF
}

stop_pg() {
    if [[ -d "$pg_dir" ]]; then
        local bindir user
        if bindir="$(pg_bindir)" && [[ -f "$pg_data/postmaster.pid" ]]; then
            user="$(stat -c %U "$pg_data")"
            log "stopping PostgreSQL in $pg_data"
            as_pg "$user" "$bindir/pg_ctl" -D "$pg_data" -m immediate -w -t 30 stop >&2 || true
            # A postmaster whose pid file survived pg_ctl: end that process only.
            if [[ -f "$pg_data/postmaster.pid" ]]; then
                local pid
                pid="$(head -n1 "$pg_data/postmaster.pid" || true)"
                if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
                    kill -KILL "$pid" 2>/dev/null || true
                fi
            fi
        fi
        rm -rf "$pg_dir"
    fi
}

stop_moto() {
    if [[ -f "$moto_pidfile" ]]; then
        local pid
        pid="$(cat "$moto_pidfile" || true)"
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            log "stopping moto (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$moto_pidfile"
    fi
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_pg() {
    ensure_postgres
    local bindir user
    bindir="$(pg_bindir)"
    user="$(pg_os_user)"
    if port_in_use "$pg_port"; then
        die "port $pg_port is taken by something I did not start (set KILN_PG_PORT)"
    fi
    log "starting PostgreSQL ($("$bindir/postgres" --version)) on 127.0.0.1:$pg_port as OS user $user"
    mkdir -p "$pg_dir"
    chmod 755 "$pg_dir"
    mkdir -p "$pg_data" "$pg_sock"
    chown "$user" "$pg_data" "$pg_sock"
    chmod 700 "$pg_data"
    as_pg "$user" "$bindir/initdb" -D "$pg_data" -U "$pg_role" --auth=trust \
        --encoding=UTF8 --locale=C.UTF-8 >"$pg_dir/initdb.log" 2>&1 \
        || as_pg "$user" "$bindir/initdb" -D "$pg_data" -U "$pg_role" --auth=trust \
            --encoding=UTF8 --no-locale >"$pg_dir/initdb.log" 2>&1 \
        || { cat "$pg_dir/initdb.log" >&2; die "initdb failed"; }
    touch "$pg_dir/postgres.log"
    chown "$user" "$pg_dir/postgres.log"
    if ! as_pg "$user" "$bindir/pg_ctl" -D "$pg_data" -l "$pg_dir/postgres.log" -w -t 60 \
        -o "-p $pg_port -h 127.0.0.1 -k $pg_sock -c max_connections=200" start >&2 </dev/null; then
        cat "$pg_dir/postgres.log" >&2
        die "PostgreSQL did not start"
    fi
    local url="postgresql://$pg_role@127.0.0.1:$pg_port/postgres"
    for _ in $(seq 100); do
        if psql "$url" -Atqc 'SELECT 1' >/dev/null 2>&1; then
            log "PostgreSQL ready at $url"
            return
        fi
        sleep 0.2
    done
    cat "$pg_dir/postgres.log" >&2
    die "PostgreSQL does not answer at $url"
}

start_moto() {
    [[ -x "$venv/bin/moto_server" ]] || "$repo/scripts/setup-python.sh" >/dev/null
    if port_in_use "$moto_port"; then
        die "port $moto_port is taken by something I did not start (set KILN_MOTO_PORT)"
    fi
    log "starting moto S3 on 127.0.0.1:$moto_port"
    # setsid + closed stdio: the server must not hold the caller's $(…) pipe open.
    setsid "$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" </dev/null >"$moto_log" 2>&1 &
    echo $! >"$moto_pidfile"
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 \
        "$venv/bin/python" - "http://127.0.0.1:$moto_port" "$bucket" >&2 <<'PY' || { cat "$moto_log" >&2; die "moto did not start"; }
import sys, time
import boto3, botocore.exceptions

endpoint, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=endpoint)
deadline = time.time() + 30
while True:
    try:
        s3.list_buckets()
        break
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError):
        if time.time() > deadline:
            raise
        time.sleep(0.2)
s3.create_bucket(Bucket=bucket)
print(f"services: moto ready at {endpoint}, bucket {bucket!r} created")
PY
}

cmd="${1:-}"
case "$cmd" in
start)
    stop_moto
    stop_pg
    start_pg
    start_moto
    print_env
    ;;
stop)
    stop_moto
    stop_pg
    ;;
env)
    print_env
    ;;
*)
    echo "usage: $0 start|stop|env" >&2
    exit 2
    ;;
esac
