"""The kiln CLI's read commands, against the server URL and directly against the store.

The JSON shapes are kiln's own, so these tests only rely on what any shape must contain (ids,
names, keys and values) and on exit codes and messages.
"""

from __future__ import annotations

import json
import time

import mlflow
import pytest

from conftest import free_port, run_kiln, unique

pytestmark = pytest.mark.kiln_only

ANSI = "\x1b["


def _json(stdout: str):
    """A JSON document, or JSON lines."""
    try:
        return json.loads(stdout)
    except json.JSONDecodeError:
        return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _atoms(obj) -> set:
    """Every key, string and number anywhere in a JSON value (numbers also as their str())."""
    out: set = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.add(k)
            out |= _atoms(v)
    elif isinstance(obj, list):
        for v in obj:
            out |= _atoms(v)
    elif isinstance(obj, bool) or obj is None:
        pass
    elif isinstance(obj, (int, float)):
        out |= {obj, str(obj)}
    else:
        out.add(obj)
    return out


@pytest.fixture(scope="module")
def cli_data(server):
    """An experiment with two finished runs, logged with the stock client."""
    mlflow.set_tracking_uri(server.url)
    client = mlflow.MlflowClient(server.url)
    name = unique("cli-exp")
    exp_id = client.create_experiment(name)
    runs = {}
    for label, lr, acc in (("alpha", "0.1", 0.91), ("beta", "0.01", 0.87)):
        run = client.create_run(exp_id, run_name=f"run-{label}", tags={"team": "cli"})
        rid = run.info.run_id
        client.log_param(rid, "lr", lr)
        client.log_param(rid, "model", f"model-{label}")
        client.log_metric(rid, "acc", acc, step=0)
        client.log_metric(rid, "loss", 1.0 - acc, step=0)
        client.set_terminated(rid)
        runs[label] = rid
    return {"name": name, "exp_id": exp_id, "runs": runs}


def _uris(server):
    """The same store, reached through the server and directly."""
    return [("server", server.url), ("store", server.store.backend_store_uri)]


def kiln(server, *args, check=True, env=None):
    merged = dict(server.env)
    merged.update(env or {})
    proc = run_kiln(*args, env=merged, check=check)
    assert "panicked" not in proc.stderr, proc.stderr
    if check:
        assert ANSI not in proc.stdout, "colour codes in non-TTY output"
    return proc


def test_runs_list(server, cli_data):
    runs = cli_data["runs"]
    for how, uri in _uris(server):
        for exp in (cli_data["name"], cli_data["exp_id"]):
            out = kiln(server, "runs", "list", "--experiment", exp, "--json", "--tracking-uri", uri).stdout
            atoms = _atoms(_json(out))
            assert runs["alpha"] in atoms and runs["beta"] in atoms, (how, exp, out[:500])
            assert "run-alpha" in atoms and "run-beta" in atoms, (how, out[:500])

        table = kiln(server, "runs", "list", "--experiment", cli_data["name"], "--tracking-uri", uri).stdout
        assert "run-alpha" in table and "run-beta" in table, (how, table)
        for rid in runs.values():
            assert rid[:8] in table, (how, table)
        with pytest.raises(json.JSONDecodeError):
            json.loads(table)


def test_runs_list_via_env(server, cli_data):
    out = kiln(
        server, "runs", "list", "--experiment", cli_data["name"], "--json", env={"KILN_TRACKING_URI": server.url}
    ).stdout
    assert cli_data["runs"]["alpha"] in _atoms(_json(out))


def test_runs_show(server, cli_data):
    rid = cli_data["runs"]["alpha"]
    for how, uri in _uris(server):
        out = kiln(server, "runs", "show", rid, "--json", "--tracking-uri", uri).stdout
        atoms = _atoms(_json(out))
        assert rid in atoms, (how, out[:500])
        assert {"lr", "0.1", "model", "model-alpha", "acc", "loss", "team", "cli", "run-alpha"} <= atoms, (
            how,
            out[:800],
        )
        assert "0.91" in atoms, (how, out[:800])
        assert "FINISHED" in atoms, (how, out[:800])

        table = kiln(server, "runs", "show", rid, "--tracking-uri", uri).stdout
        for needle in (rid, "run-alpha", "lr", "0.1", "acc", "0.91", "model-alpha"):
            assert needle in table, (how, needle, table)


def test_runs_compare(server, cli_data):
    a, b = cli_data["runs"]["alpha"], cli_data["runs"]["beta"]
    for how, uri in _uris(server):
        out = kiln(server, "runs", "compare", a, b, "--json", "--tracking-uri", uri).stdout
        atoms = _atoms(_json(out))
        assert {a, b, "lr", "acc", "0.1", "0.01"} <= atoms, (how, out[:800])
        assert "0.91" in atoms and "0.87" in atoms, (how, out[:800])

        table = kiln(server, "runs", "compare", a, b, "--tracking-uri", uri).stdout
        for needle in ("lr", "acc", "0.1", "0.01", "0.91", "0.87"):
            assert needle in table, (how, needle, table)
        # The short ids the table heads its columns with name the runs to `runs show`.
        assert a[:8] in table, (how, table)
        out = kiln(server, "runs", "show", a[:8], "--json", "--tracking-uri", uri).stdout
        assert _json(out)["info"]["run_id"] == a, (how, out[:300])


