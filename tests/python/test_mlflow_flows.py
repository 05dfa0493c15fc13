"""The stock MLflow client's flows, end to end, against a tracking server.

Every test here must also pass against the reference `mlflow server`
(KILN_TEST_AGAINST_MLFLOW=1): expectations are MLflow's real behaviour.
"""

from __future__ import annotations

import math
import re
import socket
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException

from conftest import rest, unique

RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def _history(client, run_id, key):
    return sorted(((m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key)))


# ------------------------------------------------------------------------------------------
# experiments and runs


def test_set_experiment_and_start_run_with_tags(client):
    name = unique("flows-exp")
    exp = mlflow.set_experiment(name)
    assert exp.name == name
    assert exp.experiment_id.isdigit()
    assert exp.lifecycle_stage == "active"
    assert exp.artifact_location == f"mlflow-artifacts:/{exp.experiment_id}"
    # set_experiment on an existing name returns the same experiment.
    assert mlflow.set_experiment(name).experiment_id == exp.experiment_id
    assert client.get_experiment_by_name(name).experiment_id == exp.experiment_id

    before = int(time.time() * 1000)
    with mlflow.start_run(run_name="first", tags={"team": "vision", "stage": "dev"}) as run:
        assert RUN_ID.match(run.info.run_id)
        assert run.info.status == "RUNNING"
        assert run.info.run_name == "first"
        assert run.info.experiment_id == exp.experiment_id
    got = client.get_run(run.info.run_id)
    assert got.info.status == "FINISHED"
    assert got.info.lifecycle_stage == "active"
    assert got.info.start_time >= before - 5000
    assert got.info.end_time >= got.info.start_time
    assert got.info.artifact_uri == f"mlflow-artifacts:/{exp.experiment_id}/{run.info.run_id}/artifacts"
    tags = got.data.tags
    assert tags["team"] == "vision" and tags["stage"] == "dev"
    assert tags["mlflow.runName"] == "first"
    assert tags["mlflow.source.type"] == "LOCAL"
    assert "mlflow.user" in tags

    # Without a run_name the server generates one and records it as a tag too.
    with mlflow.start_run() as anon:
        pass
    anon = client.get_run(anon.info.run_id)
    assert anon.info.run_name
    assert anon.data.tags["mlflow.runName"] == anon.info.run_name


def test_nested_runs_and_rename(client):
    mlflow.set_experiment(unique("flows-nested"))
    with mlflow.start_run(run_name="parent") as parent:
        with mlflow.start_run(run_name="child", nested=True) as child:
            pass
    got = client.get_run(child.info.run_id)
    assert got.data.tags["mlflow.parentRunId"] == parent.info.run_id

    client.update_run(child.info.run_id, name="renamed")
    got = client.get_run(child.info.run_id)
    assert got.info.run_name == "renamed"
    assert got.data.tags["mlflow.runName"] == "renamed"


def test_params(client):
    mlflow.set_experiment(unique("flows-params"))
    with mlflow.start_run() as run:
        mlflow.log_param("lr", 0.1)
        mlflow.log_params({"epochs": 10, "optimizer": "adam", "layers": [64, 32]})
        mlflow.log_param("lr", 0.1)  # re-logging the same value is fine
        with pytest.raises(MlflowException) as e:
            mlflow.log_param("lr", 0.2)
        assert e.value.error_code == "INVALID_PARAMETER_VALUE"
        with pytest.raises(MlflowException) as e:
            mlflow.log_params({"epochs": 11})
        assert e.value.error_code == "INVALID_PARAMETER_VALUE"
    params = client.get_run(run.info.run_id).data.params
    assert params == {"lr": "0.1", "epochs": "10", "optimizer": "adam", "layers": "[64, 32]"}


def test_metrics_steps_and_history(client):
    mlflow.set_experiment(unique("flows-metrics"))
    with mlflow.start_run() as run:
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.5, "f1": 0.25}, step=0)
        mlflow.log_metrics({"acc": 0.75, "f1": 0.5}, step=1)
        # An older step logged later does not become the latest value.
        mlflow.log_metric("loss", 42.0, step=2)
        mlflow.log_metric("no_step", 3.5)
    run_id = run.info.run_id

    loss = _history(client, run_id, "loss")
    assert [(s, v) for s, _, v in loss] == [(0, 1.0), (1, 0.5), (2, 1 / 3), (2, 42.0), (3, 0.25), (4, 0.2)]
    assert all(isinstance(ts, int) and ts > 1_600_000_000_000 for _, ts, _ in loss)
    assert [(s, v) for s, _, v in _history(client, run_id, "acc")] == [(0, 0.5), (1, 0.75)]
    assert [(s, v) for s, _, v in _history(client, run_id, "no_step")] == [(0, 3.5)]
    assert client.get_metric_history(run_id, "never_logged") == []

    metrics = client.get_run(run_id).data.metrics
    assert metrics == {"loss": 0.2, "acc": 0.75, "f1": 0.5, "no_step": 3.5}


def test_metric_history_pagination_many_points(client):
    """The client pages get-history with max_results=25000; 2500 points stay in order and complete."""
    exp_id = client.create_experiment(unique("flows-history"))
    run_id = client.create_run(exp_id).info.run_id
    ts = int(time.time() * 1000)
    points = [Metric("m", float(i), ts + i, i) for i in range(2500)]
    for i in range(0, len(points), 1000):
        client.log_batch(run_id, metrics=points[i : i + 1000])
    hist = client.get_metric_history(run_id, "m")
    assert sorted((m.step, m.value) for m in hist) == [(i, float(i)) for i in range(2500)]
    assert client.get_run(run_id).data.metrics["m"] == 2499.0


def test_latest_metric_tie_breaks(client):
    """Latest value = max step, then max timestamp, then max value."""
    exp_id = client.create_experiment(unique("flows-latest"))
    run_id = client.create_run(exp_id).info.run_id
    client.log_batch(
        run_id,
        metrics=[
            Metric("a", 1.0, 2000, 5),
            Metric("a", 9.0, 1000, 5),  # same step, older timestamp
            Metric("a", 100.0, 9000, 4),  # newer but a lower step
            Metric("b", 1.0, 1000, 1),
            Metric("b", 3.0, 1000, 1),  # same step and timestamp: max value
            Metric("b", 2.0, 1000, 1),
        ],
    )
    metrics = client.get_run(run_id).data.metrics
    assert metrics["a"] == 1.0
    assert metrics["b"] == 3.0


