"""Two `kiln server` replicas on one PostgreSQL database, writing the same objects at once.

Each race here failed before the fix it names: the requests are sent from two threads to two
servers, many times over, so that they overlap in the database.
"""

from __future__ import annotations

import json
import threading

import pytest
import requests

from conftest import Server, rest, unique

ROUNDS = 25


@pytest.fixture
def replicas(server_factory):
    a = server_factory.server("postgresql", "file")
    b = Server(a.kind, a.store, a.env)
    b.starts = 100  # its own log file
    server_factory.servers.append(b)
    b.start()
    return a, b


def _at_once(*calls):
    """Run the calls on threads released together; their results, in order."""
    out = [None] * len(calls)
    gate = threading.Barrier(len(calls))

    def go(i, fn):
        gate.wait()
        out[i] = fn()

    threads = [threading.Thread(target=go, args=(i, fn)) for i, fn in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def _new_run(srv) -> str:
    r = rest(srv, "POST", "runs/create", json={"experiment_id": "0"})
    assert r.status_code == 200, r.text
    return r.json()["run"]["info"]["run_id"]


@pytest.mark.kiln_only
def test_same_param_from_two_replicas_at_once(replicas):
    a, b = replicas
    run_id = _new_run(a)
    for i in range(ROUNDS):
        body = {"run_id": run_id, "key": f"p{i}", "value": "same"}
        ra, rb = _at_once(lambda: rest(a, "POST", "runs/log-parameter", json=body),
                          lambda: rest(b, "POST", "runs/log-parameter", json=body))
        assert (ra.status_code, rb.status_code) == (200, 200), (ra.text, rb.text)
    # A different value is still refused, whichever replica answers.
    r = rest(b, "POST", "runs/log-parameter", json={"run_id": run_id, "key": "p0", "value": "other"})
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE", r.text


@pytest.mark.kiln_only
def test_alias_set_while_its_version_is_deleted_never_dangles(replicas):
    a, b = replicas
    run_id = _new_run(a)
    name = unique("race")
    assert rest(a, "POST", "registered-models/create", json={"name": name}).status_code == 200
    for i in range(ROUNDS):
        r = rest(a, "POST", "model-versions/create",
                 json={"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id})
        assert r.status_code == 200, r.text
        v = r.json()["model_version"]["version"]
        _at_once(
            lambda: rest(a, "POST", "registered-models/alias", json={"name": name, "alias": f"a{i}", "version": v}),
            lambda: requests.delete(f"{b.url}/api/2.0/mlflow/model-versions/delete",
                                    json={"name": name, "version": v}, timeout=30),
        )
    model = rest(a, "GET", "registered-models/get", params={"name": name}).json()["registered_model"]
    for alias in model.get("aliases", []):
        r = rest(a, "GET", "registered-models/alias", params={"name": name, "alias": alias["alias"]})
        assert r.status_code == 200, f"alias {alias} points at a deleted version: {r.text}"


@pytest.mark.kiln_only
def test_alias_history_is_one_chain_under_concurrent_moves(replicas):
    a, b = replicas
    run_id = _new_run(a)
    name = unique("chain")
    assert rest(a, "POST", "registered-models/create", json={"name": name}).status_code == 200
    versions = []
    for _ in range(2):
        r = rest(a, "POST", "model-versions/create",
                 json={"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id})
        versions.append(r.json()["model_version"]["version"])
    for _ in range(ROUNDS):
        _at_once(
            lambda: rest(a, "POST", "registered-models/alias",
                         json={"name": name, "alias": "champion", "version": versions[0]}),
            lambda: rest(b, "POST", "registered-models/alias",
                         json={"name": name, "alias": "champion", "version": versions[1]}),
        )
    out = a.kiln("models", "history", name, "--alias", "champion", "--json")
    events = json.loads(out.stdout)
    events = events.get("events", events) if isinstance(events, dict) else events
    # A move onto the version already there records nothing: at most one event per request.
    assert 1 <= len(events) <= 2 * ROUNDS
    assert all(e["version"] != e.get("previous_version") for e in events), events
    for prev, event in zip(events, events[1:]):
        assert event["previous_version"] == prev["version"], (prev, event)
    current = rest(a, "GET", "registered-models/alias", params={"name": name, "alias": "champion"})
    assert current.json()["model_version"]["version"] == str(events[-1]["version"])


@pytest.mark.kiln_only
def test_stage_change_and_version_delete_at_once_never_deadlock(replicas):
    """A stage change (archiving the others) and a version delete on two replicas took their
    row locks in opposite orders: PostgreSQL aborted one with a deadlock, a 500."""
    a, b = replicas
    run_id = _new_run(a)
    name = unique("stages")
    assert rest(a, "POST", "registered-models/create", json={"name": name}).status_code == 200
    for _ in range(ROUNDS):
        versions = []
        for _ in range(2):
            r = rest(a, "POST", "model-versions/create",
                     json={"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id})
            versions.append(r.json()["model_version"]["version"])
        rest(a, "POST", "model-versions/transition-stage",
             json={"name": name, "version": versions[1], "stage": "Production", "archive_existing_versions": False})
        ra, rb = _at_once(
            lambda: rest(a, "POST", "model-versions/transition-stage",
                         json={"name": name, "version": versions[0], "stage": "Production",
                               "archive_existing_versions": True}),
            lambda: requests.delete(f"{b.url}/api/2.0/mlflow/model-versions/delete",
                                    json={"name": name, "version": versions[1]}, timeout=30),
        )
        assert ra.status_code < 500 and rb.status_code < 500, (ra.text, rb.text)
