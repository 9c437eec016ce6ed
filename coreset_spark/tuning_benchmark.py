"""The tuning benchmark: the whole search on a coreset against the same search on the full data,
and against Spark MLlib's CrossValidator, in one run.

Per dataset (KDD Cup 99 binary, flights late > 15 min; 70/30 split by a hash):

* **(a) coreset**: build a coreset of at most 2% of the training rows in Spark, collect it, run the
  grid (two estimator families, 3 weighted folds) with weighted fits and scores, refit the best;
* **(b) full data**: collect the training data to the driver and run scikit-learn's
  ``GridSearchCV`` with the same grid and 3 stratified folds on one machine, refit the best;
* both chosen models scored on the held-out test split (in Spark); the speed-up of (a) over (b)
  with and without the build;
* the configuration chosen by (a) fitted on the full training data (the usual last step, timed
  on its own) and scored on the test split: whether the choice made on the coreset is as good on
  the full data as the choice made there;
* **MLlib**: ``CrossValidator`` over the full training data (logistic regression, 8
  configurations, 3 folds) against the coreset path with the same 8 configurations (``regParam``
  lambda becomes ``C = 1 / (lambda n)``, which transfers because coreset weights sum to n);
* **distributed**: the coreset search run as Spark tasks on a 2-executor ``local-cluster`` (a
  separate process) must pick the same configuration as the local search.

Run with ``python jobs/benchmark_tuning.py --config conf/benchmark_tuning.yaml``; writes
``benchmark_tuning.json`` and ``benchmark_tuning.md``.
"""

from __future__ import annotations

import html
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from coreset_spark import datasets
from coreset_spark.config import CoresetParams, DataSpec
from coreset_spark.elastic_net import ElasticNetLogisticRegression
from coreset_spark.job import split_train_test
from coreset_spark.spark.build import build_tree
from coreset_spark.spark.evaluate import HOLDOUT_METRIC, collect_rows, encoded_frame, evaluate_many
from coreset_spark.spark.frame import with_row_ids
from coreset_spark.tuning import Candidate, candidates_from_config, tune

Log = Callable[[str], None]