def test_metric_nan_and_infinity_round_trip(client, tracking):
    exp_id = client.create_experiment(unique("flows-nan"))
    run_id = client.create_run(exp_id).info.run_id
    client.log_metric(run_id, "nan", float("nan"), step=0)
    client.log_metric(run_id, "nan", 1.0, step=1)
    client.log_metric(run_id, "nan", float("nan"), step=2)
    client.log_metric(run_id, "pinf", float("inf"))
    client.log_metric(run_id, "ninf", float("-inf"))
    metrics = client.get_run(run_id).data.metrics
    assert math.isnan(metrics["nan"])
    # MLflow's SQL store clamps ±inf to ±sys.float_info.max; kiln may keep ±inf. Either reads back huge.
    assert metrics["pinf"] >= sys.float_info.max
    assert metrics["ninf"] <= -sys.float_info.max
    hist = sorted(client.get_metric_history(run_id, "nan"), key=lambda m: m.step)
    assert [m.step for m in hist] == [0, 1, 2]
    assert math.isnan(hist[0].value) and hist[1].value == 1.0 and math.isnan(hist[2].value)

    # On the wire, NaN is the JSON string "NaN" (JSON has no NaN literal).
    r = rest(tracking, "GET", "runs/get", params={"run_id": run_id})
    assert r.status_code == 200
    wire = {m["key"]: m["value"] for m in r.json()["run"]["data"]["metrics"]}
    assert wire["nan"] == "NaN"


def test_log_batch(client):
    exp_id = client.create_experiment(unique("flows-batch"))
    run_id = client.create_run(exp_id).info.run_id
    ts = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric("m1", 1.0, ts, 0), Metric("m1", 2.0, ts + 1, 1), Metric("m2", -5.5, ts, 3)],
        params=[Param("p1", "a"), Param("p2", "b")],
        tags=[RunTag("t1", "x"), RunTag("t2", "y")],
    )
    client.log_batch(run_id, tags=[RunTag("t1", "overwritten")])
    run = client.get_run(run_id)
    assert run.data.metrics == {"m1": 2.0, "m2": -5.5}
    assert run.data.params == {"p1": "a", "p2": "b"}
    assert run.data.tags["t1"] == "overwritten" and run.data.tags["t2"] == "y"
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "m1")] == [(0, 1.0), (1, 2.0)]

    # A batch that changes a param value is rejected as a whole.
    with pytest.raises(MlflowException) as e:
        client.log_batch(run_id, metrics=[Metric("m3", 1.0, ts, 0)], params=[Param("p1", "changed")])
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"
    run = client.get_run(run_id)
    assert run.data.params["p1"] == "a"


def test_set_and_delete_tag(client):
    mlflow.set_experiment(unique("flows-tags"))
    with mlflow.start_run() as run:
        mlflow.set_tag("k", "v1")
        mlflow.set_tag("k", "v2")
        mlflow.set_tags({"a": "1", "b": "2"})
    run_id = run.info.run_id
    tags = client.get_run(run_id).data.tags
    assert tags["k"] == "v2" and tags["a"] == "1" and tags["b"] == "2"
    client.delete_tag(run_id, "a")
    tags = client.get_run(run_id).data.tags
    assert "a" not in tags and tags["b"] == "2"
    with pytest.raises(MlflowException) as e:
        client.delete_tag(run_id, "a")
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"


# ------------------------------------------------------------------------------------------
# artifacts


def test_artifacts_files_dirs_list_download(client, tmp_path):
    src = tmp_path / "src"
    (src / "deep" / "er").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "deep" / "b.json").write_text('{"b": 1}')
    (src / "deep" / "er" / "c.bin").write_bytes(bytes(range(256)) * 4)
    single = tmp_path / "single.txt"
    single.write_text("just one file")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    spaced = tmp_path / "with space+plus.txt"
    spaced.write_text("spaces")

    mlflow.set_experiment(unique("flows-artifacts"))
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(single))
        mlflow.log_artifact(str(empty), artifact_path="sub")
        mlflow.log_artifact(str(spaced), artifact_path="sub")
        mlflow.log_artifacts(str(src), artifact_path="tree")
    run_id = run.info.run_id

    root = {f.path: f for f in client.list_artifacts(run_id)}
    assert set(root) == {"single.txt", "sub", "tree"}
    assert root["single.txt"].is_dir is False and root["single.txt"].file_size == len("just one file")
    assert root["sub"].is_dir is True and root["tree"].is_dir is True

    tree = {f.path: f for f in client.list_artifacts(run_id, "tree")}
    assert set(tree) == {"tree/a.txt", "tree/deep"}
    assert tree["tree/a.txt"].file_size == 6
    deep = {f.path: (f.is_dir, f.file_size) for f in client.list_artifacts(run_id, "tree/deep")}
    assert deep == {"tree/deep/b.json": (False, 8), "tree/deep/er": (True, None)}
    # proto3 drops a zero file_size, so MLflow's client reads None for an empty file.
    sub = {f.path: f.file_size or 0 for f in client.list_artifacts(run_id, "sub")}
    assert sub == {"sub/empty.txt": 0, "sub/with space+plus.txt": 6}
    assert client.list_artifacts(run_id, "does/not/exist") == []

    # Whole directory download.
    out = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="tree", dst_path=str(tmp_path / "dl")))
    assert (out / "a.txt").read_text() == "alpha\n"
    assert (out / "deep" / "b.json").read_text() == '{"b": 1}'
    assert (out / "deep" / "er" / "c.bin").read_bytes() == bytes(range(256)) * 4

    # Single files, including an empty one and one with a space and a plus in its name.
    one = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="single.txt", dst_path=str(tmp_path / "dl1"))
    assert Path(one).read_text() == "just one file"
    e = client.download_artifacts(run_id, "sub/empty.txt", str(tmp_path / "dl2"))
    assert Path(e).read_bytes() == b""
    s = client.download_artifacts(run_id, "sub/with space+plus.txt", str(tmp_path / "dl3"))
    assert Path(s).read_text() == "spaces"

    # The whole run.
    everything = Path(mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(tmp_path / "all")))
    files = sorted(str(p.relative_to(everything)) for p in everything.rglob("*") if p.is_file())
    assert files == [
        "single.txt",
        "sub/empty.txt",
        "sub/with space+plus.txt",
        "tree/a.txt",
        "tree/deep/b.json",
        "tree/deep/er/c.bin",
    ]

    # Overwrite: logging the same path again replaces the content.
    single.write_text("v2")
    client.log_artifact(run_id, str(single))
    again = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="single.txt", dst_path=str(tmp_path / "dl4")
    )
    assert Path(again).read_text() == "v2"


def test_artifact_names_with_percent_and_dot_paths(client, tmp_path):
    """`acc_95%.png` is a name (only `%XX`, which reads as encoding, is refused), and `.`
    segments mean what they mean on a filesystem, as on MLflow's server."""
    pct = tmp_path / "acc_95%.txt"
    pct.write_text("ninety-five")
    mlflow.set_experiment(unique("flows-names"))
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(pct), artifact_path="plots")
    run_id = run.info.run_id
    # (the client joins the names it gets back onto the path it asked for)
    assert [f.path for f in client.list_artifacts(run_id, ".")] == ["./plots"]
    assert [f.path for f in client.list_artifacts(run_id, "./plots")] == ["./plots/acc_95%.txt"]
    got = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="plots/acc_95%.txt",
                                              dst_path=str(tmp_path / "dl"))
    assert Path(got).read_text() == "ninety-five"
    whole = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=".", dst_path=str(tmp_path / "all")))
    assert (whole / "plots" / "acc_95%.txt").read_text() == "ninety-five"


