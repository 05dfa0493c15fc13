#!/usr/bin/env python3
"""make_datasets.py - dump scikit-learn's bundled datasets for kiln-ml's accuracy comparison.

Command: python make_datasets.py [OUT_DIR]        (default /tmp/kiln-ml-data)
Needs:   scikit-learn, numpy, pandas (e.g. a venv at /tmp/kiln-ml-venv).

For breast_cancer (binary), wine and digits (multiclass) and diabetes (regression) it writes
OUT_DIR/<name>_train.csv and OUT_DIR/<name>_test.csv: a fixed 75/25 split
(random_state=42, stratified for classification), header f0..fN,target, all numeric, the
target in the last column. It then fits scikit-learn's HistGradientBoosting{Classifier,
Regressor} (and RandomForest*, random_state=0) with default settings on the train part and
prints the test metric: ROC-AUC
(binary), one-vs-rest macro ROC-AUC (multiclass) or R^2 (regression). The same numbers go
to OUT_DIR/sklearn_results.json. `cargo run -p kiln-ml --release --example compare -- sklearn
OUT_DIR` prints kiln's numbers for the same files.
"""
import json
import os
import sys

import numpy as np
import pandas as pd
from sklearn import datasets
from sklearn.ensemble import (HistGradientBoostingClassifier, HistGradientBoostingRegressor,
                              RandomForestClassifier, RandomForestRegressor)
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import train_test_split

DATASETS = [
    ("breast_cancer", datasets.load_breast_cancer, "binary"),
    ("wine", datasets.load_wine, "multiclass"),
    ("digits", datasets.load_digits, "multiclass"),
    ("diabetes", datasets.load_diabetes, "regression"),
]


def write(path, X, y):
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    df["target"] = y
    # repr-exact floats so both sides read the same values
    df.to_csv(path, index=False, float_format="%.17g")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/kiln-ml-data"
    os.makedirs(out, exist_ok=True)
    results = {}
    print(f"{'dataset':<14} {'task':<11} {'rows':>5} {'feats':>5}  sklearn HGB (default), RandomForest")
    for name, loader, task in DATASETS:
        X, y = loader(return_X_y=True)
        strat = y if task != "regression" else None
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=42, stratify=strat)
        write(os.path.join(out, f"{name}_train.csv"), Xtr, ytr)
        write(os.path.join(out, f"{name}_test.csv"), Xte, yte)
        scores = {}
        for kind in ("hgb", "rf"):
            if task == "regression":
                est = HistGradientBoostingRegressor() if kind == "hgb" else RandomForestRegressor(random_state=0)
                m = est.fit(Xtr, ytr)
                scores[kind], metric = r2_score(yte, m.predict(Xte)), "r2"
            else:
                est = HistGradientBoostingClassifier() if kind == "hgb" else RandomForestClassifier(random_state=0)
                m = est.fit(Xtr, ytr)
                p = m.predict_proba(Xte)
                if task == "binary":
                    scores[kind], metric = roc_auc_score(yte, p[:, 1]), "roc_auc"
                else:
                    scores[kind] = roc_auc_score(yte, p, multi_class="ovr", average="macro")
                    metric = "roc_auc_ovr"
        results[name] = {"task": task, "metric": metric, "sklearn": scores["hgb"], "sklearn_rf": scores["rf"]}
        print(f"{name:<14} {task:<11} {len(y):>5} {X.shape[1]:>5}  {metric}={scores['hgb']:.6f}"
              f"  (RandomForest {scores['rf']:.6f})")
    with open(os.path.join(out, "sklearn_results.json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
