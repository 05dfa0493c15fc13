"""Accuracy of kiln's built-in learners against scikit-learn on the same split (issue 4).

`kiln train --test-data` trains on one CSV and scores another; the test metric it reports is
compared with scikit-learn's on the same files:

* gbdt vs `HistGradientBoosting{Classifier,Regressor}` with default settings: within 0.01.
* logistic vs `Pipeline(StandardScaler(), LogisticRegression(C=1))`: within 0.005. kiln's
  `logistic` standardises numeric features (population std) and minimises the summed log loss
  plus |w|²/(2C) with an unpenalised intercept, which is scikit-learn's objective with `C`.
* linear (diabetes) vs `Pipeline(StandardScaler(), Ridge(alpha=1))`: within 0.005.

Metrics are the ones kiln reports: `test_roc_auc` for binary (probability of the positive
class), for multiclass the macro one-vs-rest ROC-AUC (`roc_auc_score(multi_class="ovr",
average="macro")`), `test_r2` for regression.

Datasets: scikit-learn's breast_cancer, wine, digits and diabetes, `train_test_split(test_size=
0.25, random_state=0)`, and a generated churn-like table (the bench's generator,
`/work/shared/bench-data/gen_churn.py` or `KILN_GEN_CHURN`; a copy below when it is absent):
first 80% train, last 20% test. The churn table is sized for a debug build of kiln on 2 cores
(`KILN_ACCURACY_CHURN_ROWS`, default 200,000); scikit-learn runs with `early_stopping=False`
there, since its default turns early stopping on above 10,000 rows and kiln's does not.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from conftest import run_kiln

pytestmark = pytest.mark.kiln_only

GBDT_TOL = 0.01
LINEAR_TOL = 0.005
CHURN_ROWS = int(os.environ.get("KILN_ACCURACY_CHURN_ROWS", "200000"))
GEN_CHURN = Path(os.environ.get("KILN_GEN_CHURN", "/work/shared/bench-data/gen_churn.py"))

# name -> (loader, task)
SKLEARN_SETS = {
    "breast_cancer": (datasets.load_breast_cancer, "classification"),
    "wine": (datasets.load_wine, "classification"),
    "digits": (datasets.load_digits, "classification"),
    "diabetes": (datasets.load_diabetes, "regression"),
}


class Split:
    def __init__(self, name, task, X_train, y_train, X_test, y_test, train_csv, test_csv, target):
        self.name, self.task, self.target = name, task, target
        self.X_train, self.y_train, self.X_test, self.y_test = X_train, y_train, X_test, y_test
        self.train_csv, self.test_csv = train_csv, test_csv

    @property
    def n_classes(self) -> int:
        return len(np.unique(self.y_train))


def write_split(tmp: Path, name, task, X_train, y_train, X_test, y_test, target="target") -> Split:
    d = tmp / name
    d.mkdir()
    train_csv, test_csv = d / "train.csv", d / "test.csv"
    X_train.assign(**{target: y_train}).to_csv(train_csv, index=False)
    X_test.assign(**{target: y_test}).to_csv(test_csv, index=False)
    return Split(name, task, X_train, np.asarray(y_train), X_test, np.asarray(y_test), train_csv, test_csv, target)


@pytest.fixture(scope="module")
def sklearn_splits(tmp_path_factory) -> dict[str, Split]:
    tmp = tmp_path_factory.mktemp("accuracy")
    out = {}
    for name, (loader, task) in SKLEARN_SETS.items():
        X, y = loader(return_X_y=True, as_frame=True)
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
        out[name] = write_split(tmp, name, task, X_train, y_train, X_test, y_test)
    return out


def kiln_metric(split: Split, model: str, tmp: Path, *params: str) -> tuple[float, dict]:
    """Train with kiln on the split's CSVs; return the test metric it reports and its JSON."""
    args = [
        "train", "--data", str(split.train_csv), "--test-data", str(split.test_csv),
        "--target", split.target, "--task", split.task, "--model", model,
        "--no-track", "--output", str(tmp / f"{split.name}-{model}.json"), "--json",
    ]  # fmt: skip
    for p in params:
        args += ["--param", p]
    proc = run_kiln(*args, timeout=600, cwd=tmp)
    out = json.loads(proc.stdout)
    key = "test_r2" if split.task == "regression" else "test_roc_auc"
    assert key in out["metrics"], out["metrics"]
    assert out["rows"]["train"] == len(split.y_train) and out["rows"]["test"] == len(split.y_test), out["rows"]
    return out["metrics"][key], out


def sklearn_metric(split: Split, est) -> float:
    est.fit(split.X_train, split.y_train)
    if split.task == "regression":
        return r2_score(split.y_test, est.predict(split.X_test))
    proba = est.predict_proba(split.X_test)
    if split.n_classes == 2:
        return roc_auc_score(split.y_test, proba[:, 1])
    return roc_auc_score(split.y_test, proba, multi_class="ovr", average="macro")


def hgb(task: str, **kw):
    return (HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier)(
        random_state=0, **kw
    )


def check(name: str, what: str, kiln: float, sk: float, tol: float) -> None:
    print(f"{name:14} {what:10} kiln {kiln:.6f}  sklearn {sk:.6f}  diff {kiln - sk:+.6f}  (tol {tol})")
    assert np.isfinite(kiln) and np.isfinite(sk)
    assert abs(kiln - sk) <= tol, f"{name} {what}: kiln {kiln:.6f} vs scikit-learn {sk:.6f} (diff {kiln - sk:+.6f} > {tol})"