def test_log_text_and_dict(client):
    mlflow.set_experiment(unique("flows-text"))
    payload = {"name": "kiln", "layers": [1, 2, 3], "nested": {"ok": True}}
    with mlflow.start_run() as run:
        mlflow.log_text("hello kiln\nsecond line ünïcödé\n", "notes/hello.txt")
        mlflow.log_dict(payload, "config/cfg.json")
        mlflow.log_dict(payload, "config/cfg.yaml")
    base = f"runs:/{run.info.run_id}"
    assert mlflow.artifacts.load_text(f"{base}/notes/hello.txt") == "hello kiln\nsecond line ünïcödé\n"
    assert mlflow.artifacts.load_dict(f"{base}/config/cfg.json") == payload
    # load_dict parses JSON only; a YAML dict is read back as text.
    assert yaml.safe_load(mlflow.artifacts.load_text(f"{base}/config/cfg.yaml")) == payload
    # The mlflow-artifacts: URI form works too.
    uri = client.get_run(run.info.run_id).info.artifact_uri
    assert mlflow.artifacts.load_dict(f"{uri}/config/cfg.json") == payload


def test_raw_artifact_proxy(tracking):
    """The proxy endpoints themselves: PUT raw bytes, GET, list (basenames), DELETE."""
    base = f"{tracking.url}/api/2.0/mlflow-artifacts/artifacts"
    prefix = f"0/{unique('raw')}"
    import requests

    r = requests.put(f"{base}/{prefix}/dir/x.txt", data=b"xyz", timeout=30)
    assert r.status_code == 200, r.text
    r = requests.put(f"{base}/{prefix}/y.bin", data=b"\x00\x01", timeout=30)
    assert r.status_code == 200, r.text
    r = requests.get(f"{base}/{prefix}/dir/x.txt", timeout=30)
    assert r.status_code == 200 and r.content == b"xyz"
    r = requests.get(base, params={"path": prefix}, timeout=30)
    assert r.status_code == 200
    files = sorted(r.json()["files"], key=lambda f: f["path"])
    assert files == [{"path": "dir", "is_dir": True}, {"path": "y.bin", "is_dir": False, "file_size": 2}]
    # Listing a file or a missing dir gives an empty object.
    assert requests.get(base, params={"path": f"{prefix}/y.bin"}, timeout=30).json() == {}
    assert requests.get(base, params={"path": f"{prefix}/nope"}, timeout=30).json() == {}
    # A missing file is a 404.
    r = requests.get(f"{base}/{prefix}/nope.txt", timeout=30)
    assert r.status_code == 404
    r = requests.delete(f"{base}/{prefix}/y.bin", timeout=30)
    assert r.status_code == 200
    assert requests.get(f"{base}/{prefix}/y.bin", timeout=30).status_code == 404


# ------------------------------------------------------------------------------------------
# models and the registry


def test_sklearn_log_model_register_alias_and_load(client, iris, tmp_path):
    model, X_test, _ = iris
    expected = model.predict(X_test)
    name = unique("flows-model")
    mlflow.set_experiment(unique("flows-models"))
    with mlflow.start_run() as run:
        mlflow.log_param("max_iter", 200)
        mlflow.log_metric("accuracy", float((expected == iris[2]).mean()))
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=name,
            input_example=X_test.iloc[:3],
            pip_requirements=["scikit-learn"],
        )
    run_id = run.info.run_id
    assert info.model_id.startswith("m-")
    assert str(info.registered_model_version) == "1"
    assert info.run_id == run_id

    logged = client.get_logged_model(info.model_id)
    assert logged.status.to_int() == mlflow.entities.LoggedModelStatus.READY.to_int()
    assert logged.source_run_id == run_id
    assert logged.experiment_id == run.info.experiment_id
    assert logged.artifact_location == f"mlflow-artifacts:/{run.info.experiment_id}/models/{info.model_id}/artifacts"

    mv = client.get_model_version(name, "1")
    assert mv.version == "1" and mv.status == "READY" and mv.run_id == run_id
    assert mv.current_stage == "None"

    client.set_registered_model_alias(name, "champion", "1")
    by_alias = client.get_model_version_by_alias(name, "champion")
    assert by_alias.version == "1"
    assert "champion" in by_alias.aliases
    rm = client.get_registered_model(name)
    assert rm.aliases == {"champion": "1"}

    for uri in (
        f"models:/{name}@champion",
        f"models:/{name}/1",
        f"runs:/{run_id}/model",
        info.model_uri,
    ):
        loaded = mlflow.pyfunc.load_model(uri)
        np.testing.assert_array_equal(loaded.predict(X_test), expected, err_msg=uri)

    # register_model from runs:/ adds version 2; moving the alias points the name at it.
    mv2 = mlflow.register_model(f"runs:/{run_id}/model", name)
    assert mv2.version == "2"
    client.set_registered_model_alias(name, "champion", "2")
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    assert client.get_registered_model(name).aliases == {"champion": "2"}
    client.delete_registered_model_alias(name, "champion")
    assert client.get_registered_model(name).aliases == {}

    # The model files themselves are plain artifacts of the logged model.
    files = {f.path for f in mlflow.artifacts.list_artifacts(info.model_uri)}
    assert {"MLmodel", "requirements.txt", "input_example.json"} <= {Path(p).name for p in files}
    mlmodel = mlflow.artifacts.load_text(f"{logged.artifact_location}/MLmodel")
    assert "sklearn" in mlmodel


def test_registry_versions_tags_and_search(client, iris):
    model, X_test, _ = iris
    name = unique("flows-reg")
    mlflow.set_experiment(unique("flows-reg-exp"))
    client.create_registered_model(name, tags={"owner": "kiln"}, description="desc")
    with pytest.raises(MlflowException) as e:
        client.create_registered_model(name)
    assert e.value.error_code == "RESOURCE_ALREADY_EXISTS"

    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(model, name="m", pip_requirements=["scikit-learn"])
    v1 = client.create_model_version(name, info.model_uri, run_id=run.info.run_id, model_id=info.model_id)
    v2 = client.create_model_version(name, info.model_uri, run_id=run.info.run_id, model_id=info.model_id)
    assert (v1.version, v2.version) == ("1", "2")
    client.set_model_version_tag(name, "2", "validated", "yes")
    client.set_registered_model_tag(name, "team", "ml")
    client.update_model_version(name, "1", description="first")

    rm = client.get_registered_model(name)
    assert rm.tags == {"owner": "kiln", "team": "ml"}
    assert rm.description == "desc"
    assert client.get_model_version(name, "2").tags == {"validated": "yes"}
    assert client.get_model_version(name, "1").description == "first"

    versions = client.search_model_versions(f"name = '{name}'")
    assert sorted(v.version for v in versions) == ["1", "2"]
    found = client.search_registered_models(filter_string=f"name = '{name}'")
    assert [m.name for m in found] == [name]

    uri = client.get_model_version_download_uri(name, "2")
    assert uri.endswith(f"/models/{info.model_id}/artifacts")
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/2")
    np.testing.assert_array_equal(loaded.predict(X_test), model.predict(X_test))


