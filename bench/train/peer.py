"""One peer measurement in its own process (run by bench.py, which reads its peak RSS).

    python peer.py {hgb|lgbm|logreg} --train TRAIN.parquet --test TEST.parquet --out RESULT.json \
        [--trees 100 --leaves 31 --bins 255 --rate 0.1 --min-leaf 20] [--reps 5] [--single 300]

Loads both files (timed), fits (timed), predicts the whole test set `--reps` times after one
untimed call (median), scores ROC-AUC, and times `--single` one-row `predict_proba` calls on
one-row DataFrames (built before timing) after 20 untimed calls. Writes one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import pandas as pd

TARGET = "churn"


def load(train_path: str, test_path: str):
    train = pd.read_parquet(train_path)
    test = pd.read_parquet(test_path)
    y_train = train.pop(TARGET).to_numpy()
    y_test = test.pop(TARGET).to_numpy()
    cats = [c for c in train.columns if pd.api.types.is_string_dtype(train[c]) or pd.api.types.is_object_dtype(train[c])]
    for c in cats:
        # Native categoricals: the training categories, sorted (kiln sorts them too); the test
        # set uses the same categories so codes line up.
        levels = sorted(train[c].dropna().unique())
        train[c] = pd.Categorical(train[c], categories=levels)
        test[c] = pd.Categorical(test[c], categories=levels)
    return train, y_train, test, y_test, cats


def model_for(kind: str, a, numeric: list[str], cats: list[str]):
    if kind == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            max_iter=a.trees,
            max_leaf_nodes=a.leaves,
            max_bins=a.bins,
            learning_rate=a.rate,
            min_samples_leaf=a.min_leaf,
            l2_regularization=0.0,
            max_depth=None,
            early_stopping=False,
            categorical_features="from_dtype",
            random_state=0,
        )
    if kind == "lgbm":
        import lightgbm

        return lightgbm.LGBMClassifier(
            n_estimators=a.trees,
            num_leaves=a.leaves,
            max_bin=a.bins,
            learning_rate=a.rate,
            min_child_samples=a.min_leaf,
            min_child_weight=1e-3,
            reg_lambda=0.0,
            reg_alpha=0.0,
            subsample=1.0,
            colsample_bytree=1.0,
            max_depth=-1,
            random_state=0,
            verbose=-1,
        )
    if kind == "logreg":
        from sklearn.compose import ColumnTransformer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        # kiln's `logistic`: numeric standardised (population std), categoricals one-hot with
        # every category (no drop), L2 penalty 1/(2C)·|w|² on the summed log loss, intercept
        # unpenalised. Default C=1, lbfgs.
        pre = ColumnTransformer(
            [
                ("num", StandardScaler(), numeric),
                ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), cats),
            ]
        )
        return Pipeline([("pre", pre), ("lr", LogisticRegression(C=a.c, max_iter=a.max_iter))])
    raise SystemExit(f"unknown kind {kind}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["hgb", "lgbm", "logreg"])
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--leaves", type=int, default=31)
    ap.add_argument("--bins", type=int, default=255)
    ap.add_argument("--rate", type=float, default=0.1)
    ap.add_argument("--min-leaf", type=int, default=20)
    ap.add_argument("--c", type=float, default=1.0)
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--single", type=int, default=300)
    a = ap.parse_args()

    from sklearn.metrics import roc_auc_score

    t = time.perf_counter()
    X, y, Xt, yt, cats = load(a.train, a.test)
    load_s = time.perf_counter() - t
    numeric = [c for c in X.columns if c not in cats]
    model = model_for(a.kind, a, numeric, cats)

    t = time.perf_counter()
    model.fit(X, y)
    fit_s = time.perf_counter() - t
    out: dict = {"kind": a.kind, "load_seconds": load_s, "fit_seconds": fit_s, "rows_train": len(X)}
    if a.kind == "logreg":
        out["n_iter"] = int(np.max(model.named_steps["lr"].n_iter_))

    p = model.predict_proba(Xt)[:, 1]
    out["roc_auc"] = float(roc_auc_score(yt, p))
    if a.kind != "logreg":
        batch = []
        for _ in range(a.reps):
            t = time.perf_counter()
            model.predict_proba(Xt)
            batch.append(time.perf_counter() - t)
        out["rows_test"] = len(Xt)
        out["batch_seconds"] = statistics.median(batch)
        out["batch_seconds_all"] = batch
        rows = [Xt.iloc[[i]] for i in range(max(a.single, 20))]
        for r in rows[:20]:
            model.predict_proba(r)
        single = []
        for r in rows[: a.single]:
            t = time.perf_counter()
            model.predict_proba(r)
            single.append((time.perf_counter() - t) * 1e6)
        single.sort()
        out["single_row_us"] = statistics.median(single)
        out["single_row_us_p90"] = single[int(0.9 * (len(single) - 1))]
        out["single_row_calls"] = len(single)
    if a.kind == "lgbm":
        import lightgbm

        out["version"] = lightgbm.__version__
    else:
        import sklearn

        out["version"] = sklearn.__version__
    out["threads_env"] = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS",)}
    with open(a.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