@pytest.mark.parametrize("name", list(SKLEARN_SETS))
def test_gbdt_matches_hist_gradient_boosting(name, sklearn_splits, tmp_path):
    split = sklearn_splits[name]
    kiln, _ = kiln_metric(split, "gbdt", tmp_path)
    # Defaults on both sides (100 rounds, 31 leaves, 20 rows per leaf, 255 bins, rate 0.1, no L2;
    # scikit-learn's early stopping is off below 10,000 rows).
    sk = sklearn_metric(split, hgb(split.task))
    check(name, "gbdt", kiln, sk, GBDT_TOL)


@pytest.mark.parametrize("name", ["breast_cancer", "wine", "digits"])
def test_logistic_matches_logistic_regression(name, sklearn_splits, tmp_path):
    split = sklearn_splits[name]
    kiln, out = kiln_metric(split, "logistic", tmp_path, "c=1")
    sk = sklearn_metric(split, make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=10_000, tol=1e-8)))
    check(name, "logistic", kiln, sk, LINEAR_TOL)


def test_linear_matches_ridge(sklearn_splits, tmp_path):
    split = sklearn_splits["diabetes"]
    kiln, _ = kiln_metric(split, "linear", tmp_path, "alpha=1")
    sk = sklearn_metric(split, make_pipeline(StandardScaler(), Ridge(alpha=1.0)))
    check("diabetes", "ridge", kiln, sk, LINEAR_TOL)


# ------------------------------------------------------------------------------------------
# churn-like table


def _generate_churn(n, seed=42):
    """A copy of gen_churn.generate (no --shift), used when the shared generator is absent."""
    rng = np.random.default_rng(seed)
    contract = rng.choice(["month-to-month", "one-year", "two-year"], size=n, p=[0.55, 0.25, 0.20])
    payment = rng.choice(["card", "bank", "paypal", "check"], size=n, p=[0.35, 0.25, 0.25, 0.15])
    tenure = np.clip(rng.gamma(2.0, 15.0, n), 1, 72).round(0)
    monthly = np.clip(rng.normal(65.0, 25.0, n), 18, 150)
    total = monthly * tenure * rng.uniform(0.9, 1.1, n)
    support = rng.poisson(1.5, n).astype(float)
    session = np.clip(rng.lognormal(3.0, 0.5, n), 1, 300)
    days_login = rng.exponential(10.0, n)
    products = rng.integers(1, 6, n).astype(float)
    age = np.clip(rng.normal(42, 13, n), 18, 90).round(0)
    c_eff = np.select([contract == "month-to-month", contract == "one-year"], [1.0, -0.3], -1.2)
    p_eff = np.where(payment == "check", 0.4, 0.0)
    logit = (-1.2 - 0.045 * (tenure - 25) + 0.018 * (monthly - 65) + 0.35 * (support - 1.5)
             - 0.02 * (session - 22) + 0.05 * (days_login - 10) - 0.25 * (products - 3)
             - 0.01 * (age - 42) + c_eff + p_eff)  # fmt: skip
    y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    return pd.DataFrame({
        "tenure_months": tenure, "monthly_charges": monthly.round(2), "total_charges": total.round(2),
        "support_calls": support, "avg_session_min": session.round(2), "days_since_login": days_login.round(2),
        "num_products": products, "age": age, "contract": contract, "payment_method": payment, "churn": y,
    })  # fmt: skip


def generate_churn(n: int, seed: int = 42) -> pd.DataFrame:
    if GEN_CHURN.is_file():
        spec = importlib.util.spec_from_file_location("gen_churn", GEN_CHURN)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod.generate(n, seed)
    return _generate_churn(n, seed)


@pytest.fixture(scope="module")
def churn_split(tmp_path_factory) -> Split:
    df = generate_churn(CHURN_ROWS, seed=42)
    n_train = len(df) * 8 // 10
    y = df.pop("churn")
    X_train, X_test = df.iloc[:n_train], df.iloc[n_train:]
    split = write_split(
        tmp_path_factory.mktemp("churn"), "churn", "classification", X_train, y.iloc[:n_train], X_test, y.iloc[n_train:], "churn"
    )
    # scikit-learn gets native categoricals, with the training categories (as kiln).
    for c in ("contract", "payment_method"):
        levels = sorted(split.X_train[c].unique())
        split.X_train = split.X_train.assign(**{c: pd.Categorical(split.X_train[c], categories=levels)})
        split.X_test = split.X_test.assign(**{c: pd.Categorical(split.X_test[c], categories=levels)})
    return split


def test_gbdt_churn_matches_hist_gradient_boosting(churn_split, tmp_path):
    kiln, out = kiln_metric(churn_split, "gbdt", tmp_path)
    sk = sklearn_metric(churn_split, hgb("classification", early_stopping=False, categorical_features="from_dtype"))
    check(f"churn {CHURN_ROWS // 1000}k", "gbdt", kiln, sk, GBDT_TOL)
    assert sk > 0.7, f"scikit-learn ROC-AUC {sk}: the generated table is not what this test expects"