def _timed(work: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = work()
    return out, time.perf_counter() - start


def _full_grid(candidates: list[Candidate]) -> list[dict[str, list[Any]]]:
    """scikit-learn's form of the candidates: one grid per family, the estimator as the step ``model``."""
    return [{"model": [c.estimator], **{f"model__{k}": list(v) for k, v in c.space.items()}} for c in candidates]


def full_data_search(candidates: list[Candidate], x: np.ndarray, y: np.ndarray, scoring: str, cv: int, seed: int,
                     n_jobs: int) -> GridSearchCV:
    """The baseline: scikit-learn's GridSearchCV on the full training data, stratified folds."""
    search = GridSearchCV(Pipeline([("model", candidates[0].estimator)]), _full_grid(candidates), scoring=scoring, refit=True,
                          cv=StratifiedKFold(cv, shuffle=True, random_state=seed), n_jobs=n_jobs, error_score=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(x, y)
    return search


def _full_data(train: DataFrame, tree: Any, candidates: list[Candidate], scoring: str, folds: int, seed: int,
               n_jobs: int, chosen: Callable[[np.ndarray, np.ndarray], Any]) -> tuple[GridSearchCV, float, float, Any, float]:
    """(b): collect the training data to the driver and search it; then fit the coreset's chosen
    configuration on the same full training data (``chosen(x, y)``), timed on its own. The arrays
    are dropped on return."""
    start = time.perf_counter()
    x, y, _ = collect_rows(train, tree)
    collect_s = time.perf_counter() - start
    start = time.perf_counter()
    search = full_data_search(candidates, x, y, scoring, folds, seed, n_jobs)
    search_s = time.perf_counter() - start
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        refitted, refit_s = _timed(lambda: chosen(x, y))
    return search, collect_s, search_s, refitted, refit_s


def _describe(params: Mapping[str, Any]) -> str:
    model = params.get("model")
    rest = {k.removeprefix("model__"): v for k, v in params.items() if k != "model"}
    return f"{type(model).__name__}({', '.join(f'{k}={v}' for k, v in rest.items())})"


def _encoded_vectors(frame: DataFrame, tree: Any) -> DataFrame:
    """``label`` and ``features`` (an MLlib vector) encoded exactly like the coreset."""
    from pyspark.ml.functions import array_to_vector

    encoder, _ = tree.encoder.with_safe_names()

    def encode(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if batch.num_rows:
                x = encoder.transform(batch)
                yield pa.RecordBatch.from_arrays(
                    [pa.array(batch.column("_class").to_numpy(zero_copy_only=False).astype(np.float64)),
                     pa.array(list(x), pa.list_(pa.float64()))], ["label", "features"])

    labelled = encoded_frame(frame, tree).where(F.col("_class").isNotNull())
    arrays = labelled.mapInArrow(encode, "label double, features array<double>")
    return arrays.select("label", array_to_vector(F.col("features")).alias("features"))


def mllib_comparison(spark: SparkSession, train: DataFrame, test: DataFrame, tree: Any, coreset: Any,
                     cfg: Mapping[str, Any], build_seconds: float, log: Log) -> dict[str, Any]:
    """MLlib CrossValidator on the full data against the coreset search, same 8 configurations."""
    from pyspark.ml.classification import LogisticRegression as MLlibLogistic
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder
    from sklearn.linear_model import LogisticRegression

    reg_params = [float(v) for v in cfg.get("reg_params", [0.0, 0.0001, 0.001, 0.01])]
    mixes = [float(v) for v in cfg.get("elastic_net", [0.0, 0.5])]
    folds = int(cfg.get("folds", 3))
    train_vec = _encoded_vectors(train, tree).persist(StorageLevel.MEMORY_AND_DISK)
    test_vec = _encoded_vectors(test, tree).persist(StorageLevel.MEMORY_AND_DISK)
    (n_train, n_test), prepare_s = _timed(lambda: (train_vec.count(), test_vec.count()))
    lr = MLlibLogistic(maxIter=int(cfg.get("max_iter", 100)), standardization=False)
    grid = ParamGridBuilder().addGrid(lr.regParam, reg_params).addGrid(lr.elasticNetParam, mixes).build()
    evaluator = BinaryClassificationEvaluator(metricName="areaUnderROC")
    cv = CrossValidator(estimator=lr, estimatorParamMaps=grid, evaluator=evaluator, numFolds=folds,
                        parallelism=int(cfg.get("parallelism", 2)), seed=int(cfg.get("seed", 0)))
    log(f"[tuning] MLlib CrossValidator: {len(grid)} configurations x {folds} folds on {n_train} rows ...")
    model, mllib_s = _timed(lambda: cv.fit(train_vec))
    best_index = int(np.argmax(model.avgMetrics))
    mllib_auc = evaluator.evaluate(model.transform(test_vec))
    train_vec.unpersist()
    test_vec.unpersist()

    n = float(coreset.weight.sum())
    space = [{"C": [math.inf if r == 0 else 1.0 / (r * n)], "l1_ratio": [m]} for r in reg_params for m in mixes]
    # Without a penalty (regParam 0) the elastic-net mix means nothing: lbfgs, as MLlib's own choice
    # for that case; with an L1 part, ElasticNetLogisticRegression (the same objective as
    # scikit-learn's saga, solved by L-BFGS-B: saga stalls on a coreset's large-norm rows).
    max_iter = int(cfg.get("sklearn_max_iter", 3000))
    candidates = [Candidate(f"lr_{i}", LogisticRegression(C=s["C"][0], max_iter=max_iter)
                            if s["l1_ratio"][0] == 0 or math.isinf(s["C"][0]) else
                            ElasticNetLogisticRegression(C=s["C"][0], l1_ratio=s["l1_ratio"][0], max_iter=max_iter),
                            {}) for i, s in enumerate(space)]
    result, search_s = _timed(lambda: tune(candidates, coreset, scoring="roc_auc", cv=folds,
                                           n_jobs=int(cfg.get("n_jobs", 2))))
    best = result.best
    coreset_auc = evaluate_many({"best": result.best_estimator_}, test, tree)["best"]["roc_auc"]
    chosen = space[int(best.candidate.split("_")[1])]
    out = {
        "configurations": len(grid), "folds": folds, "train_rows": n_train, "test_rows": n_test,
        "mllib": {"seconds": round(mllib_s, 2), "prepare_seconds": round(prepare_s, 2),
                  "best": grid_label(reg_params, mixes, best_index), "test_roc_auc": mllib_auc},
        "coreset": {"seconds": round(build_seconds + search_s, 2), "build_seconds": round(build_seconds, 2),
                    "search_seconds": round(search_s, 2), "rows": len(coreset),
                    "best": {"C": chosen["C"][0], "l1_ratio": chosen["l1_ratio"][0]}, "test_roc_auc": coreset_auc},
    }
    out["speedup"] = round(mllib_s / (build_seconds + search_s), 2)
    out["auc_gap_points"] = round(100 * (mllib_auc - coreset_auc), 3)
    log(f"[tuning] MLlib {mllib_s:.1f} s (test AUC {mllib_auc:.4f}) vs coreset {build_seconds + search_s:.1f} s "
        f"(test AUC {coreset_auc:.4f}): {out['speedup']}x")
    return out


def grid_label(reg_params: list[float], mixes: list[float], index: int) -> dict[str, float]:
    """The (regParam, elasticNetParam) of ParamGridBuilder's ``index``-th map (regParam outer)."""
    return {"regParam": reg_params[index // len(mixes)], "elasticNetParam": mixes[index % len(mixes)]}


def one_dataset(spark: SparkSession, name: str, cfg: Mapping[str, Any], log: Log, work_dir: Path) -> dict[str, Any]:
    """(a) against (b) on one dataset, and MLlib when configured."""
    df, spec = datasets.load(spark, cfg.get("dataset", name))
    df = with_row_ids(df, "rid")
    spec = DataSpec(**{**spec.__dict__, "row_id": "rid", **dict(cfg.get("spec") or {})})
    train, test = split_train_test(df, float(cfg.get("test_fraction", 0.3)), int(cfg.get("split_seed", 42)))
    train = train.repartition(int(cfg.get("partitions", 16))).persist(StorageLevel.MEMORY_AND_DISK)
    test = test.persist(StorageLevel.MEMORY_AND_DISK)
    n_train, n_test = train.count(), test.count()
    scoring = str(cfg.get("scoring", "roc_auc"))
    folds = int(cfg.get("folds", 3))
    seed = int(cfg.get("seed", 0))
    n_jobs = int(cfg.get("n_jobs", 2))
    candidates = candidates_from_config(cfg["candidates"])
    n_configs = sum(len(c.grid()) for c in candidates)
    params = CoresetParams(**{"seed": seed, **dict(cfg.get("coreset") or {})})
    log(f"[tuning] {name}: {n_train} training rows, {n_test} test rows; {n_configs} configurations x {folds} folds")

    tree, build_s = _timed(lambda: build_tree(train, spec, params))
    coreset, collect_s = _timed(lambda: tree.get_coreset(0))
    result = tune(candidates, coreset, scoring=scoring, cv=folds, seed=seed, n_jobs=n_jobs)
    search_s = result.seconds["search"] + result.seconds.get("refit", 0.0)
    coreset_s = build_s + collect_s + search_s
    log(f"[tuning] (a) coreset {len(coreset)} rows ({100 * len(coreset) / n_train:.2f}%): build {build_s:.1f} s, "
        f"collect {collect_s:.1f} s, search + refit {search_s:.1f} s; best {result.best.label()}")

    def on_full(x: np.ndarray, y: np.ndarray) -> Any:
        return result.refit(result.best, x, y, np.ones(len(y)))

    search, full_collect_s, full_search_s, refitted, refit_s = _full_data(train, tree, candidates, scoring, folds,
                                                                          seed, n_jobs, on_full)
    full_s = full_collect_s + full_search_s
    log(f"[tuning] (b) full data: collect {full_collect_s:.1f} s, search + refit {full_search_s:.1f} s; "
        f"best {_describe(search.best_params_)}; the coreset's choice fitted on the full data in {refit_s:.1f} s")

    chosen = {"coreset": result.best_estimator_, "full": search.best_estimator_, "coreset_choice_on_full": refitted}
    metrics = evaluate_many(chosen, test, tree)
    key, sign = HOLDOUT_METRIC[result.scoring]
    gap = 100 * (metrics["full"][key] - metrics["coreset"][key]) * sign
    choice_gap = 100 * (metrics["full"][key] - metrics["coreset_choice_on_full"][key]) * sign
    out: dict[str, Any] = {
        "dataset": cfg.get("dataset", name), "train_rows": n_train, "test_rows": n_test,
        "configurations": n_configs, "folds": folds, "scoring": result.scoring,
        "coreset": {"rows": len(coreset), "fraction": len(coreset) / n_train, "family": params.family,
                    "build_seconds": round(build_s, 2), "collect_seconds": round(collect_s, 2),
                    "search_seconds": round(search_s, 2), "total_seconds": round(coreset_s, 2),
                    "best": result.best.label(), "cv_score": result.best.score, "test": metrics["coreset"],
                    "trials": result.table()},
        "full": {"rows": n_train, "collect_seconds": round(full_collect_s, 2),
                 "search_seconds": round(full_search_s, 2), "total_seconds": round(full_s, 2),
                 "best": _describe(search.best_params_), "cv_score": float(search.best_score_),
                 "test": metrics["full"]},
        "speedup_with_build": round(full_s / coreset_s, 2),
        "speedup_without_build": round(full_s / (collect_s + search_s), 2),
        "test_gap_points": round(gap, 3),
        # The configuration chosen on the coreset, fitted on the full training data: does the choice
        # transfer? (the usual last step: tune on the coreset, train the final model on everything)
        "coreset_choice_on_full": {"fit_seconds": round(refit_s, 2), "test": metrics["coreset_choice_on_full"],
                                   "test_gap_points": round(choice_gap, 3),
                                   "speedup_with_build_and_fit": round(full_s / (coreset_s + refit_s), 2)},
    }
    log(f"[tuning] {name}: test {key} coreset {metrics['coreset'][key]:.4f} vs full {metrics['full'][key]:.4f} "
        f"(gap {gap:.3f} points); speed-up {out['speedup_with_build']}x with the build, "
        f"{out['speedup_without_build']}x without; the coreset's choice fitted on the full data: "
        f"{metrics['coreset_choice_on_full'][key]:.4f} (gap {choice_gap:.3f} points), speed-up with that fit "
        f"{out['coreset_choice_on_full']['speedup_with_build_and_fit']}x")
    if cfg.get("mllib"):
        out["mllib"] = mllib_comparison(spark, train, test, tree, coreset, cfg["mllib"], build_s, log)
    if cfg.get("distributed"):
        out["distributed"] = distributed_check(coreset, cfg, result, work_dir / name, log)
    train.unpersist()
    test.unpersist()
    return out


def distributed_check(coreset: Any, cfg: Mapping[str, Any], local: Any, work_dir: Path, log: Log) -> dict[str, Any]:
    """Run the same search as Spark tasks on a 2-executor local-cluster (another process)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    data = work_dir / "coreset.npz"
    np.savez(data, x=coreset.x, y=coreset.y, weight=coreset.weight)
    spec = {"candidates": cfg["candidates"], "scoring": local.scoring, "cv": local.cv,
            "seed": int(cfg.get("seed", 0)), "master": cfg["distributed"].get("master", "local-cluster[2,1,1024]")}
    (work_dir / "search.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    log(f"[tuning] distributed search on {spec['master']} ...")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "coreset_spark.tuning_benchmark", str(work_dir)], env=env,
                          capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"the distributed search failed:\n{done.stderr[-3000:]}")
    remote = json.loads(done.stdout.strip().splitlines()[-1])
    same = remote["best"] == local.best.label()
    local_scores = [t.score for t in local.trials]
    out = {"master": spec["master"], "best": remote["best"], "local_best": local.best.label(), "same_best": same,
           "max_score_difference": float(np.nanmax(np.abs(np.asarray(remote["scores"]) - np.asarray(local_scores)))),
           "seconds": round(seconds, 2), "executors": remote["executors"]}
    log(f"[tuning] distributed best {remote['best']} (same as local: {same}) on {remote['executors']} executors")
    return out


def _distributed_main(work_dir: str) -> None:
    """Entry point of the local-cluster process (``python -m coreset_spark.tuning_benchmark DIR``)."""
    from coreset_spark.config import SparkSettings
    from coreset_spark.spark.session import get_spark

    spec = json.loads((Path(work_dir) / "search.json").read_text())
    data = np.load(Path(work_dir) / "coreset.npz")
    spark = get_spark(SparkSettings(master=spec["master"], app_name="coreset_spark-distributed-search", delta="builtin",
                                    conf={"spark.ui.enabled": "false", "spark.executor.memory": "1g"}))
    spark.sparkContext.setLogLevel("ERROR")
    result = tune(candidates_from_config(spec["candidates"]), (data["x"], data["y"], data["weight"]),
                  scoring=spec["scoring"], cv=spec["cv"], seed=spec["seed"], backend="spark", spark=spark, refit=False)
    executors = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1  # noqa: SLF001 - the driver is one
    print(json.dumps({"best": result.best.label(), "scores": [t.score for t in result.trials],
                      "executors": int(executors)}))
    spark.stop()


def run_tuning_benchmark(spark: SparkSession, config: Mapping[str, Any], out_dir: Path, log: Log = print) -> dict[str, Any]:
    """Every configured dataset; writes ``benchmark_tuning.json`` and ``.md`` to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    defaults = dict(config.get("defaults") or {})
    work = Path(config.get("work_dir") or tempfile.mkdtemp(prefix="coreset_tuning_"))
    report: dict[str, Any] = {"datasets": {}}
    for name, entry in dict(config.get("datasets") or {}).items():
        report["datasets"][name] = one_dataset(spark, name, {**defaults, **dict(entry)}, log, work)
        (out_dir / "benchmark_tuning.json").write_text(json.dumps(report, indent=1, default=str))
    (out_dir / "benchmark_tuning.md").write_text(markdown(report))
    write_html(report, out_dir)
    log(markdown(report))
    return report


def write_html(report: Mapping[str, Any], out_dir: Path) -> Path:
    """``benchmark_tuning.html``: the tables and, per dataset, seconds per stage of each path."""
    from coreset_spark.report import html_report, plot_stages

    figures = []
    for name, r in report["datasets"].items():
        seconds = {"(a) coreset: build": r["coreset"]["build_seconds"], "(a) coreset: collect": r["coreset"]["collect_seconds"],
                   "(a) coreset: search + refit": r["coreset"]["search_seconds"],
                   "(b) full: collect": r["full"]["collect_seconds"], "(b) full: search + refit": r["full"]["search_seconds"]}
        if "mllib" in r:
            seconds["MLlib CrossValidator (8 configs)"] = r["mllib"]["mllib"]["seconds"]
            seconds["coreset path (same 8 configs, with build)"] = r["mllib"]["coreset"]["seconds"]
        figures.append((f"{name}: seconds per stage", plot_stages(seconds, out_dir / f"tuning_{name}_seconds.png",
                                                                   f"{name}: seconds per stage")))
    tables = [(f"{name}: trials on the coreset (best first)", [
        {"configuration": f"{t['candidate']} {t['params']}", "cv score": t["cv_score"], "cv std": t["cv_std"],
         "fit s": t["fit_seconds"]} for t in r["coreset"]["trials"][:10]]) for name, r in report["datasets"].items()]
    page = html_report("Tuning benchmark", figures, tables, out_dir / "benchmark_tuning.html",
                       intro="(a) the search on a coreset, build included; (b) the same grid on the full training data "
                             "with scikit-learn on one machine; MLlib's CrossValidator over the full data.")
    summary = html.escape(markdown(report))
    page.write_text(page.read_text().replace("<body>", f"<body><pre>{summary}</pre>", 1))
    return page


def markdown(report: Mapping[str, Any]) -> str:
    """The report's tables."""
    lines = ["# Tuning benchmark", "",
             "| dataset | configs x folds | coreset rows (%) | (a) coreset s (build) | (b) full s | speed-up with / "
             "without build | best on coreset | best on full | test metric coreset / full | gap (points) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in report["datasets"].items():
        c, f = r["coreset"], r["full"]
        key = HOLDOUT_METRIC[r["scoring"]][0]
        lines.append(f"| {name} | {r['configurations']} x {r['folds']} | {c['rows']} ({100 * c['fraction']:.2f}%) | "
                     f"{c['total_seconds']} ({c['build_seconds']}) | {f['total_seconds']} | "
                     f"{r['speedup_with_build']} / {r['speedup_without_build']} | {c['best']} | {f['best']} | "
                     f"{key} {c['test'][key]:.4f} / {f['test'][key]:.4f} | {r['test_gap_points']} |")
    lines += ["", "| dataset | coreset's choice fitted on the full data: fit s | test metric (full's choice) | "
                  "gap (points) | speed-up, build + search + that fit |", "|---|---|---|---|---|"]
    for name, r in report["datasets"].items():
        key = HOLDOUT_METRIC[r["scoring"]][0]
        c = r.get("coreset_choice_on_full")
        if c:
            lines.append(f"| {name} | {c['fit_seconds']} | {key} {c['test'][key]:.4f} ({r['full']['test'][key]:.4f}) | "
                         f"{c['test_gap_points']} | {c['speedup_with_build_and_fit']} |")
    mllib = {k: r["mllib"] for k, r in report["datasets"].items() if "mllib" in r}
    if mllib:
        lines += ["", "| dataset | MLlib CrossValidator s | coreset s (build + search) | speed-up | test ROC AUC "
                      "MLlib / coreset | gap (points) |", "|---|---|---|---|---|---|"]
        for name, m in mllib.items():
            lines.append(f"| {name} | {m['mllib']['seconds']} | {m['coreset']['seconds']} "
                         f"({m['coreset']['build_seconds']} + {m['coreset']['search_seconds']}) | {m['speedup']} | "
                         f"{m['mllib']['test_roc_auc']:.4f} / {m['coreset']['test_roc_auc']:.4f} | "
                         f"{m['auc_gap_points']} |")
    dist = {k: r["distributed"] for k, r in report["datasets"].items() if "distributed" in r}
    if dist:
        lines += ["", "| dataset | cluster | best (distributed) | same as local | largest score difference |",
                  "|---|---|---|---|---|"]
        for name, d in dist.items():
            lines.append(f"| {name} | {d['master']} ({d['executors']} executors) | {d['best']} | {d['same_best']} | "
                         f"{d['max_score_difference']:.2e} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    _distributed_main(sys.argv[1])
