#!/usr/bin/env python3
"""kiln vs MLflow tracking-server benchmark: same machine, same workload, one run.

Started by bench/tracking/run.sh, which installs wrk, builds kiln and makes the MLflow venv.
Standard library only. See bench/README.md for what is measured and how ratios are computed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LUA = HERE / "ingest.lua"
MIB = 1024 * 1024
SEED = 20261123
BATCH = 1000  # metrics per log-batch request (MLflow's per-request limit)
SMALL_RUNS = 2_000  # a second, small search experiment, in the same store: MLflow answers it, slowly

SEARCH_FILTER = "metrics.accuracy > 0.5"
SEARCH_ORDER = ["metrics.accuracy DESC"]
SEARCH_PAGE = 100

ROTATE = 20  # log-batch requests per run before moving to the next one (see ingest.lua)

# The ingest phases: key, request kind, connections, distinct keys per batch, label, unit, target.
PHASES = [
    ("log_metric_c1", "metric", 1, None, "log-metric, 1 keep-alive conn", "req/s", "log_metric"),
    ("log_metric_c8", "metric", 8, None, "log-metric, 8 keep-alive conns", "req/s", None),
    ("log_batch_wide", "batch", 1, 1000, "log-batch 1000 keys x 1 step", "metrics/s", "log_batch"),
    ("log_batch_deep", "batch", 1, 10, "log-batch 10 keys x 100 steps", "metrics/s", "log_batch"),
]

TARGETS = {
    "log_metric": 200.0,  # kiln / mlflow requests/s, one keep-alive connection
    "log_batch": 50.0,  # kiln / mlflow metrics/s
    "search_p50_ms": 20.0,  # kiln p50 at the full run count
    "rss_mib": 100.0,  # kiln peak RSS (VmHWM) over the whole run
    "upload_rss_growth_mib": 32.0,  # kiln peak-minus-before RSS while streaming the big body
}

ERRORS: list[dict] = []  # every non-2xx / failure seen, reported at the end


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def record_error(server: str, phase: str, endpoint: str, status, body: str) -> None:
    e = {"server": server, "phase": phase, "endpoint": endpoint, "status": status, "body": body[:600]}
    ERRORS.append(e)
    log(f"ERROR {server} {phase}: {endpoint} -> {status}: {body[:300]!r}")


def raw_floor_rps(floor_bin: str, secs: float, busy_poll_us: int = 100) -> float | None:
    """Requests/s over one keep-alive connection to a std::net responder that does no work: what
    loopback TCP and thread wake-ups cost on this machine before any server runs. By default it
    busy-polls its socket for 100 us before blocking, as `kiln server` does (--busy-poll); with 0
    it blocks at once, and pays for a sleeping CPU's wake-up on every request."""
    port = free_port()
    p = subprocess.Popen([floor_bin, "--raw", "--busy-poll", str(busy_poll_us), f"127.0.0.1:{port}"],
                         stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        out = subprocess.run(["wrk", "-t1", "-c1", f"-d{secs}s", f"http://127.0.0.1:{port}/"],
                             capture_output=True, text=True, timeout=secs + 60).stdout
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        return float(m.group(1)) if m else None
    finally:
        p.kill()
        p.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------ http


class Http:
    """One persistent keep-alive connection with TCP_NODELAY (like urllib3 under the mlflow client)."""

    def __init__(self, port: int, timeout: float = 300.0):
        self.port, self.timeout = port, timeout
        self.conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        c.connect()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return c

    def call(self, method: str, path: str, body=None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = self._connect()
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                return r.status, r.read()
            except (ConnectionError, http.client.HTTPException) as e:
                self.close()
                if attempt:
                    raise
                # the server closed the idle keep-alive connection (uvicorn does after 5 s): redo once
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body=None, *, server: str, phase: str) -> dict:
        status, payload = self.call(method, path, body)
        if not 200 <= status < 300:
            record_error(server, phase, f"{method} {path}", status, payload.decode(errors="replace"))
            raise RuntimeError(f"{server}: {method} {path} -> {status}")
        return json.loads(payload) if payload.strip() else {}

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# ---------------------------------------------------------------------------------------- server


def proc_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def proc_status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """utime + stime of one process, in seconds."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def proc_sched(pid: int) -> dict[int, tuple[int, int]]:
    """Per thread: (ns on a CPU, ns runnable but waiting for a CPU), from /proc/<pid>/task/*/schedstat.
    The second is the direct measure of how much other load on the machine delayed the server."""
    out = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tasks:
        try:
            f = Path(f"/proc/{pid}/task/{t}/schedstat").read_text().split()
            out[int(t)] = (int(f[0]), int(f[1]))
        except (OSError, IndexError, ValueError):
            pass
    return out


def sched_delta_s(a: dict, b: dict) -> tuple[float, float]:
    """(on-CPU s, waiting s) between two proc_sched snapshots, over the threads alive at the end
    (threads that exited in between are missed, so this can undercount, never go negative)."""
    run = sum(v[0] - a.get(t, (0, 0))[0] for t, v in b.items())
    wait = sum(v[1] - a.get(t, (0, 0))[1] for t, v in b.items())
    return run / 1e9, wait / 1e9


def proc_write_bytes(pid: int) -> int:
    """Bytes the process has caused to be written to storage (/proc/<pid>/io write_bytes)."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Server:
    def __init__(self, name: str, argv: list[str], port: int, workdir: Path, db: Path, artifacts: Path):
        self.name, self.argv, self.port = name, argv, port
        self.workdir, self.db, self.artifacts = workdir, db, artifacts
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"{name}.log"
        self.api = Http(port)
        self._tree: tuple[float, list[int]] = (0.0, [])

    def pids(self) -> list[int]:
        """The server's process tree, re-scanned at most every 5 s (a /proc scan is not free)."""
        if self.proc is None:
            return []
        t, pids = self._tree
        if time.monotonic() - t > 5.0 or not pids or pids[0] != self.proc.pid:
            pids = proc_tree(self.proc.pid)
            self._tree = (time.monotonic(), pids)
        return pids

    def start(self, timeout: float = 240.0) -> float:
        t0 = time.monotonic()
        env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=logf, stderr=subprocess.STDOUT, cwd=self.workdir, env=env, start_new_session=True
        )
        logf.close()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    c.close()
                    return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} did not answer /health within {timeout}s:\n{self.log_tail()}")

    def stop(self) -> None:
        self.api.close()
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
        self.proc = None

    def rss_kib(self) -> int:
        """Resident memory of the server's whole process tree (MLflow: CLI + uvicorn + job runner)."""
        return sum(proc_status_kib(p, "VmRSS") for p in self.pids())

    def pss_kib(self) -> int:
        """Sum of PSS over the process tree, so pages shared between MLflow's forked processes
        (CLI, uvicorn worker, job runner, huey consumers) count once. Expensive: reading
        smaps_rollup of one MLflow process costs milliseconds of CPU, so this is only called
        between phases, never while something is being timed."""
        return sum(proc_pss_kib(p) for p in self.pids())

    def serving_pid(self) -> int | None:
        """The process that answers HTTP: kiln's only process; MLflow's uvicorn worker."""
        pids = self.pids()
        for p in pids[1:]:
            try:
                if b"uvicorn" in Path(f"/proc/{p}/cmdline").read_bytes():
                    return p
            except OSError:
                pass
        return pids[0] if pids else None

    def sched(self) -> dict[int, tuple[int, int]]:
        """proc_sched of the serving process."""
        sp = self.serving_pid()
        return proc_sched(sp) if sp else {}

    def cpu_s(self) -> tuple[float, float]:
        """(CPU seconds of the serving process, CPU seconds of the whole live tree), user + system."""
        sp = self.serving_pid()
        return (proc_cpu_s(sp) if sp else 0.0), sum(proc_cpu_s(p) for p in self.pids())

    def hwm_kib(self) -> int:
        """Sum of each live process's own peak RSS (VmHWM); for kiln, one process."""
        return sum(proc_status_kib(p, "VmHWM") for p in self.pids())

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class RssSampler(threading.Thread):
    """Samples each server's RSS (VmRSS summed over its process tree; cheap) every `interval` s,
    a process tree of several processes only every `slow_every` ticks unless it is being traced;
    keeps the max per (server, phase)."""

    def __init__(self, servers: list[Server], interval: float = 0.1, slow_every: int = 10):
        super().__init__(daemon=True)
        self.servers, self.interval, self.slow_every = servers, interval, slow_every
        self.tick = 0
        self.phase = "startup"
        self.max: dict[str, dict[str, int]] = {s.name: {} for s in servers}
        self.trace: list[tuple[float, int]] | None = None
        self.trace_server: str | None = None
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            t = time.monotonic()
            self.tick += 1
            for s in self.servers:
                if len(s.pids()) > 1 and self.tick % self.slow_every and s.name != self.trace_server:
                    continue
                kib = s.rss_kib()
                with self.lock:
                    m = self.max[s.name]
                    m[self.phase] = max(m.get(self.phase, 0), kib)
                    if self.trace is not None and s.name == self.trace_server:
                        self.trace.append((t, kib))
            self.stop_flag.wait(self.interval)

    def set_phase(self, phase: str) -> None:
        with self.lock:
            self.phase = phase

    def start_trace(self, server: str) -> None:
        with self.lock:
            self.trace, self.trace_server = [], server

    def end_trace(self) -> list[tuple[float, int]]:
        with self.lock:
            t, self.trace, self.trace_server = self.trace or [], None, None
        return t


# ----------------------------------------------------------------------------------------- data


def gen_runs(n: int, seed: int):
    """A search data set, identical for both stores (fixed seed)."""
    rng = random.Random(seed)
    base = 1_700_000_000_000
    for i in range(n):
        run_id = "%032x" % rng.getrandbits(128)
        yield {
            "run_id": run_id,
            "name": f"run-{i}",
            "start": base + i * 1000,
            "accuracy": rng.random(),
            "loss": rng.random() * 3,
            "lr": rng.choice(["0.1", "0.01", "0.001"]),
            "team": rng.choice(["vision", "nlp", "tabular"]),
        }


def expected_top(n: int, seed: int) -> list[str]:
    """The first search page both servers should return: accuracy > 0.5, accuracy DESC,
    then start_time DESC, then run_id ASC (MLflow's implicit tie-break)."""
    rows = [(r["accuracy"], r["start"], r["run_id"]) for r in gen_runs(n, seed) if r["accuracy"] > 0.5]
    rows.sort(key=lambda x: (-x[0], -x[1], x[2]))
    return [r[2] for r in rows[:SEARCH_PAGE]]


def artifact_location(db: Path, eid: int) -> str:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT artifact_location FROM experiments WHERE experiment_id = ?", (eid,)).fetchone()[0]


def load_mlflow(db: Path, eid: int, n: int, seed: int, chunk: int = 10_000) -> None:
    """Direct inserts into MLflow's own schema (what SqlAlchemyStore.create_run/log_* write)."""
    loc = artifact_location(db, eid)
    c = sqlite3.connect(db)
    c.execute("PRAGMA synchronous=OFF")
    it = gen_runs(n, seed)
    while True:
        rows = [r for _, r in zip(range(chunk), it)]
        if not rows:
            break
        c.executemany(
            "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status,"
            " start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id, deleted_time)"
            " VALUES (?, ?, 'UNKNOWN', '', '', 'bench', 'FINISHED', ?, ?, '', 'active', ?, ?, NULL)",
            [(r["run_id"], r["name"], r["start"], r["start"] + 500, f"{loc}/{r['run_id']}/artifacts", eid) for r in rows],
        )
        mets = [(k, r[k], r["start"] + 100, r["run_id"]) for r in rows for k in ("accuracy", "loss")]
        c.executemany(
            "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, 0, 0)", mets
        )
        c.executemany(
            "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?, ?, ?, 0, 0, ?)",
            mets,
        )
        c.executemany(
            "INSERT INTO params (key, value, run_uuid) VALUES ('lr', ?, ?)", [(r["lr"], r["run_id"]) for r in rows]
        )
        tags = [(k, v, r["run_id"]) for r in rows for k, v in (("team", r["team"]), ("mlflow.runName", r["name"]))]
        c.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", tags)
        c.commit()
    c.close()


def load_kiln(db: Path, eid: int, n: int, seed: int, chunk: int = 10_000) -> None:
    """Direct inserts into kiln's schema (crates/kiln-store-sql/src/schema.rs)."""
    loc = artifact_location(db, eid)
    c = sqlite3.connect(db)
    c.execute("PRAGMA synchronous=OFF")
    it = gen_runs(n, seed)
    while True:
        rows = [r for _, r in zip(range(chunk), it)]
        if not rows:
            break
        c.executemany(
            "INSERT INTO runs (run_uuid, experiment_id, name, user_id, status, start_time, end_time, artifact_uri,"
            " lifecycle_stage, deleted_time) VALUES (?, ?, ?, 'bench', 'FINISHED', ?, ?, ?, 'active', NULL)",
            [(r["run_id"], eid, r["name"], r["start"], r["start"] + 500, f"{loc}/{r['run_id']}/artifacts") for r in rows],
        )
        mets = [(r["run_id"], k, r[k], r["start"] + 100) for r in rows for k in ("accuracy", "loss")]
        c.executemany(
            "INSERT INTO metrics (run_uuid, key, value, is_nan, timestamp, step) VALUES (?, ?, ?, 0, ?, 0)", mets
        )
        c.executemany(
            "INSERT INTO latest_metrics (run_uuid, experiment_id, key, value, is_nan, timestamp, step)"
            " VALUES (?, ?, ?, ?, 0, ?, 0)",
            [(m[0], eid, m[1], m[2], m[3]) for m in mets],
        )
        c.executemany(
            "INSERT INTO params (run_uuid, key, value) VALUES (?, 'lr', ?)", [(r["run_id"], r["lr"]) for r in rows]
        )
        tags = [(r["run_id"], k, v) for r in rows for k, v in (("team", r["team"]), ("mlflow.runName", r["name"]))]
        c.executemany("INSERT INTO tags (run_uuid, key, value) VALUES (?, ?, ?)", tags)
        c.commit()
    c.close()


# ---------------------------------------------------------------------------------------- phases


def run_wrk(server: Server, phase: str, kind: str, run_ids: list[str], secs: float, conns: int,
            keys: int | None = None, rotate: int = 0) -> dict:
    threads = min(conns, 2)
    env = dict(os.environ, BENCH_KIND=kind, BENCH_RUN_IDS=",".join(run_ids), BENCH_BATCH=str(BATCH),
               BENCH_KEYS=str(keys or BATCH), BENCH_ROTATE=str(rotate), BENCH_TS=str(int(time.time() * 1000)))
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{secs}s", "--timeout", "60s", "-s", str(LUA),
           f"http://127.0.0.1:{server.port}"]
    sp = server.serving_pid()
    cpu0, sch0, wb0 = server.cpu_s(), server.sched(), proc_write_bytes(sp) if sp else 0
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=secs + 120)
    cpu1, sch1, wb1 = server.cpu_s(), server.sched(), proc_write_bytes(sp) if sp else 0
    m = re.search(r"^BENCH_JSON (\{.*\})$", p.stdout, re.M)
    if p.returncode != 0 or not m:
        record_error(server.name, phase, "wrk", p.returncode, p.stdout[-400:] + p.stderr[-400:])
        return {"ok_per_s": 0.0, "requests": 0, "ok": 0, "secs": secs}
    r = json.loads(m.group(1))
    errs = re.search(r"BENCH_ERRORS_BEGIN\n(.*?)BENCH_ERRORS_END", p.stdout, re.S)
    socket_errs = r["err_connect"] + r["err_read"] + r["err_write"] + r["err_timeout"]
    if r["non2xx"] or socket_errs:
        first = errs.group(1).strip() if errs else ""
        for line in first.splitlines() or [""]:
            mm = re.match(r"(\S+) -> HTTP (\d+): (.*)", line)
            if mm:
                record_error(server.name, phase, f"POST {mm.group(1)}", int(mm.group(2)), mm.group(3))
        if socket_errs:
            record_error(server.name, phase, "wrk socket errors", "-",
                         f"connect={r['err_connect']} read={r['err_read']} write={r['err_write']} "
                         f"timeout={r['err_timeout']}")
        log(f"  {server.name} {phase}: {r['non2xx']} non-2xx of {r['requests']} requests")
    r["secs"] = r["duration_us"] / 1e6
    # Server CPU seconds (far less sensitive than wall time to other load on the machine): of the
    # process that serves HTTP, and of the whole tree (MLflow's job runner and huey consumers too).
    r["server_cpu_s"] = cpu1[0] - cpu0[0]
    r["server_tree_cpu_s"] = cpu1[1] - cpu0[1]
    # Time the serving process's threads were runnable but waited for a CPU (other load).
    r["server_on_cpu_s"], r["server_runq_wait_s"] = sched_delta_s(sch0, sch1)
    # Storage writes by the serving process (its SQLite journal/WAL, checkpoints, database file).
    r["server_write_bytes"] = wb1 - wb0
    r["ok"] = r["requests"] - r["non2xx"]
    r["ok_per_s"] = r["ok"] / r["secs"] if r["secs"] else 0.0
    # Secondary estimate, free of the request cut off at the deadline: connections / mean latency.
    r["busy_per_s"] = conns * 1e6 / r["lat_mean_us"] if r["lat_mean_us"] else 0.0
    return r


def create_run(server: Server, phase: str, name: str) -> str:
    body = {"experiment_id": "0", "run_name": name, "start_time": int(time.time() * 1000), "tags": []}
    return server.api.json("POST", "/api/2.0/mlflow/runs/create", body, server=server.name, phase=phase)["run"][
        "info"]["run_id"]


def count_metric_rows(server: Server, run_ids: list[str]) -> int:
    # kiln server acknowledges plain metric writes with an append to its metric journal and
    # folds them into the database within ~100 ms, and before any API call reads: one read
    # through the API first, so the database file holds everything acknowledged.
    server.api.json("GET", f"/api/2.0/mlflow/runs/get?run_id={run_ids[0]}", server=server.name,
                    phase="persisted rows check")
    uri = f"file:{server.db}?mode=ro"
    c = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
    try:
        marks = ",".join("?" * len(run_ids))
        tables = ["metrics"]
        # kiln's SQLite store commits log-batch history to `metrics_staged` and moves it into
        # `metrics` in the background (~100 ms later): both hold acknowledged rows. Count both
        # in one read transaction, or a move between the two counts hides the rows it moved.
        c.execute("BEGIN")
        if c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'metrics_staged'").fetchone():
            tables.append("metrics_staged")
        n = sum(
            c.execute(f"SELECT COUNT(*) FROM {t} WHERE run_uuid IN ({marks})", run_ids).fetchone()[0] for t in tables
        )
        # From schema v5 a log-batch stages its points as one `metrics_staged_batches` row and the
        # fold packs them into one `metric_chunks` row per (run, key); both hold `n` points.
        for t in ("metric_chunks", "metrics_staged_batches"):
            if c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (t,)).fetchone():
                n += c.execute(f"SELECT COALESCE(SUM(n), 0) FROM {t} WHERE run_uuid IN ({marks})",
                               run_ids).fetchone()[0]
        c.execute("COMMIT")
        return n
    finally:
        c.close()


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def search_phase(server: Server, eid: str, n_timed: int, timeout: float, budget: float) -> dict:
    """One untimed ("cold") request, then up to n_timed timed ones, stopping early once `budget`
    seconds have gone into the timed ones. A request past `timeout` ends the phase."""
    body = {"experiment_ids": [eid], "filter": SEARCH_FILTER, "order_by": SEARCH_ORDER,
            "max_results": SEARCH_PAGE, "run_view_type": "ACTIVE_ONLY"}
    api = Http(server.port, timeout=timeout)
    lat, ids, cold = [], None, None
    cpu0 = None
    timed_out = False
    has_token = False
    t_start = None
    try:
        for i in range(n_timed + 1):  # the first one is a warm-up, reported as "cold"
            if t_start is not None and time.monotonic() - t_start > budget:
                break
            t0 = time.perf_counter()
            try:
                status, payload = api.call("POST", "/api/2.0/mlflow/runs/search", body)
            except (TimeoutError, socket.timeout):
                record_error(server.name, "search", "POST /api/2.0/mlflow/runs/search", "timeout",
                             f"no answer within {timeout:.0f}s (experiment {eid})")
                timed_out = True
                break
            dt = (time.perf_counter() - t0) * 1000
            if status != 200:
                record_error(server.name, "search", "POST /api/2.0/mlflow/runs/search", status,
                             payload.decode(errors="replace"))
                break
            if i == 0:
                cold = dt
                cpu0 = server.cpu_s()[0]
                t_start = time.monotonic()
                doc = json.loads(payload)
                ids = [r["info"]["run_id"] for r in doc.get("runs", [])]
                has_token = bool(doc.get("next_page_token"))
            else:
                lat.append(dt)
    finally:
        api.close()
    out = {"cold_ms": cold, "n": len(lat), "ids": ids, "timed_out": timed_out, "timeout_s": timeout}
    if lat and cpu0 is not None:
        out["cpu_ms_per_search"] = (server.cpu_s()[0] - cpu0) * 1000 / len(lat)
    if lat:
        out.update(p50_ms=statistics.median(lat), p95_ms=percentile(lat, 0.95), min_ms=min(lat), max_ms=max(lat))
    if ids is not None:
        out["has_next_page_token"] = has_token
    return out


def upload_phase(server: Server, sampler: RssSampler, src: Path, size: int) -> dict:
    url = f"http://127.0.0.1:{server.port}/api/2.0/mlflow-artifacts/artifacts/0/bench/big.bin"
    dest = server.artifacts / "0" / "bench" / "big.bin"
    out: dict = {}
    for direction in ("upload", "download"):
        time.sleep(0.5)
        before = server.rss_kib()
        sampler.start_trace(server.name)
        if direction == "upload":
            cmd = ["curl", "-sS", "-T", str(src), "-H", "Expect:", "-H", "Content-Type: application/octet-stream",
                   "-o", "/dev/null", "-w", "%{http_code} %{time_total} %{size_upload}", url]
        else:
            cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total} %{size_download}", url]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        time.sleep(1.0)
        trace = sampler.end_trace()
        after = server.rss_kib()
        try:
            code, secs, nbytes = p.stdout.split()
            code, secs, nbytes = int(code), float(secs), int(float(nbytes))
        except ValueError:
            code, secs, nbytes = 0, 0.0, 0
        ok = code == 200 and nbytes == size
        if direction == "upload":
            on_disk = dest.stat().st_size if dest.exists() else -1
            ok = ok and on_disk == size
            out["stored_bytes"] = on_disk
        if not ok:
            record_error(server.name, direction, f"{'PUT' if direction == 'upload' else 'GET'} {url}", code,
                         f"curl rc={p.returncode} bytes={nbytes} stderr={p.stderr.strip()[:300]}")
        peak = max([k for _, k in trace] + [before, after])
        out[direction] = {
            "ok": ok, "http": code, "secs": secs, "mib_per_s": (nbytes / MIB / secs) if secs else 0.0,
            "mem_kind": "VmRSS" if len(server.pids()) <= 1 else "VmRSS summed over the process tree",
            "rss_before_mib": before / 1024, "rss_peak_mib": peak / 1024, "rss_after_mib": after / 1024,
            "rss_growth_mib": (peak - before) / 1024, "samples": len(trace),
        }
        log(f"  {server.name} {direction}: HTTP {code}, {nbytes / MIB:.0f} MiB in {secs:.1f}s "
            f"({out[direction]['mib_per_s']:.0f} MiB/s); RSS before {before / 1024:.1f} peak {peak / 1024:.1f} "
            f"after {after / 1024:.1f} MiB ({len(trace)} samples)")
    try:
        dest.unlink()
    except OSError:
        pass
    return out


# ------------------------------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kiln", required=True, help="kiln binary")
    ap.add_argument("--mlflow", required=True, help="mlflow executable (from the bench venv)")
    ap.add_argument("--quick", action="store_true", help="10,000 runs and shorter phases")
    ap.add_argument("--runs", type=int, help="runs loaded for the search phase")
    ap.add_argument("--reps", type=int, help="repetitions of each throughput phase (median reported)")
    ap.add_argument("--upload-mib", type=int, help="size of the artifact upload")
    ap.add_argument("--mlflow-workers", default=os.environ.get("MLFLOW_WORKERS", "1"))
    ap.add_argument("--skip-mlflow-upload", action="store_true")
    ap.add_argument("--out", default=str(REPO / "bench" / "out"))
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (databases, logs)")
    ap.add_argument("--floor", help="kiln-serve's `ceiling` example binary: its --raw mode is the "
                    "machine's round-trip floor (no runtime, no HTTP library)")
    a = ap.parse_args()

    if a.quick:
        cfg = dict(runs=10_000, reps=3, kiln_secs=4, mlflow_secs=3, batch_secs=4, mlflow_batch_secs=6,
                   kiln_search=20, mlflow_search=3, search_timeout=120, search_budget=30, upload_mib=512)
    else:
        cfg = dict(runs=100_000, reps=3, kiln_secs=10, mlflow_secs=8, batch_secs=8, mlflow_batch_secs=12,
                   kiln_search=30, mlflow_search=7, search_timeout=300, search_budget=60, upload_mib=2048)
    for k in ("runs", "reps", "upload_mib"):
        if getattr(a, k) is not None:
            cfg[k] = getattr(a, k)
    started = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S")

    tmp = Path(tempfile.mkdtemp(prefix="kiln-bench-"))
    log(f"workdir {tmp}; config {cfg}")

    def mk(name: str) -> Server:
        d = tmp / name
        (d / "artifacts").mkdir(parents=True)
        port = free_port()
        db = d / f"{name}.db"
        if name == "kiln":
            argv = [a.kiln, "server"]
        else:
            argv = [a.mlflow, "server", "--workers", str(a.mlflow_workers)]
        argv += ["--backend-store-uri", f"sqlite:///{db}", "--artifacts-destination", str(d / "artifacts"),
                 "--host", "127.0.0.1", "--port", str(port)]
        return Server(name, argv, port, d, db, d / "artifacts")

    mlflow, kiln = mk("mlflow"), mk("kiln")
    servers = [mlflow, kiln]
    sampler = RssSampler(servers)

    def cleanup(*_):
        for s in servers:
            s.stop()
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    signal.signal(signal.SIGTERM, lambda *_: (cleanup(), sys.exit(143)))
    result: dict = {"config": cfg, "started": stamp, "machine": {"cpus": os.cpu_count(), "uname": os.uname().release}}
    try:
        result.update(run_all(a, cfg, tmp, mlflow, kiln, sampler))
    except KeyboardInterrupt:
        log("interrupted")
        cleanup()
        return 130
    finally:
        sampler.stop_flag.set()
        for s in servers:
            if s.proc is not None:
                s.stop()
        if a.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    result["errors"] = ERRORS
    result["elapsed_s"] = round(time.time() - started, 1)
    rows = summarize(result)
    result["summary"] = rows
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    out_path = out_dir / f"tracking-{stamp}.json"
    out_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_summary(result, rows)
    log(f"wrote {out_path} ({result['elapsed_s']:.0f}s in all)")
    return 0


def run_all(a, cfg, tmp: Path, mlflow: Server, kiln: Server, sampler: RssSampler) -> dict:
    res: dict = {"versions": {}}
    res["versions"]["mlflow"] = subprocess.run([a.mlflow, "--version"], capture_output=True, text=True).stdout.strip()
    res["versions"]["kiln"] = subprocess.run([a.kiln, "--version"], capture_output=True, text=True).stdout.strip()
    res["mlflow_workers"] = a.mlflow_workers
    pss: dict[str, float] = {}  # MLflow's tree PSS, taken between phases only (it is expensive)

    def snapshot(phase: str) -> None:
        pss[phase] = mlflow.pss_kib() / 1024

    # 1. Schema + search experiments through each server's own startup/API, then direct inserts.
    sizes = {"small": (SMALL_RUNS, SEED + 1), "full": (cfg["runs"], SEED)}
    log("phase: schema (start each server once, create the search experiments)")
    eids: dict[str, dict[str, str]] = {}
    for s in (mlflow, kiln):
        t = s.start()
        log(f"  {s.name} up in {t:.1f}s on :{s.port}")
        eids[s.name] = {
            size: s.api.json("POST", "/api/2.0/mlflow/experiments/create", {"name": f"bench-search-{n}"},
                             server=s.name, phase="schema")["experiment_id"]
            for size, (n, _) in sizes.items()
        }
        s.stop()
    for s, loader in ((mlflow, load_mlflow), (kiln, load_kiln)):
        t0 = time.monotonic()
        for size, (n, seed) in sizes.items():
            loader(s.db, int(eids[s.name][size]), n, seed)
        log(f"  loaded {SMALL_RUNS:,} + {cfg['runs']:,} runs into {s.name} in {time.monotonic() - t0:.1f}s")
        res.setdefault("load_s", {})[s.name] = round(time.monotonic() - t0, 1)

    log("phase: start both servers")
    sampler.start()
    startup = {}
    for s in (mlflow, kiln):
        startup[s.name] = round(s.start(), 2)
        log(f"  {s.name} up in {startup[s.name]:.1f}s, pid {s.proc.pid}, RSS {s.rss_kib() / 1024:.1f} MiB")
    res["startup_s"] = startup
    time.sleep(1.0)
    res["rss_idle_mib"] = {s.name: s.rss_kib() / 1024 for s in (mlflow, kiln)}
    snapshot("idle")
    res["loadavg"] = {"start": os.getloadavg()}

    # 2. Ingest: repetitions interleaved between the servers so noise hits both alike.
    ingest: dict = {}
    for key, kind, conns, keys, _label, _unit, _target in PHASES:
        log(f"phase: {key} ({cfg['reps']} reps)")
        sampler.set_phase(key)
        ingest[key] = {"mlflow": [], "kiln": []}
        for s in (mlflow, kiln):  # warm-up: a new run and 2 s of this kind of request, untimed
            try:
                wid = create_run(s, key, f"{key}-warmup")
                run_wrk(s, key + "-warmup", kind, [wid], 2, conns, keys)
            except RuntimeError:
                pass
        ingest[key]["loadavg_before"] = os.getloadavg()
        for rep in range(cfg["reps"]):
            order = (mlflow, kiln) if rep % 2 == 0 else (kiln, mlflow)
            for s in order:
                if kind == "batch":  # one MLflow batch takes ~0.5-2 s: run longer so enough complete
                    secs = cfg["batch_secs"] if s is kiln else cfg["mlflow_batch_secs"]
                    # Runs enough for ROTATE batches each at 10,000 (MLflow) / 100,000 (kiln) metrics/s.
                    n_runs = max(2, math.ceil(secs * (100 if s is kiln else 10) / ROTATE))
                else:
                    secs = cfg["kiln_secs"] if s is kiln else cfg["mlflow_secs"]
                    n_runs = 1
                try:
                    run_ids = [create_run(s, key, f"{key}-{rep}-{i}") for i in range(n_runs)]
                except RuntimeError:
                    continue
                r = run_wrk(s, key, kind, run_ids, secs, conns, keys, ROTATE if kind == "batch" else 0)
                per = BATCH if kind == "batch" else 1
                if kind == "batch" and r.get("requests", 0) > n_runs * ROTATE:
                    log(f"  note: {r['requests']} batches wrapped around {n_runs} runs")
                r["runs_used"] = n_runs
                r["rate"] = r["ok_per_s"] * per
                items = r["ok"] * per
                r["cpu_us_per_item"] = r["server_cpu_s"] * 1e6 / items if items else None
                r["tree_cpu_us_per_item"] = r["server_tree_cpu_s"] * 1e6 / items if items else None
                r["write_bytes_per_item"] = r["server_write_bytes"] / items if items else None
                try:
                    rows = count_metric_rows(s, run_ids)
                    r["rows_persisted"] = rows
                    if rows < items:
                        record_error(s.name, key, "persisted rows check", "-",
                                     f"{rows} metric rows in the database, but {items} acknowledged")
                except (sqlite3.Error, RuntimeError) as e:
                    r["rows_persisted"] = f"error: {e}"
                ingest[key][s.name].append(r)
                if key == "log_metric_c1" and s is kiln:
                    # The machine's own floor for one keep-alive connection: a no-op request.
                    hp = subprocess.run(["wrk", "-t1", "-c1", f"-d{secs}s", f"http://127.0.0.1:{s.port}/health"],
                                        capture_output=True, text=True, timeout=secs + 60)
                    hm = re.search(r"Requests/sec:\s+([\d.]+)", hp.stdout)
                    if hm:
                        ingest[key].setdefault("kiln_health_rps", []).append(float(hm.group(1)))
                    if a.floor:
                        rps = raw_floor_rps(a.floor, secs)
                        if rps:
                            ingest[key].setdefault("raw_floor_rps", []).append(rps)
                        rps = raw_floor_rps(a.floor, secs, busy_poll_us=0)
                        if rps:
                            ingest[key].setdefault("raw_floor_blocking_rps", []).append(rps)
                unit = "metrics/s" if kind == "batch" else "req/s"
                log(f"  rep {rep + 1} {s.name:6s}: {r['rate']:10.1f} {unit}  ({r['ok']} ok in {r['secs']:.1f}s, "
                    f"p50 {r.get('lat_p50_us', 0) / 1000:.2f} ms, p99 {r.get('lat_p99_us', 0) / 1000:.2f} ms, "
                    f"server CPU {r.get('server_cpu_s', 0):.2f}s, waited for a CPU {r.get('server_runq_wait_s', 0):.2f}s)")
        for s in (mlflow, kiln):
            reps = ingest[key][s.name]
            for field in ("rate", "cpu_us_per_item", "tree_cpu_us_per_item", "server_runq_wait_s", "server_on_cpu_s",
                          "write_bytes_per_item"):
                xs = [r[field] for r in reps if r.get(field) is not None]
                ingest[key][f"{s.name}_{field}_median"] = statistics.median(xs) if xs else None
            ingest[key][f"{s.name}_median"] = ingest[key][f"{s.name}_rate_median"]
        ingest[key]["loadavg_after"] = os.getloadavg()
        snapshot(key)
    res["ingest"] = ingest

    # 3. Big artifact upload / download, streamed with curl (Content-Length, like the client).
    size = cfg["upload_mib"] * MIB
    src = tmp / "big.bin"
    with open(src, "wb") as f:
        f.truncate(size)  # sparse: costs no disk and reads back as zeros at memory speed
    log(f"phase: artifact PUT/GET of {cfg['upload_mib']} MiB")
    art = {}
    sampler.set_phase("artifacts")
    for s in (kiln,) if a.skip_mlflow_upload else (kiln, mlflow):
        art[s.name] = upload_phase(s, sampler, src, size)
    src.unlink()
    res["artifacts"] = art
    snapshot("artifacts")

    # 4. Search, last: an MLflow search that times out keeps its worker busy after the client
    # gives up, so nothing may be measured after it.
    sampler.set_phase("search")
    search: dict = {}
    for size_key, (n, seed) in sizes.items():
        log(f"phase: search over {n:,} runs ({SEARCH_FILTER!r}, order_by {SEARCH_ORDER}, page {SEARCH_PAGE})")
        expected = expected_top(n, seed)
        out: dict = {"runs": n}
        for s in (kiln, mlflow):
            reps = cfg["kiln_search"] if s is kiln else cfg["mlflow_search"]
            timeout = 60.0 if s is kiln else cfg["search_timeout"]
            r = search_phase(s, eids[s.name][size_key], reps, timeout=timeout, budget=cfg["search_budget"])
            r["matches_expected"] = r["ids"] == expected
            out[s.name] = r
            if "p50_ms" in r:
                log(f"  {s.name:6s}: cold {r['cold_ms']:.1f} ms, p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms "
                    f"({r['n']} timed); first page as expected: {r['matches_expected']}")
            elif r.get("cold_ms") is not None:
                log(f"  {s.name:6s}: one request only, {r['cold_ms']:.1f} ms; first page as expected: "
                    f"{r['matches_expected']}")
            if r["ids"] is not None and not r["matches_expected"]:
                got = r["ids"]
                at = next((i for i, (x, y) in enumerate(zip(got, expected)) if x != y), min(len(got), len(expected)))
                record_error(s.name, "search", "POST /api/2.0/mlflow/runs/search (result check)", 200,
                             f"{n} runs: first page differs from the expected order at position {at} "
                             f"(got {len(got)} ids, expected {len(expected)})")
        out["same_first_page"] = bool(out["kiln"].get("ids")) and out["kiln"].get("ids") == out["mlflow"].get("ids")
        for s in ("kiln", "mlflow"):
            out[s].pop("ids", None)
        search[size_key] = out
    res["search"] = search

    sampler.set_phase("end")
    time.sleep(0.3)
    res["loadavg"]["end"] = os.getloadavg()
    res["rss_phase_max_mib"] = {k: {p: v / 1024 for p, v in m.items()} for k, m in sampler.max.items()}
    if not search["full"]["mlflow"].get("timed_out"):
        snapshot("end")
    res["mlflow_pss_mib"] = pss
    res["mem_peak_mib"] = {
        # kiln: the kernel's own peak RSS over the process's life (covers every phase).
        "kiln": kiln.hwm_kib() / 1024,
        # MLflow: the largest PSS of its process tree taken between phases.
        "mlflow": max(pss.values(), default=0),
    }
    log(f"  memory peak: kiln {res['mem_peak_mib']['kiln']:.1f} MiB (VmHWM); mlflow "
        f"{res['mem_peak_mib']['mlflow']:.1f} MiB (PSS of its process tree, largest between phases)")
    return res


# --------------------------------------------------------------------------------------- summary


def ratio(k, m):
    if k is None or m is None or m == 0:
        return None
    return k / m


def summarize(res: dict) -> list[dict]:
    rows = []
    ing = res.get("ingest", {})

    def add(metric, mlf, kil, rat, target, passed, unit="", mlflow_text=None, ratio_text=None):
        rows.append({"metric": metric, "mlflow": mlf, "kiln": kil, "ratio": rat, "target": target,
                     "pass": passed, "unit": unit, "mlflow_text": mlflow_text, "ratio_text": ratio_text})

    for key, _kind, _conns, _keys, label, unit, tkey in PHASES:
        if key not in ing:
            continue
        m, k = ing[key].get("mlflow_median"), ing[key].get("kiln_median")
        r = ratio(k, m)
        t = TARGETS.get(tkey) if tkey else None
        add(label, m, k, r, f">= {t:g}x" if t else "-", (r is not None and r >= t) if t else None, unit)
    se = res.get("search", {})
    for size_key in ("small", "full"):
        s = se.get(size_key)
        if not s:
            continue
        n = s["runs"]
        km, mm = s.get("kiln", {}), s.get("mlflow", {})
        full = size_key == "full"
        t = TARGETS["search_p50_ms"]
        m_p50 = mm.get("p50_ms")
        mtext = rtext = None
        if m_p50 is None and mm.get("timed_out"):
            mtext = f"> {mm['timeout_s'] * 1000:,.0f} (timeout)"
            if km.get("p50_ms"):
                rtext = f"> {mm['timeout_s'] * 1000 / km['p50_ms']:,.0f}x"
        elif m_p50 is None and mm.get("cold_ms") is not None:
            m_p50 = mm["cold_ms"]
            mtext = f"{m_p50:,.0f} (1 req)"
        target = (f"kiln <= {t:g} ms" + ("" if n >= 100_000 else " (at 100k)")) if full else "-"
        passed = (km.get("p50_ms") is not None and km["p50_ms"] <= t and km.get("matches_expected", False)) \
            if full else None
        label = f"{n:,}-run experiment" if not full else f"{n:,} runs"
        add(f"search p50, {label}", m_p50, km.get("p50_ms"), ratio(m_p50, km.get("p50_ms")), target, passed, "ms",
            mtext, rtext)
        add(f"search p95, {label}", mm.get("p95_ms"), km.get("p95_ms"), ratio(mm.get("p95_ms"), km.get("p95_ms")),
            "-", None, "ms")
        mm_ok = mm.get("matches_expected") if mm.get("cold_ms") is not None else None
        add(f"search first page correct, {label}", mm_ok, km.get("matches_expected"), None, "expected ids",
            bool(km.get("matches_expected")), "")
    hwm = res.get("mem_peak_mib", {})
    if hwm:
        t = TARGETS["rss_mib"]
        add("server memory peak (kiln RSS, mlflow PSS)", hwm.get("mlflow"), hwm.get("kiln"),
            ratio(hwm.get("mlflow"), hwm.get("kiln")), f"kiln <= {t:g} MiB", hwm.get("kiln", 1e9) <= t, "MiB")
    art = res.get("artifacts", {})
    if "kiln" in art:
        size = res["config"]["upload_mib"]
        t = TARGETS["upload_rss_growth_mib"]
        for d, verb in (("upload", "PUT"), ("download", "GET")):
            k = art["kiln"][d]
            m = art.get("mlflow", {}).get(d, {})
            add(f"{verb} {size} MiB: RSS growth", m.get("rss_growth_mib"), k["rss_growth_mib"],
                None, f"kiln <= {t:g} MiB", k["ok"] and k["rss_growth_mib"] <= t, "MiB")
            add(f"{verb} {size} MiB: throughput", m.get("mib_per_s"), k["mib_per_s"],
                ratio(k["mib_per_s"], m.get("mib_per_s")), "-", None, "MiB/s")
    return rows


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        if unit == "ms" or abs(v) < 100:
            return f"{v:,.1f}"
        return f"{v:,.0f}"
    return str(v)


def fmt_bytes(v) -> str:
    if v is None:
        return "-"
    return f"{v / 1024:,.1f} KiB" if v >= 1024 else f"{v:,.0f} B"


def fmt_us(v) -> str:
    if v is None:
        return "-"
    return f"{v / 1000:,.2f} ms" if v >= 1000 else f"{v:,.1f} us"


def print_summary(res: dict, rows: list[dict]) -> None:
    cfg = res["config"]
    print()
    print(f"kiln vs MLflow tracking benchmark  ({res['versions'].get('kiln')} vs mlflow "
          f"{res['versions'].get('mlflow', '').split()[-1] if res['versions'].get('mlflow') else '?'}, "
          f"{os.cpu_count()} CPUs, mlflow --workers {res.get('mlflow_workers')}, "
          f"{cfg['reps']} reps/phase, median shown)")
    head = ["metric", "unit", "mlflow", "kiln", "ratio", "target", "pass"]
    table = [[r["metric"], r["unit"], r.get("mlflow_text") or fmt(r["mlflow"], r["unit"]), fmt(r["kiln"], r["unit"]),
              r.get("ratio_text") or ("-" if r["ratio"] is None else f"{r['ratio']:,.1f}x"), r["target"],
              "" if r["pass"] is None else ("PASS" if r["pass"] else "FAIL")] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for t in table:
        print(line(t))
    print("ratio = kiln/mlflow for throughput, mlflow/kiln for latency and memory (higher is better for kiln).")
    se0 = res.get("search", {})
    if "small" in se0 and "full" in se0:
        print(f"The {se0['small']['runs']:,}-run experiment sits in the same store as the {se0['full']['runs']:,}-run one "
              f"({se0['small']['runs'] + se0['full']['runs']:,} runs in all).")
    la = res.get("loadavg", {})
    if la:
        fmt_la = lambda t: "/".join(f"{x:.1f}" for x in t) if t else "?"
        print(f"load average (1/5/15 min) at start {fmt_la(la.get('start'))}, at end {fmt_la(la.get('end'))} "
              f"on {os.cpu_count()} CPUs; elapsed {res.get('elapsed_s', 0):.0f}s")
    ing, se = res.get("ingest", {}), res.get("search", {})
    cpu_rows = []
    for key, kind, _conns, _keys, label, _unit, _t in PHASES:
        label = label + (", per metric" if kind == "batch" else ", per request")
        if key in ing:
            cpu_rows.append((label, ing[key].get("mlflow_cpu_us_per_item_median"),
                             ing[key].get("kiln_cpu_us_per_item_median")))
    for size_key in ("small", "full"):
        if size_key in se:
            m = se[size_key].get("mlflow", {}).get("cpu_ms_per_search")
            k = se[size_key].get("kiln", {}).get("cpu_ms_per_search")
            cpu_rows.append((f"search {se[size_key]['runs']:,} runs, per request", m * 1000 if m else None,
                             k * 1000 if k else None))
    if cpu_rows:
        print("\nCPU time of the serving process (kiln; MLflow's uvicorn worker), user+sys, median of the reps.\n"
              "Much less sensitive than wall time to other load on the machine:")
        for label, m, k in cpu_rows:
            r = f"{m / k:,.1f}x" if m and k else "-"
            print(f"  {label:48s} mlflow {fmt_us(m):>10s}   kiln {fmt_us(k):>10s}   ratio {r}")
        waits = []
        for key, *_ in PHASES:
            if key in ing:
                cells = []
                for name in ("mlflow", "kiln"):
                    w = ing[key].get(f"{name}_server_runq_wait_s_median")
                    c = ing[key].get(f"{name}_server_on_cpu_s_median")
                    cells.append(f"{name} {w:5.1f}s waiting vs {c:5.1f}s on CPU" if w is not None and c else f"{name} -")
                waits.append(f"  {key:16s} " + "; ".join(cells))
        if waits:
            print("Serving threads runnable but waiting for a CPU (other load), median rep:")
            print("\n".join(waits))
        wb = []
        for key, kind, _conns, _keys, label, _unit, _t in PHASES:
            label = label + (", per metric" if kind == "batch" else ", per request")
            if key in ing:
                m, k = ing[key].get("mlflow_write_bytes_per_item_median"), ing[key].get("kiln_write_bytes_per_item_median")
                if m is not None or k is not None:
                    wb.append(f"  {label:48s} mlflow {fmt_bytes(m):>10s}   kiln {fmt_bytes(k):>10s}")
        if wb:
            print("Bytes written to storage by the serving process (/proc/<pid>/io), median rep:")
            print("\n".join(wb))
    c1 = ing.get("log_metric_c1", {})
    if c1.get("kiln_health_rps") and c1.get("kiln_median"):
        h = statistics.median(c1["kiln_health_rps"])
        m = c1.get("mlflow_median")
        need = f"; 200x MLflow here would need {200 * m:,.0f} req/s" if m else ""
        print(f"\nHTTP round-trip floor, 1 keep-alive conn: kiln GET /health (no store call) {h:,.0f} req/s; "
              f"log-metric reaches {100 * c1['kiln_median'] / h:.0f}% of it{need}.")
        if c1.get("raw_floor_rps"):
            f = statistics.median(c1["raw_floor_rps"])
            print(f"Machine floor, same connection: a std::net responder doing no work, busy-polling 100 us like kiln, "
                  f"{f:,.0f} req/s" + (f" = {f / m:.0f}x MLflow" if m else "")
                  + f"; kiln log-metric reaches {100 * c1['kiln_median'] / f:.0f}% of it.")
        if c1.get("raw_floor_blocking_rps"):
            f = statistics.median(c1["raw_floor_blocking_rps"])
            print(f"The same responder blocking at once (--busy-poll 0): {f:,.0f} req/s"
                  + (f" = {f / m:.0f}x MLflow" if m else "")
                  + ": what a sleeping CPU's wake-up per request costs here.")
    if ERRORS:
        print(f"\n{len(ERRORS)} error(s):")
        for e in ERRORS:
            print(f"  [{e['server']}/{e['phase']}] {e['endpoint']} -> {e['status']}: {e['body'][:300]}")
    else:
        print("no non-2xx responses or failures")


if __name__ == "__main__":
    sys.exit(main())
