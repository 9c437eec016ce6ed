"""The main job: build a coreset of a table's training part, train and tune on it, and compare it
honestly with a uniform sample of the same size and with the full training data.

Configured by a YAML file (see ``conf/demo.yaml``); ``run_main_job(config)`` returns the report
it also writes as ``report.json`` and ``report.md``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from sklearn.linear_model import LogisticRegression

from coreset_spark.config import ConfigError, CoresetParams, DataSpec, SparkSettings, from_mapping, load_yaml
from coreset_spark.coreset import CoresetTree
from coreset_spark.driver import fit_weighted, grid_search
from coreset_spark.spark.build import Stages, build_tree
from coreset_spark.spark.evaluate import collect_encoded, evaluate_many
from coreset_spark.spark.frame import column, with_row_ids
from coreset_spark.spark.session import get_spark
from coreset_spark.spark.source import read_source

SECTIONS = ("spark", "input", "data", "split", "coreset", "model", "output")


def spark_settings(section: Mapping[str, Any] | None, defaults_file: str = "conf/spark.yaml") -> SparkSettings:
    """Spark settings: ``conf/spark.yaml`` (when present) overlaid by the job's ``spark`` section."""
    base: dict[str, Any] = load_yaml(defaults_file) if Path(defaults_file).exists() else {}
    section = dict(section or {})
    merged = {**base, **section, "conf": {**dict(base.get("conf") or {}), **dict(section.get("conf") or {})}}
    return from_mapping(SparkSettings, merged, "spark")


def split_train_test(df: DataFrame, test_fraction: float, seed: int) -> tuple[DataFrame, DataFrame]:
    """A deterministic split by a hash of each row's values (independent of partitioning)."""
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"split.test_fraction={test_fraction!r} must be between 0 and 1, e.g. 0.3")
    bucket = F.pmod(F.xxhash64(*[column(c) for c in df.columns], F.lit(seed)), F.lit(10_000))
    # Identical rows share a bucket; give the table a unique row id (with_row_ids) for an exact split.
    is_test = bucket < F.lit(int(round(test_fraction * 10_000)))
    return df.where(~is_test), df.where(is_test)


