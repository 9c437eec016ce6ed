"""The logistic-regression benchmark: quality against the published numbers, partition
invariance, multiclass accuracy, and build time against a plain Spark pass, in one run.

Run with ``python jobs/benchmark_logistic.py --config conf/benchmark_logistic.yaml``; it prints the
figures and writes ``benchmark_logistic.json`` and ``benchmark_logistic.md`` to the output folder.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import SparkSession
from sklearn.linear_model import LogisticRegression

from coreset_spark import datasets
from coreset_spark.config import CoresetParams, DataSpec
from coreset_spark.driver import fit_weighted
from coreset_spark.job import split_train_test
from coreset_spark.spark.build import build_tree
from coreset_spark.spark.evaluate import collect_encoded, evaluate_many
from coreset_spark.spark.frame import column, prepare, with_row_ids


def _logloss_sum(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    proba = np.clip(model.predict_proba(x)[np.arange(len(y)), y], 1e-15, 1.0)
    return float(-np.log(proba).sum())


def _unregularised(max_iter: int, tol: float) -> LogisticRegression:
    return LogisticRegression(C=np.inf, max_iter=max_iter, tol=tol)


def loss_ratios(spark: SparkSession, cfg: Mapping[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """KDD Cup 99 binary: median loss ratio over seeds, coreset (1 and 64 partitions) vs uniform."""
    df, spec = datasets.load(spark, "kddcup99")
    df = with_row_ids(df, "rid")
    spec = DataSpec(target=spec.target, row_id="rid")
    data = df.repartition(int(cfg.get("partitions", 64))).persist(StorageLevel.MEMORY_AND_DISK)
    one = df.repartition(1).persist(StorageLevel.MEMORY_AND_DISK)
    n = data.count()
    one.count()
    probe = build_tree(data, spec, CoresetParams(size=1000, family="uniform", seed=0))
    x, y, _ = collect_encoded(data, probe)
    estimator = _unregularised(int(cfg.get("max_iter", 5000)), float(cfg.get("tol", 1e-8)))
    start = time.perf_counter()
    full, warn = fit_weighted(estimator, x, y, None)
    full_seconds = time.perf_counter() - start
    optimum = _logloss_sum(full, x, y)
    log(f"[bench] KDD binary: {n} rows, {x.shape[1]} features; full fit {full_seconds:.1f} s, "
        f"loss {optimum:.2f} {warn or ''}")
    results: dict[str, Any] = {"rows": n, "features": int(x.shape[1]), "full_fit_seconds": round(full_seconds, 2),
                               "full_loss": optimum, "full_convergence_warnings": warn, "sizes": {}}
    for size in cfg.get("sizes", [2000, 16000]):
        runs: dict[str, list[float]] = {"coreset_64_partitions": [], "coreset_1_partition": [], "uniform": []}
        rows: dict[str, list[int]] = {k: [] for k in runs}
        identical = []
        for seed in range(int(cfg.get("first_seed", 0)), int(cfg.get("first_seed", 0)) + int(cfg.get("seeds", 5))):
            params = CoresetParams(size=int(size), seed=seed, **dict(cfg.get("params") or {}))
            variants = [("coreset_64_partitions", data, params), ("coreset_1_partition", one, params),
                        ("uniform", data, replace(params, family="uniform"))]
            if not cfg.get("compare_one_partition", True):
                variants = [v for v in variants if v[0] != "coreset_1_partition"]
            for name, frame, p in variants:
                tree = build_tree(frame, spec, p)
                c = tree.get_coreset(0)
                model, _ = fit_weighted(estimator, c.x, c.y, c.weight)
                runs[name].append(_logloss_sum(model, x, y) / optimum)
                rows[name].append(len(c))
                if name == "coreset_64_partitions":
                    ids = c.row_id
                elif name == "coreset_1_partition":
                    identical.append(bool(np.array_equal(ids, c.row_id)))
                for level_frame in tree.levels.values():
                    level_frame.unpersist()
            log(f"[bench] m={size} seed={seed}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in runs.items() if v))
        results["sizes"][str(size)] = {
            name: {"median_loss_ratio": statistics.median(v), "loss_ratios": v, "median_rows": statistics.median(rows[name])}
            for name, v in runs.items() if v}
        results["sizes"][str(size)]["same_rows_1_vs_64_partitions"] = identical
    data.unpersist()
    one.unpersist()
    return results


def multiclass_accuracy(spark: SparkSession, cfg: Mapping[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """KDD 23 classes with one-hot categoricals: test accuracy of a 5,000-row coreset vs the full data."""
    df, spec = datasets.load(spark, "kddcup99_multiclass")
    df = with_row_ids(df, "rid")
    spec = replace(spec, row_id="rid")
    train, test = split_train_test(df, 0.3, 42)
    train = train.repartition(16).persist(StorageLevel.MEMORY_AND_DISK)
    test = test.persist(StorageLevel.MEMORY_AND_DISK)
    train.count()
    estimator = LogisticRegression(C=float(cfg.get("C", 1.0)), max_iter=int(cfg.get("max_iter", 1000)))
    out: dict[str, Any] = {"runs": []}
    full_model = None
    for seed in range(int(cfg.get("seeds", 3))):
        tree = build_tree(train, spec, CoresetParams(size=int(cfg.get("size", 5000)), seed=seed))
        c = tree.get_coreset(0)
        models = {"coreset": fit_weighted(estimator, c.x, c.y, c.weight)[0]}
        uni = build_tree(train, spec, CoresetParams(size=len(c), seed=seed, family="uniform")).get_coreset(0)
        models["uniform"] = fit_weighted(estimator, uni.x, uni.y, uni.weight)[0]
        if full_model is None:
            x_full, y_full, _ = collect_encoded(train, tree)
            start = time.perf_counter()
            full_model, warn = fit_weighted(estimator, x_full, y_full, None)
            out["full_fit_seconds"] = round(time.perf_counter() - start, 2)
            out["full_convergence_warnings"] = warn
            out["train_rows"], out["classes"], out["features"] = len(y_full), len(tree.classes), tree.encoder.width
        models["full"] = full_model
        metrics = evaluate_many(models, test, tree)
        run = {"seed": seed, "coreset_rows": len(c), "uniform_rows": len(uni),
               **{f"{k}_accuracy": v["accuracy"] for k, v in metrics.items()},
               **{f"{k}_balanced_accuracy": v["balanced_accuracy"] for k, v in metrics.items()}}
        out["runs"].append(run)
        log(f"[bench] multiclass seed={seed}: coreset {run['coreset_accuracy']:.4f} ({len(c)} rows), "
            f"uniform {run['uniform_accuracy']:.4f}, full {run['full_accuracy']:.4f}")
    out["median_gap_points"] = statistics.median(100 * (r["full_accuracy"] - r["coreset_accuracy"]) for r in out["runs"])
    train.unpersist()
    test.unpersist()
    return out


def build_time(spark: SparkSession, cfg: Mapping[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """Flights (3M rows): coreset build time over a plain mapInArrow pass of the same encoded columns."""
    df, spec = datasets.load(spark, "flights")
    df = df.repartition(int(cfg.get("partitions", 16))).persist(StorageLevel.MEMORY_AND_DISK)
    n = df.count()
    params = CoresetParams(size=int(cfg.get("size", 2000)), seed=0)
    probe = build_tree(df, spec, replace(params, family="uniform"))
    encoder, names = probe.encoder.with_safe_names()
    frame = prepare(df, spec).frame.select(*[column(c).alias(f"_c{i}") for i, c in enumerate(names)])

    def plain_pass() -> None:
        def encode(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            for batch in batches:
                encoder.transform(batch)
            return iter(())

        frame.mapInArrow(encode, "x double").write.format("noop").mode("overwrite").save()

    timings: dict[str, list[float]] = {"plain_pass": [], "build": []}
    stages = []
    for _ in range(int(cfg.get("repeats", 3))):
        start = time.perf_counter()
        plain_pass()
        timings["plain_pass"].append(time.perf_counter() - start)
        start = time.perf_counter()
        tree = build_tree(df, spec, params)
        timings["build"].append(time.perf_counter() - start)
        stages.append(tree.timings)
        for level_frame in tree.levels.values():
            level_frame.unpersist()
        log(f"[bench] flights: plain pass {timings['plain_pass'][-1]:.1f} s, build {timings['build'][-1]:.1f} s")
    df.unpersist()
    plain, build = statistics.median(timings["plain_pass"]), statistics.median(timings["build"])
    return {"rows": n, "features": list(probe.encoder.feature_names), "partitions": int(cfg.get("partitions", 16)),
            "master": spark.sparkContext.master, "seconds": timings, "median_plain_pass_s": plain,
            "median_build_s": build, "ratio": build / plain, "build_stages_s": stages}


def run_benchmark(spark: SparkSession, config: Mapping[str, Any], out_dir: Path,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the parts named in ``config`` and write the JSON and markdown reports."""
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if config.get("loss_ratio", {}).get("enabled", True):
        report["loss_ratio"] = loss_ratios(spark, config.get("loss_ratio", {}), log)
    if config.get("multiclass", {}).get("enabled", True):
        report["multiclass"] = multiclass_accuracy(spark, config.get("multiclass", {}), log)
    if config.get("build_time", {}).get("enabled", True):
        report["build_time"] = build_time(spark, config.get("build_time", {}), log)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "benchmark_logistic.json").write_text(json.dumps(report, indent=2, default=str))
    text = markdown(report)
    (out_dir / "benchmark_logistic.md").write_text(text)
    log(text)
    return report


