"""`kiln predict` on scikit-learn models exported to ONNX with skl2onnx: the same outputs as
scikit-learn.

Probabilities must match `predict_proba` to 1e-5 (absolute) and labels `predict` exactly.
Regression values must match `predict` to 1e-5 relative to the value (absolute below 1): the
ONNX graphs compute and return float32, whose resolution on diabetes targets (25-346) is
about 2e-5, so an absolute 1e-5 cannot hold for any ONNX runtime.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, Int64TensorType
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from conftest import run_kiln

pytestmark = pytest.mark.kiln_only

PROBA_ATOL = 1e-5
VALUE_RTOL = 1e-5


def split(loader):
    X, y = loader(return_X_y=True)
    return train_test_split(X, y, test_size=0.3, random_state=0)


def final_step(model):
    return model.steps[-1][1] if isinstance(model, Pipeline) else model


def export(model, n_features: int, path: Path, *, zipmap: bool = False, feature_names=None) -> Path:
    options = None
    if hasattr(final_step(model), "predict_proba"):
        options = {id(final_step(model)): {"zipmap": zipmap}}
    onx = convert_sklearn(
        model,
        initial_types=[("X", FloatTensorType([None, n_features]))],
        options=options,
    )
    if feature_names is not None:
        entry = onx.metadata_props.add()
        entry.key = "feature_names"
        entry.value = json.dumps(list(feature_names))
    onnx.save(onx, str(path))
    return path


def write_csv(X, path: Path, columns) -> Path:
    pd.DataFrame(X, columns=list(columns)).to_csv(path, index=False)
    return path


def predict_json(model_path: Path, data_path: Path, *extra: str) -> dict:
    proc = run_kiln("predict", "--model", str(model_path), "--data", str(data_path), "--json", *extra, cwd=data_path.parent)
    return json.loads(proc.stdout)


def assert_classifier_matches(out: dict, model, X) -> None:
    classes = [str(c) for c in final_step(model).classes_]
    assert out["task"] == "classification"
    assert out["classes"] == classes
    expected = model.predict_proba(X)
    got = np.array(out["probabilities"], dtype=float)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=PROBA_ATOL)
    assert out["predictions"] == [str(c) for c in model.predict(X)]


def assert_regressor_matches(out: dict, model, X) -> None:
    assert out["task"] == "regression"
    expected = model.predict(X)
    got = np.array(out["predictions"], dtype=float)
    assert got.shape == expected.shape
    tolerance = VALUE_RTOL * np.maximum(1.0, np.abs(expected))
    worst = np.max(np.abs(got - expected) - tolerance)
    assert worst <= 0, f"max excess over tolerance {worst}"


def test_scaler_logistic_pipeline_binary(tmp_path):
    X_train, X_test, y_train, _ = split(load_breast_cancer)
    model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=5000))]).fit(X_train, y_train)
    path = export(model, X_train.shape[1], tmp_path / "logreg.onnx")
    # Unnamed [N, 30] input: the columns are f0..f29.
    data = write_csv(X_test, tmp_path / "test.csv", [f"f{j}" for j in range(X_test.shape[1])])
    assert_classifier_matches(predict_json(path, data), model, X_test)


def test_logistic_multiclass_with_zipmap_and_positional_columns(tmp_path):
    X_train, X_test, y_train, _ = split(load_iris)
    model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=5000))]).fit(X_train, y_train)
    # ZipMap left in (skl2onnx's default): kiln reads the probability tensor under it.
    path = export(model, 4, tmp_path / "iris.onnx", zipmap=True)
    # Other names, but exactly four columns: taken in order.
    data = write_csv(X_test, tmp_path / "iris.csv", ["sl", "sw", "pl", "pw"])
    assert_classifier_matches(predict_json(path, data), model, X_test)


def test_linear_regression_pipeline_with_named_features(tmp_path):
    ds = load_diabetes()
    X_train, X_test, y_train, _ = train_test_split(ds.data, ds.target, test_size=0.3, random_state=0)
    model = Pipeline([("scale", StandardScaler()), ("reg", LinearRegression())]).fit(X_train, y_train)
    path = export(model, X_train.shape[1], tmp_path / "linreg.onnx", feature_names=ds.feature_names)
    # Named by the model's feature_names metadata: order and extra columns do not matter.
    frame = pd.DataFrame(X_test, columns=ds.feature_names)
    frame.insert(0, "patient_id", np.arange(len(frame)))
    frame = frame[["patient_id"] + list(reversed(ds.feature_names))]
    data = tmp_path / "diabetes.csv"
    frame.to_csv(data, index=False)
    assert_regressor_matches(predict_json(path, data), model, X_test)


@pytest.mark.parametrize(
    "estimator",
    [
        RandomForestClassifier(n_estimators=30, max_depth=6, random_state=0),
        GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=0),
    ],
    ids=["random_forest", "gradient_boosting"],
)
def test_tree_ensemble_classifier_binary(tmp_path, estimator):
    X_train, X_test, y_train, _ = split(load_breast_cancer)
    model = estimator.fit(X_train, y_train)
    path = export(model, X_train.shape[1], tmp_path / "trees.onnx")
    data = write_csv(X_test, tmp_path / "test.csv", [f"f{j}" for j in range(X_test.shape[1])])
    assert_classifier_matches(predict_json(path, data), model, X_test)


def test_gradient_boosting_classifier_multiclass(tmp_path):
    X_train, X_test, y_train, _ = split(load_iris)
    model = GradientBoostingClassifier(n_estimators=20, max_depth=2, random_state=0).fit(X_train, y_train)
    path = export(model, 4, tmp_path / "gb3.onnx")
    data = write_csv(X_test, tmp_path / "iris.csv", [f"f{j}" for j in range(4)])
    assert_classifier_matches(predict_json(path, data), model, X_test)


@pytest.mark.parametrize(
    "estimator",
    [
        RandomForestRegressor(n_estimators=20, max_depth=6, random_state=0),
        GradientBoostingRegressor(n_estimators=50, max_depth=3, random_state=0),
    ],
    ids=["random_forest", "gradient_boosting"],
)
def test_tree_ensemble_regressor(tmp_path, estimator):
    X_train, X_test, y_train, _ = split(load_diabetes)
    model = estimator.fit(X_train, y_train)
    path = export(model, X_train.shape[1], tmp_path / "trees.onnx")
    data = write_csv(X_test, tmp_path / "test.csv", [f"f{j}" for j in range(X_test.shape[1])])
    assert_regressor_matches(predict_json(path, data), model, X_test)


def test_per_column_inputs(tmp_path):
    ds = load_diabetes()
    X_train, X_test, y_train, _ = train_test_split(ds.data, ds.target, test_size=0.3, random_state=0)
    model = Pipeline([("scale", StandardScaler()), ("reg", LinearRegression())]).fit(X_train, y_train)
    onx = convert_sklearn(model, initial_types=[(name, FloatTensorType([None, 1])) for name in ds.feature_names])
    path = tmp_path / "percol.onnx"
    onnx.save(onx, str(path))
    data = write_csv(X_test, tmp_path / "test.csv", ds.feature_names)
    assert_regressor_matches(predict_json(path, data), model, X_test)


def test_csv_output_and_bad_input(tmp_path):
    X_train, X_test, y_train, _ = split(load_breast_cancer)
    model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=5000))]).fit(X_train, y_train)
    path = export(model, X_train.shape[1], tmp_path / "logreg.onnx")
    data = write_csv(X_test[:5], tmp_path / "five.csv", [f"f{j}" for j in range(X_test.shape[1])])
    out = tmp_path / "preds.csv"
    run_kiln("predict", "--model", str(path), "--data", str(data), "--output", str(out), cwd=tmp_path)
    preds = pd.read_csv(out)
    assert list(preds.columns) == ["prediction", "proba_0", "proba_1"]
    np.testing.assert_allclose(preds[["proba_0", "proba_1"]].to_numpy(), model.predict_proba(X_test[:5]), atol=PROBA_ATOL)

    # Too few columns: exit code 2 and a message naming the model input.
    narrow = write_csv(X_test[:5, :3], tmp_path / "narrow.csv", ["a", "b", "c"])
    proc = run_kiln("predict", "--model", str(path), "--data", str(narrow), check=False, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "takes 30 columns" in proc.stderr


@contextlib.contextmanager
def served(path: Path | str, cwd: Path, *extra: str):
    """`kiln serve <path> [extra…]` on a free port until the block ends; yields its base URL."""
    import requests

    from conftest import free_port, kiln_bin_path

    port = free_port()
    proc = subprocess.Popen(
        [str(kiln_bin_path()), "serve", str(path), "--port", str(port), *extra],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                if requests.get(f"{base}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "kiln serve exited"
            assert time.time() < deadline, "kiln serve did not become healthy"
            time.sleep(0.2)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_kiln_serve_answers_like_scikit_learn(tmp_path):
    """Issue 5: a scikit-learn model exported to ONNX and served by `kiln serve` returns the
    same predictions as scikit-learn, through MLflow's scoring protocol."""
    import requests

    X_train, X_test, y_train, _ = split(load_breast_cancer)
    model = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0).fit(X_train, y_train)
    path = export(model, X_train.shape[1], tmp_path / "forest.onnx")
    columns = [f"f{j}" for j in range(X_test.shape[1])]
    with served(path, tmp_path) as base:
        body = {"dataframe_split": {"columns": columns, "data": X_test[:50].tolist()}}
        r = requests.post(f"{base}/invocations", json=body, timeout=30)
        assert r.status_code == 200, r.text
        out = r.json()
        want = model.predict_proba(X_test[:50].astype(np.float32))
        assert np.allclose(np.asarray(out["probabilities"], dtype=float), want, atol=PROBA_ATOL)
        assert [str(p) for p in out["predictions"]] == [str(c) for c in model.predict(X_test[:50].astype(np.float32))]
        # A missing column is a 400 that names it.
        bad = {"dataframe_split": {"columns": columns[1:], "data": [row[1:] for row in X_test[:2].tolist()]}}
        r = requests.post(f"{base}/invocations", json=bad, timeout=30)
        assert r.status_code == 400 and "f0" in r.text, r.text


