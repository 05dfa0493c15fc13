"""kiln's GBDT and logistic regression vs scikit-learn and LightGBM on the 1M-row churn table.

Run through bench/train/run.sh, which makes the venv and builds kiln. This script imports only
the standard library: every tool runs in a child process of its own, and the child's peak RSS
comes from wait4(2) (`ru_maxrss`). Linux carries the parent's high-water mark into a child
over exec, so the parent stays small (~10 MiB) on purpose; data preparation runs in a child too.

Per repetition (tools in a rotated order, so machine noise lands on all alike):
  kiln      `kiln train --model gbdt ... --json` (fit_seconds, test ROC-AUC, peak RSS), then the
            `predict_latency` example on the saved model (batch and single-row prediction);
  sklearn   HistGradientBoostingClassifier, peer.py hgb;
  lightgbm  LGBMClassifier, peer.py lgbm;
  logistic  `kiln train --model logistic` vs peer.py logreg (StandardScaler + OneHotEncoder +
            LogisticRegression, C=1).
The table shows the median over repetitions; ratios are median(kiln) / median(peer) of the same
run. Everything (every repetition, load average, CPU seconds) goes to the JSON file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
GEN_CHURN = Path(os.environ.get("KILN_GEN_CHURN", "/work/shared/bench-data/gen_churn.py"))


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_child(cmd: list[str], *, timeout: float = 1800, env: dict | None = None) -> dict:
    """Run `cmd`; return stdout, wall seconds, peak RSS (MiB) and CPU seconds of that process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        full_env = dict(os.environ)
        full_env.update(env or {})
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=full_env)
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, ru = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}\n--- stdout\n{stdout[-4000:]}\n--- stderr\n{stderr[-4000:]}")
    return {
        "stdout": stdout,
        "wall_seconds": wall,
        "peak_rss_mib": ru.ru_maxrss / 1024.0,
        "cpu_seconds": ru.ru_utime + ru.ru_stime,
    }


# ----------------------------------------------------------------------------------------------
# data


PREP = r"""
import sys, pandas as pd
csv, train, test = sys.argv[1:4]
df = pd.read_csv(csv)
n_train = len(df) * 8 // 10
df.iloc[:n_train].to_parquet(train, index=False)
df.iloc[n_train:].to_parquet(test, index=False)
print(len(df), n_train, len(df) - n_train)
"""


def prepare_data(python: str, rows: int, seed: int, cache: Path) -> tuple[Path, Path, Path]:
    """The churn table (cached CSV) and its 80/20 split as Parquet: first 80% of the rows train,
    last 20% test (rows are i.i.d. draws, so this is a random split, and a deterministic one)."""
    cache.mkdir(parents=True, exist_ok=True)
    csv = cache / f"churn-{rows}-s{seed}.csv"
    train = cache / f"churn-{rows}-s{seed}-train.parquet"
    test = cache / f"churn-{rows}-s{seed}-test.parquet"
    if not csv.exists():
        log(f"generating {csv} with {GEN_CHURN}")
        tmp = csv.with_suffix(".csv.tmp")
        run_child([python, str(GEN_CHURN), str(tmp), "--rows", str(rows), "--seed", str(seed)])
        tmp.rename(csv)
    if not (train.exists() and test.exists()) or train.stat().st_mtime < csv.stat().st_mtime:
        log(f"splitting 80/20 into {train.name}, {test.name}")
        run_child([python, "-c", PREP, str(csv), str(train), str(test)])
    return csv, train, test


# ----------------------------------------------------------------------------------------------
# tools


