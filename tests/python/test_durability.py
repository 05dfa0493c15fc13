"""Acknowledged writes survive a crash.

Several clients log metrics (single log-metric calls and log-batch calls) as fast as they can;
the server is SIGKILLed mid-stream and restarted on the same store; every write that was
answered with HTTP 200 must be in the metric history, and each run's latest value must agree
with its history.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest
import requests

from conftest import rest, unique

THREADS = 4
LOG_SECONDS = 3.0
BATCH = 20


def _history(srv, run_id: str, key: str) -> list[dict]:
    out, token = [], None
    while True:
        params = {"run_id": run_id, "run_uuid": run_id, "metric_key": key, "max_results": "25000"}
        if token:
            params["page_token"] = token
        r = rest(srv, "GET", "metrics/get-history", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        out += body.get("metrics", [])
        token = body.get("next_page_token")
        if not token:
            return out


@pytest.mark.kiln_only
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_acknowledged_metrics_survive_sigkill(server_factory, backend):
    srv = server_factory.server(backend, "file")
    r = rest(srv, "POST", "experiments/create", json={"name": unique("durability")})
    assert r.status_code == 200, r.text
    exp_id = r.json()["experiment_id"]
    run_ids = []
    for _ in range(THREADS):
        r = rest(srv, "POST", "runs/create", json={"experiment_id": exp_id, "start_time": int(time.time() * 1000)})
        assert r.status_code == 200, r.text
        run_ids.append(r.json()["run"]["info"]["run_id"])

    base = f"{srv.url}/api/2.0/mlflow"
    killed = threading.Event()
    acked: list[dict] = [defaultdict(set) for _ in range(THREADS)]  # per thread: key -> {step}
    errors: list[str] = []
    counts = [0] * THREADS

    def worker(t: int) -> None:
        run_id = run_ids[t]
        session = requests.Session()
        i = 0
        while not killed.is_set():
            ts = int(time.time() * 1000)
            try:
                if i % 4 == 3:
                    key = "batch"
                    steps = [i * BATCH + j for j in range(BATCH)]
                    body = {
                        "run_id": run_id,
                        "metrics": [{"key": key, "value": float(s), "timestamp": ts, "step": s} for s in steps],
                    }
                    resp = session.post(f"{base}/runs/log-batch", json=body, timeout=10)
                else:
                    key = "single"
                    steps = [i]
                    body = {
                        "run_id": run_id,
                        "run_uuid": run_id,
                        "key": key,
                        "value": float(i),
                        "timestamp": ts,
                        "step": i,
                    }
                    resp = session.post(f"{base}/runs/log-metric", json=body, timeout=10)
            except requests.RequestException:
                if killed.is_set():
                    return
                time.sleep(0.05)  # the kill is racing us; the next iteration sees the event
                continue
            if resp.status_code == 200:
                acked[t][key].update(steps)
                counts[t] += 1
            elif not killed.is_set():
                errors.append(f"thread {t}: HTTP {resp.status_code}: {resp.text[:200]}")
                return
            i += 1

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(THREADS)]
    for th in threads:
        th.start()
    time.sleep(LOG_SECONDS)
    assert not errors, errors
    assert all(counts), f"some writers made no progress: {counts}\n{srv.log_tail()}"
    srv.kill()
    killed.set()
    for th in threads:
        th.join(timeout=30)
        assert not th.is_alive()
    assert not errors, errors

    srv.start()
    total = 0
    for t, run_id in enumerate(run_ids):
        r = rest(srv, "GET", "runs/get", params={"run_id": run_id})
        assert r.status_code == 200, r.text
        latest = {m["key"]: m for m in r.json()["run"]["data"].get("metrics", [])}
        for key, steps in acked[t].items():
            hist = _history(srv, run_id, key)
            stored = {m["step"] for m in hist}
            missing = steps - stored
            assert not missing, (
                f"{backend}: run {t} key {key}: {len(missing)} acknowledged points lost, e.g. {sorted(missing)[:10]}"
            )
            # Every stored point is intact (value == step by construction).
            assert all(m["value"] == float(m["step"]) for m in hist)
            # The materialised latest value agrees with the history.
            assert latest[key]["step"] == max(stored), (key, latest[key], max(stored))
            assert latest[key]["value"] == float(max(stored))
            total += len(steps)
    assert total > 0
    print(f"{backend}: {sum(counts)} acknowledged requests, {total} metric points, all present after SIGKILL")


@pytest.mark.kiln_only
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_server_exits_cleanly_on_sigterm(server_factory, backend):
    """SIGTERM (a rolling update, `kubectl delete pod`) drains and exits 0 on both stores: the
    PostgreSQL connections used to be closed inside the async runtime, which aborted."""
    srv = server_factory.server(backend, "file")
    r = rest(srv, "POST", "experiments/create", json={"name": unique("sigterm")})
    assert r.status_code == 200, r.text
    code = srv.stop()
    log = srv.log_path.read_text(errors="replace")
    assert code == 0, f"exit status {code}\n{log[-4000:]}"
    assert "panic" not in log, log[-4000:]