# ------------------------------------------------------------------------------------------
# search


@pytest.fixture
def search_runs_exp(client):
    """Seven runs with known data, start_time increasing with the index."""
    exp_id = client.create_experiment(unique("flows-search"))
    t0 = int(time.time() * 1000) - 100_000
    spec = [
        # name,    model,   acc,          team,       status
        ("run-0", "svm", 0.91, "ml-core", "FINISHED"),
        ("run-1", "svm", 0.55, "ml-edge", "FINISHED"),
        ("run-2", "tree", 0.72, "data", "FAILED"),
        ("run-3", "tree", None, "ml-core", "FINISHED"),
        ("run-4", "forest", 0.99, "ML-upper", "RUNNING"),
        ("run-5", "forest", float("nan"), "data", "KILLED"),
        ("run-6", "svm", 0.30, None, "FINISHED"),
    ]
    ids = {}
    for i, (name, model, acc, team, status) in enumerate(spec):
        tags = {"team": team} if team else {}
        run = client.create_run(exp_id, start_time=t0 + i * 1000, tags=tags, run_name=name)
        rid = run.info.run_id
        params = [Param("model", model), Param("idx", str(i))]
        metrics = [Metric("acc", acc, t0, 0)] if acc is not None else []
        metrics.append(Metric("loss", float(i), t0, 0))
        client.log_batch(rid, metrics=metrics, params=params)
        if status != "RUNNING":
            client.set_terminated(rid, status=status, end_time=t0 + i * 1000 + 500)
        ids[name] = rid
    return exp_id, ids


def _names(runs):
    return [r.info.run_name for r in runs]


def test_search_runs_filters(client, search_runs_exp):
    exp_id, ids = search_runs_exp

    def s(f):
        return set(_names(client.search_runs([exp_id], filter_string=f)))

    assert s("") == {f"run-{i}" for i in range(7)}
    assert s("metrics.acc > 0.6") == {"run-0", "run-2", "run-4"}
    assert s("metrics.acc <= 0.55") == {"run-1", "run-6"}
    assert s("metric.loss = 3") == {"run-3"}
    assert s("metrics.loss != 3 and metrics.loss < 2") == {"run-0", "run-1"}
    assert s("params.model = 'svm'") == {"run-0", "run-1", "run-6"}
    assert s("params.model != 'svm'") == {"run-2", "run-3", "run-4", "run-5"}
    assert s("param.model LIKE 'f%'") == {"run-4", "run-5"}
    assert s("tags.team LIKE 'ml-%'") == {"run-0", "run-1", "run-3"}
    assert s("tags.team ILIKE 'ml-%'") == {"run-0", "run-1", "run-3", "run-4"}
    assert s("tags.team = 'data'") == {"run-2", "run-5"}
    assert s("tags.`team` = 'data'") == {"run-2", "run-5"}
    assert s("attributes.run_name = 'run-3'") == {"run-3"}
    assert s("tags.`mlflow.runName` = 'run-3'") == {"run-3"}
    assert s("attributes.status = 'FAILED'") == {"run-2"}
    assert s("status = 'FINISHED'") == {"run-0", "run-1", "run-3", "run-6"}
    assert s("attributes.status != 'FINISHED'") == {"run-2", "run-4", "run-5"}
    assert s(f"attributes.run_id IN ('{ids['run-1']}', '{ids['run-5']}')") == {"run-1", "run-5"}
    assert s(f"attributes.run_id = '{ids['run-2']}'") == {"run-2"}
    assert s("params.model = 'svm' AND metrics.acc > 0.5 AND tags.team LIKE 'ml-%'") == {"run-0", "run-1"}
    assert s("attributes.run_name LIKE 'run-%' and params.idx = '6'") == {"run-6"}
    assert s("params.model = 'nope'") == set()
    # Double-quoted values, as MLflow's older docs write them.
    assert s('params.model = "svm"') == {"run-0", "run-1", "run-6"}
    assert s('attributes.status = "FAILED"') == {"run-2"}
    assert s(f'attributes.run_id IN ("{ids["run-1"]}", "{ids["run-5"]}")') == {"run-1", "run-5"}
    t_mid = client.get_run(ids["run-3"]).info.start_time
    assert s(f"attributes.start_time >= {t_mid}") == {"run-3", "run-4", "run-5", "run-6"}

    # Unknown experiment ids give no runs rather than an error.
    assert client.search_runs(["987654"]) == []


def test_search_runs_fluent_dataframe(client, search_runs_exp):
    exp_id, _ = search_runs_exp
    df = mlflow.search_runs(
        experiment_ids=[exp_id], filter_string="params.model = 'svm'", order_by=["metrics.acc DESC"]
    )
    assert list(df["tags.mlflow.runName"]) == ["run-0", "run-1", "run-6"]
    assert list(df["metrics.acc"]) == [0.91, 0.55, 0.30]
    assert set(df["params.model"]) == {"svm"}


def test_search_runs_order_by(client, search_runs_exp):
    exp_id, _ = search_runs_exp

    def o(*order):
        return _names(client.search_runs([exp_id], order_by=list(order)))

    # Runs without the metric (run-3) or with NaN (run-5) come last in both directions.
    desc = o("metrics.acc DESC")
    assert desc[:5] == ["run-4", "run-0", "run-2", "run-1", "run-6"]
    assert set(desc[5:]) == {"run-3", "run-5"}
    asc = o("metrics.acc ASC")
    assert asc[:5] == ["run-6", "run-1", "run-2", "run-0", "run-4"]
    assert set(asc[5:]) == {"run-3", "run-5"}
    assert o("metrics.acc") == asc

    # The default order is start_time DESC.
    assert o() == [f"run-{i}" for i in reversed(range(7))]
    assert o("attributes.start_time ASC") == [f"run-{i}" for i in range(7)]
    assert o("attributes.run_name DESC") == [f"run-{i}" for i in reversed(range(7))]
    # Ties on the key fall back to start_time DESC.
    assert o("params.model ASC") == ["run-5", "run-4", "run-6", "run-1", "run-0", "run-3", "run-2"]
    assert o("params.model DESC", "metrics.loss ASC") == ["run-2", "run-3", "run-0", "run-1", "run-6", "run-4", "run-5"]
    # A run with no team tag sorts last.
    by_tag = o("tags.team ASC")
    assert by_tag[-1] == "run-6"
    assert by_tag[:-1] == ["run-4", "run-5", "run-2", "run-3", "run-0", "run-1"]


