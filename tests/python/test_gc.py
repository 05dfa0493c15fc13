"""`kiln gc` permanently removes deleted runs and experiments, with their artifacts and logged
models, while the server keeps running; live data is untouched and `--older-than` is honoured."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest
import requests
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException

from conftest import unique

pytestmark = pytest.mark.kiln_only


def _populate(client, exp_id: str, label: str, model) -> tuple[str, str]:
    """A finished run with params, metrics, plain artifacts and a logged model."""
    with mlflow.start_run(experiment_id=exp_id, run_name=label) as run:
        mlflow.log_param("label", label)
        mlflow.log_metric("score", 0.5, step=1)
        mlflow.log_text(f"notes of {label}\n", "notes/readme.txt")
        mlflow.log_dict({"label": label}, "cfg/config.json")
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
    return run.info.run_id, info.model_id


def _purged_logged_model(srv, model_id: str) -> bool:
    """Whether the logged model is gone from the store, not merely deleted (a deleted one is
    still found with `allow_deleted=true`)."""
    r = requests.get(
        f"{srv.url}/api/2.0/mlflow/logged-models/{model_id}", params={"allow_deleted": "true"}, timeout=30
    )
    return r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def _code(fn, *args) -> str:
    with pytest.raises(MlflowException) as e:
        fn(*args)
    return e.value.error_code


def _mentions(files: list[str], ident: str) -> list[str]:
    return [f for f in files if ident in f]


@pytest.mark.parametrize(("backend", "artifacts"), [("sqlite", "file"), ("postgresql", "s3")])
def test_gc_collects_deleted_runs_experiments_and_models(server_factory, iris, tmp_path, backend, artifacts):
    model, X_test, _ = iris
    srv = server_factory.server(backend, artifacts)
    mlflow.set_tracking_uri(srv.url)
    mlflow.set_registry_uri(srv.url)
    client = mlflow.MlflowClient(srv.url, srv.url)
    try:
        keep_name, gone_name = unique("gc-keep"), unique("gc-gone")
        exp_keep = client.create_experiment(keep_name)
        exp_gone = client.create_experiment(gone_name)
        live, live_model = _populate(client, exp_keep, "live", model)
        dead, dead_model = _populate(client, exp_keep, "dead", model)
        doomed, doomed_model = _populate(client, exp_gone, "doomed", model)

        files = srv.store.artifact_files()
        for ident in (live, live_model, dead, dead_model, doomed, doomed_model):
            assert _mentions(files, ident), f"no stored artifact names {ident}: {files}"

        client.delete_run(dead)
        client.delete_experiment(exp_gone)

        # Nothing is old enough for --older-than 30d: everything stays.
        srv.kiln("gc", "--older-than", "30d")
        assert client.get_run(dead).info.lifecycle_stage == "deleted"
        assert client.get_experiment(exp_gone).lifecycle_stage == "deleted"
        assert srv.store.artifact_files() == files

        # Plain gc collects everything deleted, while the server runs.
        srv.kiln("gc")
        after = srv.store.artifact_files()
        for ident in (dead, dead_model, doomed, doomed_model):
            assert not _mentions(after, ident), f"gc left files of {ident}: {_mentions(after, ident)}"
        assert not [f for f in after if f.startswith(f"{exp_gone}/")], after
        # Live files are all still there.
        assert _mentions(after, live) == _mentions(files, live)
        assert _mentions(after, live_model) == _mentions(files, live_model)

        assert _code(client.get_run, dead) == "RESOURCE_DOES_NOT_EXIST"
        assert _code(client.get_run, doomed) == "RESOURCE_DOES_NOT_EXIST"
        assert _code(client.get_experiment, exp_gone) == "RESOURCE_DOES_NOT_EXIST"
        assert _purged_logged_model(srv, dead_model)
        assert _purged_logged_model(srv, doomed_model)
        assert client.get_experiment_by_name(gone_name) is None
        # The name of a collected experiment is free again.
        assert client.create_experiment(gone_name)

        # The live run is intact: metadata, artifacts and model.
        run = client.get_run(live)
        assert run.info.lifecycle_stage == "active"
        assert run.data.params == {"label": "live"}
        assert run.data.metrics == {"score": 0.5}
        remaining = {r.info.run_id for r in client.search_runs([exp_keep], run_view_type=ViewType.ALL)}
        assert remaining == {live}
        assert mlflow.artifacts.load_text(f"runs:/{live}/notes/readme.txt") == "notes of live\n"
        assert mlflow.artifacts.load_dict(f"runs:/{live}/cfg/config.json") == {"label": "live"}
        assert client.get_logged_model(live_model).source_run_id == live
        loaded = mlflow.pyfunc.load_model(f"runs:/{live}/model")
        np.testing.assert_array_equal(loaded.predict(X_test), model.predict(X_test))

        # gc is idempotent.
        srv.kiln("gc")
        assert srv.store.artifact_files() == after
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()


def test_gc_on_empty_store(server_factory):
    srv = server_factory.server("sqlite", "file")
    proc = srv.kiln("gc")
    assert proc.returncode == 0
    assert "panicked" not in proc.stderr


@pytest.mark.parametrize(("backend", "artifacts"), [("sqlite", "file"), ("postgresql", "s3")])
def test_gc_keeps_what_the_registry_or_another_experiment_still_uses(server_factory, backend, artifacts):
    """A deleted run that a model version names (as `kiln train --register` does: `run_id` and
    `runs:/<id>/model`) stays; an artifact location shared with a live experiment stays; a
    deleted logged model waits for --older-than like everything else."""
    srv = server_factory.server(backend, artifacts)
    client = mlflow.MlflowClient(srv.url, srv.url)
    api = f"{srv.url}/api/2.0/mlflow"

    def run_with_file(exp_id: str, text: str) -> str:
        run = client.create_run(exp_id)
        client.log_text(run.info.run_id, text, "notes.txt")
        client.set_terminated(run.info.run_id)
        return run.info.run_id

    # Two experiments sharing one artifact location; the first is deleted.
    shared = f"mlflow-artifacts:/{unique('team')}"
    exp_a = client.create_experiment(unique("gc-a"), artifact_location=shared)
    exp_b = client.create_experiment(unique("gc-b"), artifact_location=shared)
    run_a = run_with_file(exp_a, "a")
    run_b = run_with_file(exp_b, "b")

    # A deleted run that a registered model version is built from.
    exp_c = client.create_experiment(unique("gc-c"))
    registered = run_with_file(exp_c, "champion")
    name = unique("gc-model")
    client.create_registered_model(name)
    r = requests.post(
        f"{api}/model-versions/create",
        json={"name": name, "source": f"runs:/{registered}/model", "run_id": registered},
        timeout=30,
    )
    assert r.status_code == 200, r.text

    # A logged model deleted just now.
    fresh = client.create_logged_model(exp_c, name="fresh")

    before = srv.store.artifact_files()
    assert _mentions(before, run_a) and _mentions(before, run_b) and _mentions(before, registered)
    client.delete_experiment(exp_a)
    client.delete_run(registered)
    client.delete_logged_model(fresh.model_id)

    srv.kiln("gc", "--older-than", "1d")
    # Still there (deleted, so only found when asked for as MLflow's server does).
    r = requests.get(f"{api}/logged-models/{fresh.model_id}", params={"allow_deleted": "true"}, timeout=30)
    assert r.status_code == 200, r.text

    proc = srv.kiln("gc", "--json")
    report = json.loads(proc.stdout)
    assert report["runs"] == [run_a], report
    assert {(k["kind"], k["id"]) for k in report["kept"]} == {("run", registered)}, report
    assert f"{name} version 1" in report["kept"][0]["reason"]
    assert [s["in_use_by"] for s in report["shared_locations"]] == [shared], report
    assert fresh.model_id in report["logged_models"]

    after = srv.store.artifact_files()
    assert not _mentions(after, run_a), after
    assert _mentions(after, run_b) == _mentions(before, run_b)
    assert _mentions(after, registered) == _mentions(before, registered)
    assert client.get_run(registered).info.lifecycle_stage == "deleted"
    assert client.get_run(run_b).data is not None
    assert _code(client.get_experiment, exp_a) == "RESOURCE_DOES_NOT_EXIST"
    assert client.get_experiment(exp_b).lifecycle_stage == "active"
    assert _purged_logged_model(srv, fresh.model_id)
    # The kept run's file is still readable through the server.
    assert client.download_artifacts(registered, "notes.txt") is not None


def test_gc_sweeps_uploads_that_never_finished(server_factory):
    """A server killed mid-upload leaves a hidden temporary file beside the destination; `kiln
    gc` removes those untouched for an hour, and leaves recent ones (maybe still uploading)."""
    import os
    import time

    srv = server_factory.server("sqlite", "file")
    root = srv.store.artifact_root
    d = root / "1" / "0123456789abcdef0123456789abcdef" / "artifacts"
    d.mkdir(parents=True)
    stale = d / ".model.bin.kiln-tmp-0123456789abcdef0123456789abcdef"
    recent = d / ".other.bin.kiln-tmp-fedcba9876543210fedcba9876543210"
    for f in (stale, recent):
        f.write_bytes(b"partial upload")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))

    dry = json.loads(srv.kiln("gc", "--dry-run", "--json").stdout)
    rel = str(stale.relative_to(root))
    assert dry["abandoned_uploads"] == [rel], dry
    assert stale.exists()
    report = json.loads(srv.kiln("gc", "--json").stdout)
    assert report["abandoned_uploads"] == [rel], report
    assert not stale.exists()
    assert recent.exists()
