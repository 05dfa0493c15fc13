#!/usr/bin/env python3
"""bench_churn.py - LightGBM / scikit-learn baseline for kiln-ml's churn benchmark.

Command: python bench_churn.py CHURN.csv [lightgbm|sklearn] [THREADS]   (default lightgbm, all cores)
Data:    python /work/shared/bench-data/gen_churn.py /tmp/churn1m.csv --rows 1000000 --seed 42
Split:   first 80% of the rows train, last 20% test (the same split as
         `cargo run -p kiln-ml --release --example compare -- churn CHURN.csv`).
Model:   100 trees, 31 leaves, 255 bins, learning rate 0.1, categoricals native, no early
         stopping. Prints fit time, test ROC-AUC, batch predict time for the test rows and
         the mean single-row predict latency. Run under `/usr/bin/time -v` for peak RSS.
"""
import sys
import time

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

CATS = ["contract", "payment_method"]


def main():
    path = sys.argv[1]
    which = sys.argv[2] if len(sys.argv) > 2 else "lightgbm"
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    df = pd.read_csv(path)
    for c in CATS:
        df[c] = df[c].astype("category")
    y = df.pop("churn").to_numpy()
    n_train = len(df) * 8 // 10
    Xtr, Xte, ytr, yte = df.iloc[:n_train], df.iloc[n_train:], y[:n_train], y[n_train:]
    if which == "lightgbm":
        import lightgbm as lgb

        model = lgb.LGBMClassifier(n_estimators=100, num_leaves=31, max_bin=255, learning_rate=0.1, verbose=-1,
                                   n_jobs=threads or None)
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(Xtr, ytr, categorical_feature=CATS)
        fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
        booster = model.booster_
        predict = lambda X: booster.predict(X)  # noqa: E731
    else:
        from sklearn.ensemble import HistGradientBoostingClassifier

        model = HistGradientBoostingClassifier(max_iter=100, max_leaf_nodes=31, max_bins=255, learning_rate=0.1,
                                               early_stopping=False, categorical_features="from_dtype")
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(Xtr, ytr)
        fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
        predict = lambda X: model.predict_proba(X)[:, 1]  # noqa: E731
    t1, c1 = time.perf_counter(), time.process_time()
    p = predict(Xte)
    pred_s, pred_cpu = time.perf_counter() - t1, time.process_time() - c1
    auc = roc_auc_score(yte, p)
    rows = [Xte.iloc[i:i + 1] for i in range(200)]
    t2 = time.perf_counter()
    for r in rows:
        predict(r)
    single_us = (time.perf_counter() - t2) / len(rows) * 1e6
    print(f"{which}: fit {fit_s:.2f}s (cpu {fit_cpu:.2f}s)  test AUC {auc:.4f}  "
          f"predict {len(Xte)} rows {pred_s:.3f}s (cpu {pred_cpu:.2f}s)  "
          f"single-row {single_us:.1f}us (DataFrame row incl. pandas overhead)")


if __name__ == "__main__":
    main()
