"""Evaluate a fitted classifier on a full table in Spark: the model goes to the executors,
only additive sums come back (never the rows).

>>> # evaluate(model, test_df, tree)   # {'accuracy': 0.998, 'log_loss': 0.006, 'roc_auc': 0.9995, ...}
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from coreset_spark.encoding import Encoder
from coreset_spark.metrics import MetricSums, RegressionSums, full_proba
from coreset_spark.spark.frame import column, prepare, with_classes


def encoded_frame(df: DataFrame, tree: Any) -> DataFrame:
    """``df`` reduced to ``_class`` (class index; -1 for a class not seen in training, null for a null
    target), ``_weight`` and the tree's feature columns renamed ``_c0, _c1, ...`` (see
    ``Encoder.with_safe_names``). Other columns of ``df`` are ignored."""
    encoder: Encoder = tree.encoder
    spec = replace(tree.spec, features=tuple(encoder.input_columns), categorical=tuple(encoder.categorical),
                   row_id=None, drop_null_target=True)
    frame = with_classes(prepare(df, spec), tree.classes)
    return frame.select("_class", "_weight", *[column(c).alias(f"_c{i}") for i, c in enumerate(encoder.input_columns)])


def collect_encoded(df: DataFrame, tree: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All labelled rows of ``df``, encoded like the coreset, on the driver: (x, class index, weight).

    For baselines on data that fit in memory; rows with a null target are left out.
    """
    table = encoded_frame(df, tree).where(F.col("_class").isNotNull()).toArrow()
    encoder, _ = tree.encoder.with_safe_names()
    y = np.asarray(table.column("_class").to_numpy(zero_copy_only=False), dtype=np.int64)
    return encoder.transform(table), y, np.asarray(table.column("_weight").to_numpy(zero_copy_only=False))


def regression_frame(df: DataFrame, tree: Any) -> DataFrame:
    """``df`` reduced to ``_target`` (the numeric target; rows where it is null or NaN are left out),
    ``_weight`` and the tree's feature columns as ``_c0, _c1, ...`` (for regression and clustering
    trees; clustering gets ``_target = 0``)."""
    encoder: Encoder = tree.encoder
    target = tree.spec.target if tree.task == "regression" else None
    spec = replace(tree.spec, target=target, features=tuple(encoder.input_columns),
                   categorical=tuple(encoder.categorical), row_id=None, drop_null_target=True)
    frame = prepare(df, spec).frame
    if target is not None:
        value = column(target).cast("double")
        frame = frame.where(value.isNotNull() & ~F.isnan(value)).withColumn("_target", value)
    else:
        frame = frame.withColumn("_target", F.lit(0.0))
    return frame.select("_target", "_weight", *[column(c).alias(f"_c{i}") for i, c in enumerate(encoder.input_columns)])