def test_experiments_list_and_create(server, cli_data):
    for how, uri in _uris(server):
        name = unique(f"cli-created-{how}")
        proc = kiln(server, "experiments", "create", name, "--tracking-uri", uri)
        assert proc.returncode == 0
        exp = mlflow.MlflowClient(server.url).get_experiment_by_name(name)
        assert exp is not None and exp.lifecycle_stage == "active", (how, proc.stdout, proc.stderr)
        assert exp.experiment_id in proc.stdout or name in proc.stdout, (how, proc.stdout)

        atoms = _atoms(_json(kiln(server, "experiments", "list", "--json", "--tracking-uri", uri).stdout))
        assert {name, cli_data["name"], cli_data["exp_id"], exp.experiment_id, "Default"} <= atoms, how
        table = kiln(server, "experiments", "list", "--tracking-uri", uri).stdout
        assert name in table and cli_data["name"] in table and "Default" in table, (how, table)

        dup = kiln(server, "experiments", "create", name, "--tracking-uri", uri, check=False)
        assert dup.returncode != 0, (how, dup.stdout)
        assert "exist" in dup.stderr.lower(), (how, dup.stderr)


def test_bad_input(server, cli_data):
    unknown = "0123456789abcdef0123456789abcdef"
    for how, uri in _uris(server):
        proc = kiln(server, "runs", "show", unknown, "--tracking-uri", uri, check=False)
        assert proc.returncode not in (0, 101), (how, proc.returncode, proc.stdout, proc.stderr)
        err = proc.stderr.lower()
        assert unknown in err or "not found" in err or "does not exist" in err, (how, proc.stderr)
        assert proc.stdout.strip() == "", (how, proc.stdout)

        proc = kiln(server, "runs", "show", unknown, "--json", "--tracking-uri", uri, check=False)
        assert proc.returncode not in (0, 101), (how, proc.stderr)

        proc = kiln(server, "runs", "list", "--experiment", unique("no-such-exp"), "--tracking-uri", uri, check=False)
        assert proc.returncode not in (0, 101), (how, proc.stdout, proc.stderr)
        assert (
            "not found" in proc.stderr.lower()
            or "does not exist" in proc.stderr.lower()
            or "no-such-exp" in proc.stderr
        )

        proc = kiln(server, "runs", "compare", cli_data["runs"]["alpha"], unknown, "--tracking-uri", uri, check=False)
        assert proc.returncode not in (0, 101), (how, proc.stdout, proc.stderr)

    proc = kiln(server, "runs", "list", "--experiment", "x", "--tracking-uri", "bogus://nowhere", check=False)
    assert proc.returncode not in (0, 101) and proc.stderr.strip(), proc.stderr

    # A server that is not there: a prompt, clear failure (the client must not retry for minutes).
    dead = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    proc = kiln(server, "experiments", "list", "--tracking-uri", dead, check=False)
    assert proc.returncode not in (0, 101), proc.stderr
    assert proc.stderr.strip()
    assert time.monotonic() - t0 < 60


@pytest.mark.kiln_only
def test_sqlite_uris_read_as_mlflow_reads_them(tmp_path):
    """`sqlite:///mlflow.db` is relative to the working directory, as for `mlflow server`;
    `sqlite:////abs/path` is absolute; and the store named by KILN_BACKEND_STORE_URI is the one
    `kiln experiments` reads when no --tracking-uri is given."""
    work = tmp_path / "work"
    work.mkdir()
    run_kiln("experiments", "create", "rel", "--tracking-uri", "sqlite:///mlflow.db", cwd=work)
    assert (work / "mlflow.db").is_file()
    absolute = tmp_path / "abs" / "kiln.db"
    run_kiln("experiments", "create", "abs", "--tracking-uri", f"sqlite:///{absolute}", cwd=work)
    assert absolute.is_file()
    proc = run_kiln("experiments", "list", "--json", cwd=work, env={"KILN_BACKEND_STORE_URI": f"sqlite:///{absolute}"})
    names = {e["name"] for e in _json(proc.stdout)}
    assert "abs" in names and "rel" not in names, names


def test_a_schema_newer_than_the_binary_is_a_setup_error(tmp_path):
    """A store written by a newer kiln is refused with both versions named and exit 2 (the
    operator's to fix, like `kiln db upgrade` for an older PostgreSQL schema), not exit 3."""
    import sqlite3

    db = tmp_path / "kiln.db"
    run_kiln("experiments", "create", "x", "--tracking-uri", f"sqlite:///{db}")
    with sqlite3.connect(db) as conn:
        latest = conn.execute("SELECT MAX(version) FROM kiln_migrations").fetchone()[0]
        conn.execute("INSERT INTO kiln_migrations (version, description, applied_at) VALUES (?, 'future', 0)", (latest + 1,))
    proc = run_kiln("runs", "list", "--tracking-uri", f"sqlite:///{db}", check=False)
    assert proc.returncode == 2, proc.stderr
    assert str(latest) in proc.stderr and str(latest + 1) in proc.stderr, proc.stderr