def kiln_gbdt(a, train: Path, test: Path, work: Path) -> dict:
    model = work / "kiln-gbdt.json"
    r = run_child(
        [
            a.kiln, "train", "--data", str(train), "--test-data", str(test),
            "--target", "churn", "--task", "classification", "--model", "gbdt",
            "--param", f"n_trees={a.trees}", "--param", f"num_leaves={a.leaves}",
            "--param", f"max_bins={a.bins}", "--param", f"learning_rate={a.rate}",
            "--param", "min_data_in_leaf=20", "--param", "lambda_l2=0",
            "--no-track", "--output", str(model), "--json",
        ]  # fmt: skip
    )
    out = json.loads(r["stdout"])
    res = {
        "fit_seconds": out["fit_seconds"],
        "roc_auc": out["metrics"]["test_roc_auc"],
        "peak_rss_mib": r["peak_rss_mib"],
        "process_wall_seconds": r["wall_seconds"],
        "process_cpu_seconds": r["cpu_seconds"],
        # Reading both Parquet files, hashing them, encoding, scoring the test set, writing
        # the model: everything in the process that is not the fit.
        "outside_fit_seconds": r["wall_seconds"] - out["fit_seconds"],
        "rows_train": out["rows"]["train"],
    }
    p = run_child(
        [a.predict_latency, str(model), str(test), "--reps", str(a.predict_reps), "--single", "20000"]
    )
    pl = json.loads(p["stdout"])
    res.update(
        batch_seconds=pl["batch_seconds"],
        batch_seconds_all=pl["batch_seconds_all"],
        rows_test=pl["rows"],
        single_row_us=pl["single_row_us"],
        single_row_us_p90=pl["single_row_us_p90"],
        single_row_us_p99=pl["single_row_us_p99"],
        single_row_dataset_us=pl["single_row_dataset_us"],
        test_load_seconds=pl["load_seconds"],
        test_encode_seconds=pl["encode_seconds"],
        predict_roc_auc=pl["roc_auc"],
        trees=pl["trees"],
    )
    if pl["roc_auc"] is not None and abs(pl["roc_auc"] - res["roc_auc"]) > 1e-9:
        raise RuntimeError(f"kiln: predict_latency ROC-AUC {pl['roc_auc']} != train's {res['roc_auc']}")
    return res


def peer(a, kind: str, train: Path, test: Path, work: Path) -> dict:
    out = work / f"{kind}.json"
    r = run_child(
        [
            a.python, str(HERE / "peer.py"), kind, "--train", str(train), "--test", str(test),
            "--out", str(out), "--trees", str(a.trees), "--leaves", str(a.leaves),
            "--bins", str(a.bins), "--rate", str(a.rate), "--reps", str(a.predict_reps),
            "--single", str(a.single),
        ]  # fmt: skip
    )
    res = json.loads(out.read_text())
    res.update(peak_rss_mib=r["peak_rss_mib"], process_wall_seconds=r["wall_seconds"], process_cpu_seconds=r["cpu_seconds"])
    return res


def kiln_logistic(a, train: Path, test: Path, work: Path) -> dict:
    r = run_child(
        [
            a.kiln, "train", "--data", str(train), "--test-data", str(test),
            "--target", "churn", "--task", "classification", "--model", "logistic",
            "--param", "c=1", "--no-track", "--output", str(work / "kiln-logistic.json"), "--json",
        ]  # fmt: skip
    )
    out = json.loads(r["stdout"])
    model = json.loads((work / "kiln-logistic.json").read_text())
    return {
        "fit_seconds": out["fit_seconds"],
        "roc_auc": out["metrics"]["test_roc_auc"],
        "peak_rss_mib": r["peak_rss_mib"],
        "process_wall_seconds": r["wall_seconds"],
        "n_iter": model["learner"]["model"].get("iterations"),
    }


# ----------------------------------------------------------------------------------------------
# report