def test_kiln_serve_int64_input_takes_whole_numbers_only(tmp_path):
    """An ONNX graph with an int64 input: whole numbers are predicted like scikit-learn; a
    fraction is the client's mistake, a 400 naming the column and the input's type."""
    import requests

    X = np.array([[0, 1], [1, 0], [2, 3], [3, 2]] * 10, dtype=np.int64)
    y = np.array([0, 1, 0, 1] * 10)
    model = DecisionTreeClassifier(random_state=0).fit(X, y)
    onx = convert_sklearn(model, initial_types=[("X", Int64TensorType([None, 2]))],
                          options={id(model): {"zipmap": False}})
    path = tmp_path / "int.onnx"
    onnx.save(onx, str(path))
    with served(path, tmp_path) as base:
        r = requests.post(f"{base}/invocations", json={"inputs": X[:4].tolist()}, timeout=30)
        assert r.status_code == 200, r.text
        assert np.allclose(r.json()["probabilities"], model.predict_proba(X[:4]), atol=PROBA_ATOL)
        r = requests.post(f"{base}/invocations", json={"inputs": [[0, 1], [0.5, 1]]}, timeout=30)
        assert r.status_code == 400, r.text
        msg = r.json()["message"]
        assert "f0" in msg and "row 2" in msg and "int64" in msg, msg