def test_search_runs_pagination(client, search_runs_exp):
    exp_id, ids = search_runs_exp
    for order in ([], ["metrics.acc DESC"], ["params.model ASC"], ["attributes.run_name ASC"]):
        full = [r.info.run_id for r in client.search_runs([exp_id], order_by=order, max_results=1000)]
        assert sorted(full) == sorted(ids.values())
        for page_size in (1, 2, 3, 7):
            seen, token, pages = [], None, 0
            while True:
                page = client.search_runs([exp_id], order_by=order, max_results=page_size, page_token=token)
                assert len(page) <= page_size
                seen += [r.info.run_id for r in page]
                token = page.token
                pages += 1
                assert pages <= 20, "pagination does not terminate"
                if not token:
                    break
            assert seen == full, (order, page_size)
            assert len(set(seen)) == len(seen)

    with pytest.raises(MlflowException) as e:
        client.search_runs([exp_id], page_token="not-a-valid-token")
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"


def test_search_runs_bad_filters(client, search_runs_exp):
    exp_id, _ = search_runs_exp
    for bad in (
        "metrics.a >> 1",
        "metrics.acc > 0.5 OR metrics.acc < 0.1",
        "params.model IN ('svm')",
        "attributes.lifecycle_stage = 'active'",
        "metrics.acc > 'high'",
        "params.model = svm",
        "nosuchentity.x = '1'",
    ):
        with pytest.raises(MlflowException) as e:
            client.search_runs([exp_id], filter_string=bad)
        assert e.value.error_code == "INVALID_PARAMETER_VALUE", bad
    with pytest.raises(MlflowException) as e:
        client.search_runs([exp_id], order_by=["nosuchentity.x DESC"])
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"


# ------------------------------------------------------------------------------------------
# lifecycle


def test_delete_and_restore_run(client):
    exp = mlflow.set_experiment(unique("flows-delete"))
    with mlflow.start_run() as keep:
        mlflow.log_metric("m", 1.0)
    with mlflow.start_run() as gone:
        mlflow.log_metric("m", 2.0)
    gone_id = gone.info.run_id

    client.delete_run(gone_id)
    got = client.get_run(gone_id)
    assert got.info.lifecycle_stage == "deleted"
    assert got.data.metrics == {"m": 2.0}
    active = {r.info.run_id for r in client.search_runs([exp.experiment_id])}
    assert active == {keep.info.run_id}
    deleted = {r.info.run_id for r in client.search_runs([exp.experiment_id], run_view_type=ViewType.DELETED_ONLY)}
    assert deleted == {gone_id}
    everything = {r.info.run_id for r in client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL)}
    assert everything == {keep.info.run_id, gone_id}

    for log in (
        lambda: client.log_metric(gone_id, "m", 3.0),
        lambda: client.log_param(gone_id, "p", "v"),
        lambda: client.set_tag(gone_id, "t", "v"),
        lambda: client.log_batch(gone_id, metrics=[Metric("m", 3.0, 0, 0)]),
    ):
        with pytest.raises(MlflowException) as e:
            log()
        assert e.value.error_code == "INVALID_PARAMETER_VALUE"

    client.restore_run(gone_id)
    assert client.get_run(gone_id).info.lifecycle_stage == "active"
    client.log_metric(gone_id, "m", 3.0, step=1)
    assert client.get_run(gone_id).data.metrics == {"m": 3.0}
    assert len(client.search_runs([exp.experiment_id])) == 2


def test_experiments_search_delete_restore_rename(client):
    prefix = unique("flows-exps")
    ids = []
    for c in "abc":
        ids.append(client.create_experiment(f"{prefix}-{c}", tags={"letter": c}))
        time.sleep(0.005)  # distinct creation_time (ms), so "newest first" is well defined
    assert all(i.isdigit() for i in ids)

    found = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'", order_by=["name DESC"])
    assert [e.name for e in found] == [f"{prefix}-c", f"{prefix}-b", f"{prefix}-a"]
    assert found[0].tags["letter"] == "c"
    found = client.search_experiments(filter_string=f"name LIKE '{prefix}-%' AND tags.letter = 'b'")
    assert [e.experiment_id for e in found] == [ids[1]]
    # Default order: newest first.
    found = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'")
    assert [e.experiment_id for e in found] == list(reversed(ids))
    # Pagination.
    page1 = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'", max_results=2)
    assert len(page1) == 2 and page1.token
    page2 = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'", max_results=2, page_token=page1.token)
    assert [e.experiment_id for e in list(page1) + list(page2)] == list(reversed(ids))

    client.delete_experiment(ids[0])
    exp = client.get_experiment(ids[0])
    assert exp.lifecycle_stage == "deleted"
    active = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'")
    assert {e.experiment_id for e in active} == set(ids[1:])
    deleted = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'", view_type=ViewType.DELETED_ONLY)
    assert [e.experiment_id for e in deleted] == [ids[0]]
    # A deleted experiment keeps its name reserved ...
    with pytest.raises(MlflowException) as e:
        client.create_experiment(f"{prefix}-a")
    assert e.value.error_code == "RESOURCE_ALREADY_EXISTS"
    # ... and takes no new runs.
    with pytest.raises(MlflowException) as e:
        client.create_run(ids[0])
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"

    client.restore_experiment(ids[0])
    assert client.get_experiment(ids[0]).lifecycle_stage == "active"

    client.rename_experiment(ids[1], f"{prefix}-renamed")
    assert client.get_experiment(ids[1]).name == f"{prefix}-renamed"
    assert client.get_experiment_by_name(f"{prefix}-renamed").experiment_id == ids[1]
    assert client.get_experiment_by_name(f"{prefix}-b") is None

    client.set_experiment_tag(ids[2], "extra", "1")
    assert client.get_experiment(ids[2]).tags == {"letter": "c", "extra": "1"}

    # The Default experiment always exists.
    assert client.get_experiment("0").name == "Default"


def test_default_experiment_run(client):
    run = client.create_run("0")
    assert run.info.experiment_id == "0"
    assert client.get_run(run.info.run_id).info.artifact_uri == f"mlflow-artifacts:/0/{run.info.run_id}/artifacts"


# ------------------------------------------------------------------------------------------
# errors