def collect_rows(df: DataFrame, tree: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All usable rows of ``df`` encoded like the coreset, on the driver: (x, target, weight).

    The target is the class index for classification (a label unseen in training is -1), the
    numeric value for regression and zeros for clustering; rows with a null (or, for regression,
    NaN) target are left out. For baselines and benchmarks on data that fit in memory.
    """
    if tree.task == "classification":
        return collect_encoded(df, tree)
    table = regression_frame(df, tree).toArrow()
    safe, _ = tree.encoder.with_safe_names()
    t = np.asarray(table.column("_target").to_numpy(zero_copy_only=False), dtype=np.float64)
    return safe.transform(table), t, np.asarray(table.column("_weight").to_numpy(zero_copy_only=False))


def evaluate_many(models: dict[str, Any], df: DataFrame, tree: Any) -> dict[str, dict[str, Any]]:
    """Metrics of several models in one pass over ``df``, computed in Spark: each model travels to
    the executors, each task returns additive sums, the driver adds them up (never the rows).

    Classifiers: accuracy, balanced accuracy, log loss, ROC AUC, precision, recall, F1 (binary:
    of the second class; macro), the confusion matrix (rows true, columns predicted, in the order
    of ``tree.classes``). Regressors: RMSE, MAE, R^2. ``tree`` supplies the data specification,
    encoder and classes (a :class:`CoresetTree`).
    """
    if tree.task == "regression":
        return _evaluate_regression(models, df, tree)
    encoder, _ = tree.encoder.with_safe_names()  # encoded_frame carries the safe column names
    k = len(tree.classes)
    names = list(models)

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        sums = {name: MetricSums.zeros(k) for name in names}
        null_rows = [0.0]
        seen = False
        for batch in batches:
            if not batch.num_rows:
                continue
            seen = True
            labelled = pc.is_valid(batch.column("_class"))  # rows with a null target are not scored
            null_rows[0] += float(pc.sum(pc.if_else(labelled, 0.0, batch.column("_weight"))).as_py() or 0.0)
            batch = batch.filter(labelled)
            x = encoder.transform(batch)
            y = batch.column("_class").to_numpy(zero_copy_only=False)
            w = batch.column("_weight").to_numpy(zero_copy_only=False)
            for name in names:
                sums[name] = sums[name] + MetricSums.of(full_proba(models[name], x, k), y, w)
        if seen:
            yield pa.RecordBatch.from_arrays(
                [pa.array(names), pa.array([sums[n].to_vector() for n in names], pa.list_(pa.float64())),
                 pa.array([null_rows[0]] * len(names), pa.float64())],
                ["model", "sums", "null_target"])

    schema = "model string, sums array<double>, null_target double"
    parts = encoded_frame(df, tree).mapInArrow(score, schema).toArrow()
    totals = {name: MetricSums.zeros(k) for name in names}
    null_target = {name: 0.0 for name in names}
    for name, vector, nulls in zip(parts.column("model").to_pylist(), parts.column("sums").to_pylist(),
                                   parts.column("null_target").to_pylist()):
        totals[name] = totals[name] + MetricSums.from_vector(np.asarray(vector), k)
        null_target[name] += nulls
    return {name: {**totals[name].report(), "null_target_rows": null_target[name],
                   "confusion_matrix": totals[name].confusion.tolist()} for name in names}


def _evaluate_regression(models: dict[str, Any], df: DataFrame, tree: Any) -> dict[str, dict[str, Any]]:
    encoder, _ = tree.encoder.with_safe_names()
    names = list(models)

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        sums = {name: RegressionSums() for name in names}
        seen = False
        for batch in batches:
            if not batch.num_rows:
                continue
            seen = True
            x = encoder.transform(batch)
            y = batch.column("_target").to_numpy(zero_copy_only=False)
            w = batch.column("_weight").to_numpy(zero_copy_only=False)
            for name in names:
                sums[name] = sums[name] + RegressionSums.of(models[name].predict(x), y, w)
        if seen:
            yield pa.RecordBatch.from_arrays(
                [pa.array(names), pa.array([sums[n].to_vector() for n in names], pa.list_(pa.float64()))],
                ["model", "sums"])

    parts = regression_frame(df, tree).mapInArrow(score, "model string, sums array<double>").toArrow()
    totals = {name: RegressionSums() for name in names}
    for name, vector in zip(parts.column("model").to_pylist(), parts.column("sums").to_pylist()):
        totals[name] = totals[name] + RegressionSums.from_vector(np.asarray(vector))
    return {name: totals[name].report() for name in names}


# scoring name -> the Spark-side metric it matches and its sign (scikit-learn: higher is better)
HOLDOUT_METRIC = {"accuracy": ("accuracy", 1), "balanced_accuracy": ("balanced_accuracy", 1),
                  "neg_log_loss": ("log_loss", -1), "roc_auc": ("roc_auc", 1), "r2": ("r2", 1),
                  "neg_root_mean_squared_error": ("rmse", -1)}


def validate_finalists(result: Any, df: DataFrame, tree: Any, top: int = 3, level: int | None = None,
                       coreset: Any = None) -> list[dict[str, Any]]:
    """Re-score a search's ``top`` configurations on a held-out part of the full data, in Spark.

    Each finalist is refitted on the whole coreset the search ran on (``coreset``, or
    ``tree.get_coreset(level)``) and evaluated with :func:`evaluate_many` on ``df``; the rows come
    back as the finalist, its coreset cross-validation score and its hold-out metrics, with
    ``holdout_score`` on the search's scoring in the same convention (higher is better).
    """
    coreset = coreset if coreset is not None else tree.get_coreset(result.level if level is None else level)
    finalists = result.finalists(top)
    models = {f"{i}:{t.label()}": result.refit(t, coreset.x, coreset.y, coreset.weight) for i, t in enumerate(finalists)}
    metrics = evaluate_many(models, df, tree)
    key = result.scoring if result.scoring != "f1" else ("f1" if len(tree.classes) == 2 else "f1_macro")
    metric, sign = HOLDOUT_METRIC.get(key, (key, 1))
    rows: list[dict[str, Any]] = []
    for (name, model), trial in zip(models.items(), finalists):
        m = metrics[name]
        rows.append({"rank": len(rows) + 1, "candidate": trial.candidate, "params": trial.params,
                     "cv_score": trial.score, "cv_std": trial.std, "holdout_score": sign * m[metric],
                     "holdout": m, "model": model})
    return rows