def markdown(report: Mapping[str, Any]) -> str:
    """The benchmark's figures as markdown tables."""
    lines = [f"# Logistic regression benchmark ({report['date']})", ""]
    if "loss_ratio" in report:
        lr = report["loss_ratio"]
        lines += [f"KDD Cup 99 10%, binary, {lr['rows']} rows, {lr['features']} standardised features + intercept, "
                  "unregularised. Loss ratio = full-data log loss of the model fitted on the reduced data / "
                  f"that of the full-data model (full fit {lr['full_fit_seconds']} s). Median over seeds.", "",
                  "| m | coreset, 64 partitions | coreset, 1 partition | uniform | same rows 1 vs 64 | "
                  "published sqrt-lev. | published uniform |", "|---|---|---|---|---|---|---|"]
        published = {"2000": ("2.14", "329.0"), "16000": ("1.020", "3.28")}
        for size, r in lr["sizes"].items():
            pub = published.get(size, ("-", "-"))
            one = r.get("coreset_1_partition", {}).get("median_loss_ratio", float("nan"))
            lines.append(f"| {size} | {r['coreset_64_partitions']['median_loss_ratio']:.3f} "
                         f"({r['coreset_64_partitions']['median_rows']:.0f} rows) | "
                         f"{one:.3f} | {r['uniform']['median_loss_ratio']:.3f} | "
                         f"{all(r['same_rows_1_vs_64_partitions'])} | {pub[0]} | {pub[1]} |")
        lines.append("")
    if "multiclass" in report:
        mc = report["multiclass"]
        lines += [f"KDD Cup 99 multiclass ({mc['classes']} classes, {mc['features']} features with one-hot "
                  f"categoricals), {mc['train_rows']} training rows, 30% held out; full fit {mc['full_fit_seconds']} s.", "",
                  "| seed | coreset rows | coreset acc. | uniform acc. | full acc. | coreset bal. acc. | full bal. acc. |",
                  "|---|---|---|---|---|---|---|"]
        for r in mc["runs"]:
            lines.append(f"| {r['seed']} | {r['coreset_rows']} | {r['coreset_accuracy']:.4f} "
                         f"| {r['uniform_accuracy']:.4f} | {r['full_accuracy']:.4f} "
                         f"| {r['coreset_balanced_accuracy']:.4f} | {r['full_balanced_accuracy']:.4f} |")
        lines += ["", f"Median accuracy gap (full - coreset): {mc['median_gap_points']:.3f} points.", ""]
    if "build_time" in report:
        bt = report["build_time"]
        lines += [f"Build time, flights ({bt['rows']} rows, features {bt['features']}, {bt['partitions']} cached "
                  f"partitions, master {bt['master']}): median build {bt['median_build_s']:.1f} s vs a plain "
                  f"mapInArrow pass over the same encoded columns {bt['median_plain_pass_s']:.1f} s: "
                  f"**ratio {bt['ratio']:.2f}**.", "",
                  "Stages of the last build (s): " + ", ".join(f"{k} {v}" for k, v in bt["build_stages_s"][-1].items()), ""]
    return "\n".join(lines) + "\n"