def test_client_errors_for_missing_and_invalid_objects(client):
    def code(fn, *args, **kwargs):
        with pytest.raises(MlflowException) as e:
            fn(*args, **kwargs)
        return e.value.error_code

    assert code(client.get_run, "0123456789abcdef0123456789abcdef") == "RESOURCE_DOES_NOT_EXIST"
    assert code(client.get_experiment, "987654321") == "RESOURCE_DOES_NOT_EXIST"
    assert code(client.get_experiment, "not-a-number") == "INVALID_PARAMETER_VALUE"
    assert client.get_experiment_by_name(unique("never-created")) is None
    assert code(client.get_registered_model, unique("no-such-model")) == "RESOURCE_DOES_NOT_EXIST"
    assert code(client.get_model_version_by_alias, unique("no-such-model"), "champion") == "RESOURCE_DOES_NOT_EXIST"
    name = unique("err-model")
    client.create_registered_model(name)
    # MLflow answers an unknown alias of an existing model with 400 INVALID_PARAMETER_VALUE.
    assert code(client.get_model_version_by_alias, name, "no-such-alias") == "INVALID_PARAMETER_VALUE"
    assert code(client.get_model_version, name, "7") == "RESOURCE_DOES_NOT_EXIST"
    assert code(client.create_run, "987654321") == "RESOURCE_DOES_NOT_EXIST"
    assert code(client.log_metric, "0123456789abcdef0123456789abcdef", "m", 1.0) == "RESOURCE_DOES_NOT_EXIST"
    assert code(client.get_logged_model, "m-0123456789abcdef0123456789abcdef") == "RESOURCE_DOES_NOT_EXIST"

    exp_name = unique("err-dup")
    client.create_experiment(exp_name)
    assert code(client.create_experiment, exp_name) == "RESOURCE_ALREADY_EXISTS"
    assert code(client.create_experiment, "") == "INVALID_PARAMETER_VALUE"

    exp_id = client.get_experiment_by_name(exp_name).experiment_id
    run_id = client.create_run(exp_id).info.run_id
    client.log_param(run_id, "p", "1")
    assert code(client.log_param, run_id, "p", "2") == "INVALID_PARAMETER_VALUE"
    assert code(client.search_runs, [exp_id], "metrics.a >> 1") == "INVALID_PARAMETER_VALUE"


def test_wire_format(tracking):
    """Status codes and JSON shapes that the client depends on, checked on the wire."""
    srv = tracking
    r = rest(srv, "GET", "experiments/get-by-name", params={"experiment_name": unique("nope")})
    assert r.status_code == 404
    assert r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"

    name = unique("wire")
    r = rest(srv, "POST", "experiments/create", json={"name": name})
    assert r.status_code == 200
    exp_id = r.json()["experiment_id"]
    assert isinstance(exp_id, str) and exp_id.isdigit()
    r = rest(srv, "POST", "experiments/create", json={"name": name})
    assert r.status_code == 400 and r.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"

    r = rest(srv, "POST", "runs/create", json={"experiment_id": exp_id, "start_time": 1700000000000, "run_name": "w"})
    assert r.status_code == 200
    info = r.json()["run"]["info"]
    run_id = info["run_id"]
    assert info["run_uuid"] == run_id
    assert info["start_time"] == 1700000000000 and isinstance(info["start_time"], int)
    assert info["status"] == "RUNNING"

    r = rest(
        srv,
        "POST",
        "runs/log-metric",
        json={"run_id": run_id, "key": "m", "value": 1.5, "timestamp": 1700000000001, "step": 3},
    )
    assert r.status_code == 200 and r.json() == {}
    r = rest(srv, "GET", "metrics/get-history", params={"run_id": run_id, "metric_key": "m", "max_results": "25000"})
    assert r.status_code == 200
    assert r.json()["metrics"] == [{"key": "m", "value": 1.5, "timestamp": 1700000000001, "step": 3}]
    r = rest(srv, "GET", "metrics/get-history", params={"run_id": run_id, "metric_key": "never"})
    assert r.status_code == 200 and r.json().get("metrics", []) == []

    # A search with no hits is an empty object (no "runs" key).
    r = rest(srv, "POST", "runs/search", json={"experiment_ids": [exp_id], "filter": "params.x = 'none'"})
    assert r.status_code == 200 and "runs" not in r.json()
    r = rest(srv, "POST", "runs/search", json={"experiment_ids": [exp_id], "filter": "metrics.m >> 1"})
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"

    r = rest(srv, "GET", "runs/get", params={"run_id": "0123456789abcdef0123456789abcdef"})
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    r = rest(srv, "GET", "experiments/get", params={"experiment_id": "x1"})
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"

    r = rest(srv, "GET", "registered-models/get", params={"name": unique("nope")})
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"

    # Param change is a 400, never a 5xx (the client retries 5xx for minutes).
    rest(srv, "POST", "runs/log-parameter", json={"run_id": run_id, "key": "p", "value": "a"})
    r = rest(srv, "POST", "runs/log-parameter", json={"run_id": run_id, "key": "p", "value": "b"})
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"

    import requests

    r = requests.get(f"{srv.url}/health", timeout=10)
    assert r.status_code == 200 and r.text.strip() == "OK"


@pytest.mark.kiln_only
def test_nul_characters_are_a_400_on_every_store(tracking):
    """PostgreSQL cannot keep a NUL in text, SQLite can: kiln refuses it on both with a 400
    (never a 5xx, which the client would retry for minutes); an escaped backslash is fine."""
    srv = tracking
    r = rest(srv, "GET", "runs/get", params={"run_id": "\x00"})
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE", r.text
    exp_id = rest(srv, "POST", "experiments/create", json={"name": unique("nul")}).json()["experiment_id"]
    run_id = rest(srv, "POST", "runs/create", json={"experiment_id": exp_id}).json()["run"]["info"]["run_id"]
    r = rest(srv, "POST", "runs/set-tag", json={"run_id": run_id, "key": "k", "value": "a\x00b"})
    assert r.status_code == 400 and "NUL" in r.json()["message"], r.text
    r = rest(srv, "POST", "runs/set-tag", json={"run_id": run_id, "key": "k", "value": "a\\u0000b"})
    assert r.status_code == 200, r.text
    r = rest(srv, "GET", "runs/get", params={"run_id": run_id})
    tags = {t["key"]: t["value"] for t in r.json()["run"]["data"]["tags"]}
    assert tags["k"] == "a\\u0000b"
    # log-batch has a fast path past the generic parameter parser: it refuses NUL too, and
    # writes nothing of the batch.
    for field in ("params", "tags"):
        r = rest(srv, "POST", "runs/log-batch", json={"run_id": run_id, field: [{"key": "nul", "value": "a\x00b"}]})
        assert r.status_code == 400 and "NUL" in r.json()["message"], (field, r.text)
    data = rest(srv, "GET", "runs/get", params={"run_id": run_id}).json()["run"]["data"]
    assert all(p["key"] != "nul" for p in data.get("params", [])), data
    assert all(t["key"] != "nul" for t in data.get("tags", [])), data