def test_kiln_serve_v2_and_openapi_hold_to_their_specs(tmp_path):
    """The Open Inference Protocol through kiln serve on an ONNX model: a NaN output (a missing
    value a linear model cannot take) is a 400 naming the row, not `null` and a made-up label;
    a value its FP32 tensor cannot hold is a 400; `outputs` picks what comes back; the
    versioned readiness route answers; /openapi.json is a valid OpenAPI 3.1 document."""
    import requests
    from openapi_spec_validator import validate

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    path = export(model, X.shape[1], tmp_path / "iris.onnx")
    infer = lambda base, body: requests.post(f"{base}/v2/models/iris/infer", json=body, timeout=30)  # noqa: E731
    tensor = lambda data, datatype="FP32": {"name": "X", "shape": [len(data) // 4, 4], "datatype": datatype, "data": data}  # noqa: E731
    with served(path, tmp_path, "--name", "iris") as base:
        row = X[0].tolist()
        r = infer(base, {"inputs": [tensor(row)]})
        assert r.status_code == 200, r.text
        assert [o["name"] for o in r.json()["outputs"]] == ["predictions", "probabilities"]
        # A model file has no registry version: no version header (not an empty one).
        assert "x-kiln-model-version" not in r.headers, r.headers
        r = infer(base, {"inputs": [tensor(row)], "outputs": [{"name": "probabilities"}]})
        assert [o["name"] for o in r.json()["outputs"]] == ["probabilities"], r.text
        assert np.allclose(r.json()["outputs"][0]["data"], model.predict_proba(X[:1]).ravel(), atol=PROBA_ATOL)

        r = infer(base, {"inputs": [tensor(row + [None, 3.5, 1.0, 2.0])]})
        assert r.status_code == 400, r.text
        assert "row 2 is NaN" in r.json()["error"], r.text
        r = infer(base, {"inputs": [tensor([1e39, 3.5, 1.0, 2.0])]})
        assert r.status_code == 400 and "FP32" in r.json()["error"], r.text

        r = requests.get(f"{base}/v2/models/iris/versions/1/ready", timeout=30)
        assert r.status_code == 404 and "error" in r.json(), r.text
        r = requests.get(f"{base}/v2/models/iris/nope", timeout=30)
        assert r.status_code == 404 and "error" in r.json(), r.text

        doc = requests.get(f"{base}/openapi.json", timeout=30).json()
        validate(doc)
        assert doc["openapi"].startswith("3.1")


def test_kiln_evaluate_scores_an_onnx_model_like_scikit_learn(tmp_path):
    """`kiln evaluate` on an ONNX export: the same ROC-AUC and accuracy as scikit-learn computes
    on the same rows; gates apply; the label column comes from --target."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    X_train, X_test, y_train, y_test = split(load_breast_cancer)
    model = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0).fit(X_train, y_train)
    path = export(model, X_train.shape[1], tmp_path / "forest.onnx")
    columns = [f"f{j}" for j in range(X_test.shape[1])]
    frame = pd.DataFrame(X_test, columns=columns)
    frame["label"] = y_test
    data = tmp_path / "test.csv"
    frame.to_csv(data, index=False)

    proc = run_kiln(
        "evaluate", "--model", str(path), "--data", str(data), "--target", "label",
        "--require", "roc_auc>=0.9", "--no-track", "--json", cwd=tmp_path,
    )
    out = json.loads(proc.stdout)
    assert out["passed"] is True
    proba = model.predict_proba(X_test)[:, 1]
    assert abs(out["metrics"]["roc_auc"] - roc_auc_score(y_test, proba)) < 1e-9
    assert abs(out["metrics"]["accuracy"] - accuracy_score(y_test, model.predict(X_test))) < 1e-9

    # Without --target the model cannot know its label column: exit 2, and the message says what to pass.
    proc = run_kiln("evaluate", "--model", str(path), "--data", str(data), "--no-track", check=False, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "--target" in proc.stderr


def test_an_onnx_model_logged_and_registered_through_mlflow_serves_and_copies(server_factory, tmp_path):
    """MLflow 3 registers `mlflow.onnx.log_model` output as `models:/m-<id>`: kiln loads that
    logged model's `model.onnx` for `kiln predict` / `kiln serve`, also through an alias and
    through a version copied with `copy_model_version` (source `models:/<name>/<version>`)."""
    import mlflow
    import mlflow.onnx
    import requests

    from conftest import unique

    X_train, X_test, y_train, _ = split(load_breast_cancer)
    model = RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0).fit(X_train, y_train)
    onx = onnx.load(str(export(model, X_train.shape[1], tmp_path / "forest.onnx")))
    srv = server_factory.server("sqlite", "file")
    mlflow.set_tracking_uri(srv.url)
    mlflow.set_registry_uri(srv.url)
    client = mlflow.MlflowClient(srv.url, srv.url)
    name, copy = unique("onnx-churn"), unique("onnx-copy")
    mlflow.set_experiment(unique("onnx"))
    with mlflow.start_run():
        info = mlflow.onnx.log_model(onx, name="model", registered_model_name=name, pip_requirements=["onnx"])
    assert client.get_model_version(name, "1").source == f"models:/{info.model_id}"
    client.set_registered_model_alias(name, "champion", "1")
    copied = client.copy_model_version(f"models:/{name}/1", copy)
    assert copied.source == f"models:/{name}/1"
    # The MLflow client resolves the copy's files through the server.
    local = mlflow.artifacts.download_artifacts(f"models:/{copy}/1", dst_path=str(tmp_path / "dl"))
    assert (Path(local) / "model.onnx").is_file(), list(Path(local).iterdir())

    data = write_csv(X_test[:40], tmp_path / "test.csv", [f"f{j}" for j in range(X_test.shape[1])])
    want = model.predict_proba(X_test[:40].astype(np.float32))
    for reference in (f"models:/{name}@champion", f"models:/{copy}/1", f"models:/{info.model_id}"):
        proc = srv.kiln("predict", "--model", reference, "--data", str(data), "--json")
        out = json.loads(proc.stdout)
        assert np.allclose(np.asarray(out["probabilities"], dtype=float), want, atol=PROBA_ATOL), reference

    with served(f"models:/{name}@champion", tmp_path, *srv.store_args()) as base:
        columns = [f"f{j}" for j in range(X_test.shape[1])]
        r = requests.post(
            f"{base}/invocations",
            json={"dataframe_split": {"columns": columns, "data": X_test[:40].tolist()}},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-kiln-model-version"] == "1"
        assert np.allclose(np.asarray(r.json()["probabilities"], dtype=float), want, atol=PROBA_ATOL)