def med(reps: list[dict], key: str):
    vals = [r[key] for r in reps if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt(v, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "s":
        return f"{v:.3f} s"
    if unit == "us":
        return f"{v:,.1f} µs" if v < 1000 else f"{v / 1000:,.2f} ms"
    if unit == "mib":
        return f"{v:,.0f} MiB"
    if unit == "auc":
        return f"{v:.4f}"
    return str(v)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--predict-latency", required=True, help="the predict_latency example binary")
    ap.add_argument("--python", default=sys.executable, help="python of the peer venv")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one repetition")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--leaves", type=int, default=31)
    ap.add_argument("--bins", type=int, default=255)
    ap.add_argument("--rate", type=float, default=0.1)
    ap.add_argument("--predict-reps", type=int, default=5, help="timed batch predictions per process")
    ap.add_argument("--single", type=int, default=300, help="timed one-row calls per Python process")
    ap.add_argument("--data-dir", default=os.environ.get("KILN_BENCH_DATA", str(Path.home() / ".cache/kiln-bench-data")))
    ap.add_argument("--out", help="results JSON (default bench/results/train-<date>[-quick].json)")
    ap.add_argument("--skip-logistic", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.reps = 1

    started = dt.datetime.now(dt.timezone.utc)
    _, train, test = prepare_data(a.python, a.rows, a.seed, Path(a.data_dir))
    work = Path(tempfile.mkdtemp(prefix="kiln-bench-train-"))
    tools = ["kiln", "sklearn", "lightgbm"]
    runs: dict[str, list[dict]] = {t: [] for t in tools + ["kiln_logistic", "sklearn_logistic"]}
    reps_meta = []
    try:
        for rep in range(a.reps):
            order = tools[rep % 3 :] + tools[: rep % 3]
            meta = {"rep": rep + 1, "order": order, "loadavg_start": loadavg()}
            for tool in order:
                log(f"rep {rep + 1}/{a.reps}: {tool} (load {loadavg()[0]})")
                la = loadavg()
                if tool == "kiln":
                    r = kiln_gbdt(a, train, test, work)
                elif tool == "sklearn":
                    r = peer(a, "hgb", train, test, work)
                else:
                    r = peer(a, "lgbm", train, test, work)
                r["loadavg_before"] = la
                runs[tool].append(r)
                log(
                    f"  {tool}: fit {r['fit_seconds']:.2f}s auc {r['roc_auc']:.4f} rss {r['peak_rss_mib']:.0f}MiB "
                    f"batch {r['batch_seconds']:.3f}s single {r['single_row_us']:.1f}us"
                )
            if not a.skip_logistic:
                lorder = ["kiln_logistic", "sklearn_logistic"][:: 1 if rep % 2 == 0 else -1]
                for tool in lorder:
                    la = loadavg()
                    r = kiln_logistic(a, train, test, work) if tool == "kiln_logistic" else peer(a, "logreg", train, test, work)
                    r["loadavg_before"] = la
                    runs[tool].append(r)
                    log(f"  {tool}: fit {r['fit_seconds']:.2f}s auc {r['roc_auc']:.4f} iters {r.get('n_iter')}")
            meta["loadavg_end"] = loadavg()
            reps_meta.append(meta)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    k, s, l = runs["kiln"], runs["sklearn"], runs["lightgbm"]
    m = {t: {key: med(runs[t], key) for key in ("fit_seconds", "roc_auc", "peak_rss_mib", "batch_seconds", "single_row_us", "load_seconds", "outside_fit_seconds", "single_row_dataset_us", "process_cpu_seconds")} for t in runs}

    def ratio(t: str, peer_t: str, key: str):
        a_, b_ = m[t][key], m[peer_t][key]
        return a_ / b_ if a_ is not None and b_ else None

    rows = [
        ("GBDT fit (100 trees)", "fit_seconds", "s"),
        ("test ROC-AUC", "roc_auc", "auc"),
        ("peak RSS (whole process)", "peak_rss_mib", "mib"),
        (f"predict {k[0]['rows_test']:,} rows", "batch_seconds", "s"),
        ("predict 1 row (median)", "single_row_us", "us"),
    ]
    targets = {
        "fit_seconds": ("lightgbm", 1.0),
        "peak_rss_mib": ("sklearn", 0.5),
        "batch_seconds": ("lightgbm", 0.5),
    }
    checks = []
    print()
    print(f"kiln vs scikit-learn {s[0]['version']} HistGradientBoosting vs LightGBM {l[0]['version']}: "
          f"{a.rows:,}-row churn table, {k[0]['rows_train']:,} train / {k[0]['rows_test']:,} test, "
          f"{a.trees} trees, {a.leaves} leaves, {a.bins} bins, rate {a.rate}; median of {a.reps}")
    hdr = f"{'':28} {'kiln':>12} {'sklearn HGB':>12} {'LightGBM':>12} {'kiln/sklearn':>13} {'kiln/LightGBM':>14}  target"
    print(hdr)
    print("-" * len(hdr))
    for label, key, unit in rows:
        if key == "roc_auc":
            rs = f"{m['kiln'][key] - m['sklearn'][key]:+.4f}"
            rl = f"{m['kiln'][key] - m['lightgbm'][key]:+.4f}"
            ok = abs(m["kiln"][key] - m["lightgbm"][key]) <= 0.005
            tgt = f"|diff LightGBM| <= 0.005: {'pass' if ok else 'MISS'}"
            checks.append({"name": "roc_auc_vs_lightgbm", "value": m["kiln"][key] - m["lightgbm"][key], "limit": 0.005, "pass": ok})
        else:
            r_s, r_l = ratio("kiln", "sklearn", key), ratio("kiln", "lightgbm", key)
            rs, rl = (f"{r:.3f}x" if r >= 0.01 else f"{r:.2g}x" for r in (r_s, r_l))
            tgt = ""
            if key in targets:
                peer_t, lim = targets[key]
                val = r_l if peer_t == "lightgbm" else r_s
                ok = val <= lim
                tgt = f"<= {lim}x {'sklearn' if peer_t == 'sklearn' else 'LightGBM'}: {'pass' if ok else 'MISS'}"
                checks.append({"name": f"{key}_vs_{peer_t}", "value": val, "limit": lim, "pass": ok})
            if key == "single_row_us":
                ok = m["kiln"][key] <= 10.0
                tgt = f"kiln <= 10 µs: {'pass' if ok else 'MISS'}"
                checks.append({"name": "single_row_us", "value": m["kiln"][key], "limit": 10.0, "pass": ok})
        print(f"{label:28} {fmt(m['kiln'][key], unit):>12} {fmt(m['sklearn'][key], unit):>12} {fmt(m['lightgbm'][key], unit):>12} {rs:>13} {rl:>14}  {tgt}")
    if not a.skip_logistic:
        kl, sl = m["kiln_logistic"], m["sklearn_logistic"]
        r = kl["fit_seconds"] / sl["fit_seconds"]
        ok = r <= 1.0
        checks.append({"name": "logistic_fit_vs_sklearn", "value": r, "limit": 1.0, "pass": ok})
        print(f"{'logistic regression fit':28} {fmt(kl['fit_seconds'], 's'):>12} {fmt(sl['fit_seconds'], 's'):>12} {'':>12} {r:>12.3f}x {'':>14}  <= 1.0x sklearn: {'pass' if ok else 'MISS'}")
        print(f"{'logistic test ROC-AUC':28} {fmt(kl['roc_auc'], 'auc'):>12} {fmt(sl['roc_auc'], 'auc'):>12} {'':>12} {kl['roc_auc'] - sl['roc_auc']:>+13.4f}")
    print()
    print(f"kiln single row through a 1-row dataset (batch API): {fmt(m['kiln']['single_row_dataset_us'], 'us')}; "
          f"kiln process time outside the fit (read + hash + encode Parquet, score test, write model): "
          f"{fmt(m['kiln']['outside_fit_seconds'], 's')}; Python load of both Parquet files: "
          f"sklearn {fmt(m['sklearn']['load_seconds'], 's')}, LightGBM {fmt(m['lightgbm']['load_seconds'], 's')}")
    print(f"load average: start {reps_meta[0]['loadavg_start']}, end {reps_meta[-1]['loadavg_end']}")

    result = {
        "bench": "train",
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "config": {k_: v for k_, v in vars(a).items() if k_ not in ("python",)},
        "data": {"rows": a.rows, "seed": a.seed, "train": str(train), "test": str(test), "split": "first 80% train, last 20% test"},
        "medians": m,
        "ratios": {
            key: {"kiln/sklearn": ratio("kiln", "sklearn", key), "kiln/lightgbm": ratio("kiln", "lightgbm", key)}
            for _, key, _ in rows if key != "roc_auc"
        }
        | ({"logistic_fit": {"kiln/sklearn": m["kiln_logistic"]["fit_seconds"] / m["sklearn_logistic"]["fit_seconds"]}} if not a.skip_logistic else {}),
        "checks": checks,
        "repetitions": reps_meta,
        "runs": runs,
    }
    out = Path(a.out) if a.out else REPO / "bench/results" / f"train-{started:%Y-%m-%d}{'-quick' if a.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