@pytest.mark.kiln_only
def test_int64_fields_out_of_range_are_a_400_not_clamped(tracking):
    """A step or timestamp beyond int64 (1e30, 2^63, 2^64) is refused as MLflow's protobuf
    parser refuses it, instead of being stored as 9223372036854775807."""
    srv = tracking
    exp_id = rest(srv, "POST", "experiments/create", json={"name": unique("i64")}).json()["experiment_id"]
    run_id = rest(srv, "POST", "runs/create", json={"experiment_id": exp_id}).json()["run"]["info"]["run_id"]
    for bad in ("1e30", "9223372036854775808", "18446744073709551616", "-1e19"):
        body = '{"run_id": "%s", "key": "m", "value": 1, "timestamp": 1, "step": %s}' % (run_id, bad)
        r = rest(srv, "POST", "runs/log-metric", data=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE", (bad, r.text)
        body = '{"run_id": "%s", "metrics": [{"key": "m", "value": 1, "timestamp": %s, "step": 0}]}' % (run_id, bad)
        r = rest(srv, "POST", "runs/log-batch", data=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE", (bad, r.text)
    # The largest int64 and a whole float are still fine.
    body = '{"run_id": "%s", "key": "m", "value": 1, "timestamp": 1, "step": 9223372036854775807}' % run_id
    r = rest(srv, "POST", "runs/log-metric", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    body = '{"run_id": "%s", "metrics": [{"key": "m", "value": 2, "timestamp": 2.0, "step": 1e3}]}' % run_id
    r = rest(srv, "POST", "runs/log-batch", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    hist = rest(srv, "GET", "metrics/get-history", params={"run_id": run_id, "metric_key": "m"}).json()["metrics"]
    assert sorted(int(m["step"]) for m in hist) == [1000, 9223372036854775807], hist


@pytest.mark.kiln_only
def test_wrong_method_is_a_405_in_mlflows_error_shape(tracking):
    r = rest(tracking, "GET", "runs/log-batch")
    assert r.status_code == 405, r.text
    assert r.json()["error_code"] == "BAD_REQUEST" and "GET" in r.json()["message"]
    import requests

    r = requests.delete(f"{tracking.url}/api/2.0/mlflow/experiments/search", timeout=10)
    assert r.status_code == 405 and r.json()["error_code"] == "BAD_REQUEST", r.text


@pytest.mark.kiln_only
def test_unknown_endpoint_is_endpoint_not_found(tracking):
    """The client falls back to older APIs (traces v3 -> v2, ...) on ENDPOINT_NOT_FOUND, and
    reads RESOURCE_DOES_NOT_EXIST as a missing object."""
    r = rest(tracking, "POST", "no-such/endpoint", json={})
    assert r.status_code == 404 and r.json()["error_code"] == "ENDPOINT_NOT_FOUND", r.text


@pytest.mark.kiln_only
def test_too_many_values_for_one_query_is_a_400(tracking):
    """More experiment ids than one SQL statement can bind (SQLite's and PostgreSQL's limits)
    is the client's to split: a 400, never a 5xx that the client retries for minutes."""
    ids = [str(i) for i in range(1, 300_001)]
    r = rest(tracking, "POST", "runs/search", json={"experiment_ids": ids, "filter": "metrics.m > 0", "max_results": 10})
    assert r.status_code == 400, r.text[:300]
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "split it" in r.json()["message"]


@pytest.mark.kiln_only
def test_artifact_downloads_resume_with_range_requests(tracking):
    """`curl -C -` / `wget -c`: a Range request gets 206 with only that part; past the end, 416
    with the size; the whole object advertises `Accept-Ranges: bytes`."""
    import requests

    url = f"{tracking.url}/api/2.0/mlflow-artifacts/artifacts/{unique('ranges')}/blob.bin"
    data = bytes(i % 251 for i in range(100_000))
    assert requests.put(url, data=data, timeout=30).status_code == 200
    whole = requests.get(url, timeout=30)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["Accept-Ranges"] == "bytes"
    part = requests.get(url, headers={"Range": "bytes=40000-"}, timeout=30)
    assert part.status_code == 206, part.text[:200]
    assert part.content == data[40000:]
    assert part.headers["Content-Range"] == "bytes 40000-99999/100000"
    tail = requests.get(url, headers={"Range": "bytes=-10"}, timeout=30)
    assert tail.status_code == 206 and tail.content == data[-10:]
    past = requests.get(url, headers={"Range": "bytes=100000-"}, timeout=30)
    assert past.status_code == 416 and past.headers["Content-Range"] == "bytes */100000"
    # Several ranges, or another unit: the whole object, as HTTP allows.
    several = requests.get(url, headers={"Range": "bytes=0-1,5-6"}, timeout=30)
    assert several.status_code == 200 and several.content == data


def test_prompt_registry(tracking):
    """MLflow's prompt registry: prompts are registered models whose versions carry the prompt
    tag and a placeholder source (no artifact to check)."""
    name = unique("prompt")
    p1 = mlflow.genai.register_prompt(name=name, template="Hello {{name}}!", commit_message="first")
    p2 = mlflow.genai.register_prompt(name=name, template="Hi {{name}}, welcome!")
    assert (p1.version, p2.version) == (1, 2)
    mlflow.genai.set_prompt_alias(name, alias="production", version=1)
    assert mlflow.genai.load_prompt(f"prompts:/{name}@production").format(name="kiln") == "Hello kiln!"
    assert mlflow.genai.load_prompt(f"prompts:/{name}/2").format(name="kiln") == "Hi kiln, welcome!"
    assert name in [p.name for p in mlflow.genai.search_prompts()]
    # Registry searches leave prompts out, as MLflow's server does.
    client = mlflow.MlflowClient()
    assert client.search_registered_models(filter_string=f"name = '{name}'") == []
    assert client.search_model_versions(filter_string=f"name = '{name}'") == []
    # `!=` on a tag matches models that have the tag with another value, not models without it.
    plain, tagged = unique("plain"), unique("tagged")
    client.create_registered_model(plain)
    client.create_registered_model(tagged, tags={"team": "a"})
    got = {m.name for m in client.search_registered_models(filter_string="tags.team != 'b'")}
    assert tagged in got and plain not in got
    # A version tagged as a prompt must still use one of MLflow's placeholders as its source.
    r = rest(tracking, "POST", "model-versions/create", json={
        "name": name, "source": "file:///etc", "tags": [{"key": "mlflow.prompt.is_prompt", "value": "true"}]})
    assert r.status_code == 400 and "prompt source" in r.json()["message"], r.text


def test_logged_model_params_after_creation(tracking):
    mlflow.set_experiment(unique("lm-params"))
    m = mlflow.initialize_logged_model(name="pm", params={"a": "1"})
    mlflow.log_model_params({"b": "2", "c": "x"}, model_id=m.model_id)
    got = mlflow.get_logged_model(m.model_id)
    assert got.params == {"a": "1", "b": "2", "c": "x"}
    found = mlflow.search_logged_models(filter_string="params.b = '2'", output_format="list")
    assert [x.model_id for x in found] == [m.model_id]


def test_deleted_logged_model_is_not_found_unless_asked(tracking):
    mlflow.set_experiment(unique("lm-delete"))
    m = mlflow.initialize_logged_model(name="gone")
    client = mlflow.MlflowClient()
    client.delete_logged_model(m.model_id)
    with pytest.raises(MlflowException) as e:
        client.get_logged_model(m.model_id)
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    r = rest(tracking, "GET", f"logged-models/{m.model_id}", params={"allow_deleted": "true"})
    assert r.status_code == 200, r.text
    assert r.json()["model"]["info"]["model_id"] == m.model_id
    found = mlflow.search_logged_models(output_format="list")
    assert m.model_id not in [x.model_id for x in found]


@pytest.mark.kiln_only
def test_bad_allow_deleted_is_a_400_in_mlflows_shape(tracking):
    mlflow.set_experiment(unique("lm-allow"))
    m = mlflow.initialize_logged_model(name="q")
    for params in ([("allow_deleted", "true"), ("allow_deleted", "false")], {"allow_deleted": "maybe"}):
        r = rest(tracking, "GET", f"logged-models/{m.model_id}", params=params)
        assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE", r.text
    r = rest(tracking, "GET", f"logged-models/{m.model_id}", params={"allow_deleted": "false"})
    assert r.status_code == 200, r.text


@pytest.mark.kiln_only
def test_the_client_reconnects_after_an_idle_connection_is_closed(server_factory):
    """`--header-timeout` closes keep-alive connections left idle that long: the MLflow client's
    pooled connection is gone when it logs again, and it must carry on without an error."""
    srv = server_factory.server("sqlite", start=False)
    srv.env["KILN_HEADER_TIMEOUT"] = "1s"
    srv.start()
    client = mlflow.MlflowClient(tracking_uri=srv.url)
    exp = client.create_experiment(unique("idle"))
    run = client.create_run(exp)
    for step in range(3):
        client.log_metric(run.info.run_id, "m", float(step), step=step)
        time.sleep(1.5)  # past the timeout: the server closes the idle connection
    hist = client.get_metric_history(run.info.run_id, "m")
    assert [m.step for m in hist] == [0, 1, 2]
    # A client that never finishes its headers is cut off too.
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        got = b""
        while chunk := s.recv(1024):  # socket.timeout here: the server kept it open
            got += chunk
        assert got == b"" or got.startswith(b"HTTP/1.1 408"), got


@pytest.mark.kiln_only
def test_conditional_alias_move_is_one_transaction_on_the_server(tracking):
    """kiln's `expected_version` extension of POST registered-models/alias (what `kiln models
    promote/rollback` send through a server): the alias moves only from that holder."""
    name = unique("cas")
    client = mlflow.MlflowClient()
    client.create_registered_model(name)
    exp = client.create_experiment(unique("cas"))
    run_id = client.create_run(exp).info.run_id
    for _ in range(3):
        r = rest(tracking, "POST", "model-versions/create",
                 json={"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id})
        assert r.status_code == 200, r.text
    body = {"name": name, "alias": "champion", "version": "1", "expected_version": ""}
    r = rest(tracking, "POST", "registered-models/alias", json=body)
    assert r.status_code == 200 and r.json() == {"moved": True}, r.text
    stale = {"name": name, "alias": "champion", "version": "3", "expected_version": "2"}
    r = rest(tracking, "POST", "registered-models/alias", json=stale)
    assert r.status_code == 200 and r.json() == {"moved": False}, r.text
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    fresh = {"name": name, "alias": "champion", "version": "2", "expected_version": "1"}
    assert rest(tracking, "POST", "registered-models/alias", json=fresh).json() == {"moved": True}
    # Without the field it is MLflow's unconditional move; the same version again records nothing.
    client.set_registered_model_alias(name, "champion", "2")
    params = {"name": name, "alias": "champion"}
    events = rest(tracking, "GET", "registered-models/alias/history", params=params).json()["events"]
    assert [(e.get("version"), e.get("previous_version")) for e in events] == [("1", None), ("2", "1")], events


def test_mlflow_answers_kept_for_odd_requests(tracking):
    """Answers the MLflow server gives (checked side by side with it): history of an unknown
    run is empty, deleting a deleted experiment is RESOURCE_DOES_NOT_EXIST, finalizing a logged
    model needs its status."""
    client = mlflow.MlflowClient()
    assert client.get_metric_history("0123456789abcdef0123456789abcdef", "m") == []
    exp = client.create_experiment(unique("twice"))
    client.delete_experiment(exp)
    with pytest.raises(MlflowException) as e:
        client.delete_experiment(exp)
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    client.restore_experiment(exp)
    with pytest.raises(MlflowException) as e:
        client.restore_experiment(exp)
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    mlflow.set_experiment(experiment_id=exp)
    m = mlflow.initialize_logged_model(name="fin")
    r = rest(tracking, "PATCH", f"logged-models/{m.model_id}", json={"model_id": m.model_id})
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE", r.text


def test_models_logged_as_run_inputs_show_on_the_run(tracking):
    """MLflow 3's `models` of runs/log-inputs: the run lists them in inputs.model_inputs."""
    client = mlflow.MlflowClient()
    exp = client.create_experiment(unique("model-inputs"))
    mlflow.set_experiment(experiment_id=exp)
    model = mlflow.initialize_logged_model(name="read-me")
    run = client.create_run(exp)
    body = {"run_id": run.info.run_id, "models": [{"model_id": model.model_id}]}
    r = rest(tracking, "POST", "runs/log-inputs", json=body)
    assert r.status_code == 200, r.text
    got = rest(tracking, "GET", "runs/get", params={"run_id": run.info.run_id}).json()["run"]
    assert got["inputs"]["model_inputs"] == [{"model_id": model.model_id}], got["inputs"]
    assert [m.model_id for m in client.get_run(run.info.run_id).inputs.model_inputs] == [model.model_id]


def test_a_model_in_another_bucket_can_be_registered(tracking):
    """`register_model("s3://…")` / create_model_version with an object-store source: recorded
    as it is and handed back by get-download-uri (the server never reads it)."""
    client = mlflow.MlflowClient()
    name = unique("external")
    client.create_registered_model(name)
    mv = client.create_model_version(name, source="s3://team-models/churn/7")
    assert mv.source == "s3://team-models/churn/7"
    assert client.get_model_version_download_uri(name, mv.version) == "s3://team-models/churn/7"


def test_ordering_by_a_metric_puts_nan_before_runs_without_it(tracking):
    """MLflow's server orders values first, then NaN, then runs without the metric, either way."""
    client = mlflow.MlflowClient()
    exp = client.create_experiment(unique("nan-order"))
    ids = {}
    for name, value in (("v", 0.5), ("nan", float("nan")), ("missing", None)):
        run = client.create_run(exp, run_name=name)
        client.log_metric(run.info.run_id, "acc" if value is not None else "other", 1.0 if value is None else value)
        ids[run.info.run_id] = name
    for direction in ("ASC", "DESC"):
        runs = client.search_runs([exp], order_by=[f"metrics.acc {direction}"])
        assert [ids[r.info.run_id] for r in runs] == ["v", "nan", "missing"], direction