def collect_training_data(df: DataFrame, tree: CoresetTree, max_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The full training data, encoded, on the driver (for the full-data baseline only)."""
    n = tree.stats.n_rows
    if n > max_rows:
        raise ConfigError(f"the full-data baseline needs {n} rows on the driver, more than "
                          f"output.max_full_rows={max_rows}; raise it or set model.full_baseline: false")
    return collect_encoded(df, tree)


def estimator(model: Mapping[str, Any]) -> LogisticRegression:
    """The logistic regression of the config (lbfgs, run to convergence)."""
    penalty = model.get("penalty", "l2")
    if penalty not in (None, "none", "l2"):
        raise ConfigError(f"model.penalty={penalty!r} is not supported by the main job; use l2 or none")
    c_value = np.inf if penalty in (None, "none") else float(model.get("C", 1.0))
    return LogisticRegression(C=c_value, solver=model.get("solver", "lbfgs"),
                              max_iter=int(model.get("max_iter", 2000)), tol=float(model.get("tol", 1e-6)))


def run_main_job(config: Mapping[str, Any], spark: SparkSession | None = None,
                 progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the main job described by ``config`` (a parsed YAML mapping)."""
    unknown = sorted(set(config) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown section(s) {unknown} in the job config; known sections: {list(SECTIONS)}")
    settings = spark_settings(config.get("spark"))
    params: CoresetParams = from_mapping(CoresetParams, config.get("coreset"), "coreset")
    model_cfg = dict(config.get("model") or {})
    split_cfg = dict(config.get("split") or {})
    out_cfg = dict(config.get("output") or {})
    out_dir = Path(out_cfg.get("path", "output/main"))
    stages = Stages(progress)
    started = time.perf_counter()

    spark = spark or stages.run("start Spark", lambda: get_spark(settings))
    df, default_spec, lineage = read_source(spark, config.get("input") or {"dataset": "kddcup99"})
    spec_values = dict(default_spec.__dict__) if default_spec else {}
    spec_values.update(config.get("data") or {})
    if "target" not in spec_values:
        raise ConfigError("data.target is missing: name the label column in the data section")
    if not spec_values.get("row_id"):
        # Unique ids from the data, so duplicate rows are distinct rows and the split is exactly 70/30.
        df = with_row_ids(df, "_row_id_")
        spec_values["row_id"] = "_row_id_"
    spec: DataSpec = from_mapping(DataSpec, spec_values, "data")
    partitions = int(config.get("input", {}).get("partitions", 0) or spark.sparkContext.defaultParallelism * 2) \
        if hasattr(spark, "sparkContext") else 4
    train, test = split_train_test(df, float(split_cfg.get("test_fraction", 0.3)), int(split_cfg.get("seed", 42)))
    train = train.repartition(partitions).persist(StorageLevel.MEMORY_AND_DISK)
    test = test.persist(StorageLevel.MEMORY_AND_DISK)
    n_train, n_test = stages.run("read and split", lambda: (train.count(), test.count()))
    progress(f"[job] read {lineage}: {n_train} training rows, {n_test} test rows, {partitions} partitions")

    tree = stages.run("build coreset", lambda: build_tree(train, spec, params, progress, lineage))
    coreset = tree.get_coreset(0)
    progress(f"[job] coreset levels (level: rows) {tree.level_sizes()}; root {len(coreset)} rows, "
             f"weights sum to {coreset.weight.sum():.1f} (training rows: {tree.stats.weight_total:.0f})")
    coreset_path = str(out_dir / "coreset")
    stages.run("save coreset (Delta)", lambda: tree.save(coreset_path))

    uniform_params = replace(params, family="uniform", size=max(len(coreset), 1))
    uniform_tree = stages.run("build uniform sample", lambda: build_tree(train, spec, uniform_params, None, lineage))
    uniform = uniform_tree.get_coreset(0)

    base = estimator(model_cfg)
    models: dict[str, Any] = {}
    warnings_seen: dict[str, list[str]] = {}
    fit_seconds: dict[str, float] = {}

    def timed_fit(name: str, x: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> None:
        start = time.perf_counter()
        models[name], warnings_seen[name] = fit_weighted(base, x, y, w)
        fit_seconds[name] = round(time.perf_counter() - start, 3)
        progress(f"[job] fit {name} on {len(y)} rows in {fit_seconds[name]:.2f} s")

    timed_fit("coreset", coreset.x, coreset.y, coreset.weight)
    timed_fit("uniform", uniform.x, uniform.y, uniform.weight)
    if model_cfg.get("full_baseline", True):
        x_full, y_full, w_full = stages.run("collect full training data", lambda: collect_training_data(
            train, tree, int(out_cfg.get("max_full_rows", 5_000_000))))
        timed_fit("full", x_full, y_full, w_full)
        del x_full, y_full, w_full

    grid = dict(model_cfg.get("grid") or {"C": [0.01, 0.1, 1.0, 10.0, 100.0]})
    tuned_base = estimator({**model_cfg, "penalty": "l2"})
    search = stages.run("grid search on coreset", lambda: grid_search(
        tuned_base, grid, coreset.x, coreset.y, coreset.weight, scoring=model_cfg.get("scoring", "neg_log_loss"),
        cv=int(model_cfg.get("cv_folds", 3)), seed=params.seed))
    models["coreset_tuned"] = search.best_estimator_

    # The larger levels of both trees too, for the metric-against-size picture (same test pass).
    by_level = level_models(base, tree, uniform_tree, int(out_cfg.get("max_level_rows", 200_000)))
    all_test = stages.run("evaluate on test (Spark)", lambda: evaluate_many({**models, **by_level}, test, tree))
    test_metrics = {name: all_test[name] for name in models}
    train_metrics = stages.run("training loss on full data (Spark)", lambda: evaluate_many(models, train, tree))
    reference = train_metrics.get("full", {}).get("log_loss_sum")
    report = {
        "input": lineage, "rows": {"train": n_train, "test": n_test}, "classes": [str(c) for c in tree.classes],
        "features": len(tree.encoder.feature_names), "coreset": {
            "path": coreset_path, "root_rows": len(coreset), "level_sizes": tree.level_sizes(),
            "weight_sum": float(coreset.weight.sum()), "family": params.family, "seed": params.seed,
            "params": params.__dict__, "build_stages_s": tree.timings},
        "uniform_rows": len(uniform),
        "models": {},
        "grid_search": {"grid": grid, "best_params": search.best_params_,
                        "cv_scores": [float(v) for v in search.cv_results_["mean_test_score"]]},
        "seconds": {**stages.seconds, **{f"fit {k}": v for k, v in fit_seconds.items()},
                    "total": round(time.perf_counter() - started, 3)},
        "notes": tree.notes,
    }
    for name in models:
        entry = {"test": test_metrics[name], "train_log_loss_sum": train_metrics[name]["log_loss_sum"],
                 "fit_seconds": fit_seconds.get(name), "convergence_warnings": warnings_seen.get(name, [])}
        if reference:
            entry["loss_ratio"] = train_metrics[name]["log_loss_sum"] / reference
        report["models"][name] = entry
    report["by_level"] = {name: {"rows": rows_of(name, tree, uniform_tree), "test": all_test[name]} for name in by_level}
    write_report(report, out_dir)
    write_pictures(report, tree, coreset, uniform, out_dir)
    progress(summary(report))
    train.unpersist()
    test.unpersist()
    return report


def level_models(base: Any, tree: CoresetTree, uniform_tree: CoresetTree, max_rows: int) -> dict[str, Any]:
    """The model fitted on every level of the coreset tree and of the uniform tree (up to ``max_rows``
    rows a level), named ``coreset@L`` and ``uniform@L``."""
    out: dict[str, Any] = {}
    for name, t in (("coreset", tree), ("uniform", uniform_tree)):
        for level, rows in t.level_sizes().items():
            if rows <= max_rows:
                c = t.get_coreset(level)
                out[f"{name}@{level}"] = fit_weighted(base, c.x, c.y, c.weight)[0]
    return out


def rows_of(name: str, tree: CoresetTree, uniform_tree: CoresetTree) -> int:
    """Rows of the level a ``coreset@L`` / ``uniform@L`` model was fitted on."""
    method, level = name.split("@")
    return (tree if method == "coreset" else uniform_tree).level_sizes()[int(level)]


def write_pictures(report: Mapping[str, Any], tree: CoresetTree, coreset: Any, uniform: Any, out_dir: Path) -> Path:
    """``report.html`` with PNGs: test log loss against coreset size (coreset, uniform, full data), the
    weights, rows per class in the data and the coreset, and time per stage."""
    from coreset_spark import report as pictures

    series: dict[str, list[tuple[float, float]]] = {"coreset": [], "uniform": []}
    for name, entry in report.get("by_level", {}).items():
        series[name.split("@")[0]].append((entry["rows"], entry["test"]["log_loss"]))
    full = report["models"].get("full", {}).get("test", {}).get("log_loss")
    figures = [
        ("Test log loss against coreset size", pictures.plot_metric_vs_size(
            series, full, "test log loss", out_dir / "metric_vs_size.png",
            "Test log loss by tree level: coreset vs uniform sample")),
        ("Weights of the root coreset and of the uniform sample", pictures.plot_weights(
            {"coreset": coreset.weight, "uniform": uniform.weight}, out_dir / "weights.png")),
    ]
    if tree.task == "classification":
        counts = np.bincount(coreset.y, minlength=len(tree.classes))
        weight = np.bincount(coreset.y, weights=coreset.weight, minlength=len(tree.classes))
        data = [float(tree.stats.target_counts.get(c, 0.0)) for c in tree.classes]
        figures.append(("Rows per class: data, coreset rows, coreset weight", pictures.plot_class_counts(
            tree.classes, data, counts, weight, out_dir / "class_counts.png")))
    stages = {k: v for k, v in report["seconds"].items() if k != "total"}
    figures.append(("Time per stage", pictures.plot_stages(stages, out_dir / "stages.png")))
    figures.append(("Time per stage of the coreset build", pictures.plot_stages(
        report["coreset"]["build_stages_s"], out_dir / "build_stages.png", "Coreset build: time per stage")))
    rows = {"coreset": report["coreset"]["root_rows"], "uniform": report["uniform_rows"],
            "full": report["rows"]["train"], "coreset_tuned": report["coreset"]["root_rows"]}
    table = [{"model": name, "rows": rows.get(name), "fit s": e.get("fit_seconds"), "accuracy": e["test"]["accuracy"],
              "log loss": e["test"]["log_loss"], "ROC AUC": e["test"]["roc_auc"], "loss ratio": e.get("loss_ratio")}
             for name, e in report["models"].items()]
    levels = [{"model": name, "rows": e["rows"], "accuracy": e["test"]["accuracy"], "log loss": e["test"]["log_loss"],
               "ROC AUC": e["test"]["roc_auc"]} for name, e in report.get("by_level", {}).items()]
    return pictures.html_report(
        "coreset_spark main job", figures, [("Models on the held-out test split", table), ("Every tree level", levels)],
        out_dir / "report.html",
        intro=f"Input {report['input']}: {report['rows']['train']} training rows, {report['rows']['test']} test rows. "
              "Loss ratio: full-training-data log loss of the model divided by the full-data model's.")


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def summary(report: Mapping[str, Any]) -> str:
    """A short table of the comparison."""
    lines = [f"rows: {report['rows']['train']} train / {report['rows']['test']} test; coreset "
             f"{report['coreset']['root_rows']} rows (levels {report['coreset']['level_sizes']}); "
             f"build {report['seconds'].get('build coreset', 0):.1f} s",
             f"{'model':<14}{'rows':>9}{'fit s':>9}{'accuracy':>10}{'log loss':>10}{'ROC AUC':>9}{'loss ratio':>12}"]
    rows = {"coreset": report["coreset"]["root_rows"], "uniform": report["uniform_rows"],
            "full": report["rows"]["train"], "coreset_tuned": report["coreset"]["root_rows"]}
    for name, entry in report["models"].items():
        t = entry["test"]
        lines.append(f"{name:<14}{rows.get(name, 0):>9}{_fmt(entry['fit_seconds'], 2):>9}{_fmt(t['accuracy']):>10}"
                     f"{_fmt(t['log_loss']):>10}{_fmt(t['roc_auc']):>9}{_fmt(entry.get('loss_ratio'), 3):>12}")
    return "\n".join(lines)


def write_report(report: Mapping[str, Any], out_dir: Path) -> None:
    """``report.json`` and a readable ``report.md`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    md = ["# coreset_spark main job report", "", f"Input: `{report['input']}`", "",
          "```", summary(report), "```", "",
          "Loss ratio: full-training-data log loss of the model fitted on the reduced data divided by that of "
          "the full-data model (1.0 is perfect). Test metrics on the held-out split, computed in Spark.", "",
          f"Grid search on the coreset (weighted fit and score, 3-fold): best {report['grid_search']['best_params']}", "",
          "## Stage times (s)", ""]
    md += [f"- {k}: {v}" for k, v in report["seconds"].items()]
    md += ["", "## Coreset build stages (s)", ""] + [f"- {k}: {v}" for k, v in report["coreset"]["build_stages_s"].items()]
    if report.get("notes"):
        md += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    (out_dir / "report.md").write_text("\n".join(md) + "\n")
