"""Evaluate a fitted classifier on a full table in Spark: the model goes to the executors,
only additive sums come back (never the rows).

>>> # evaluate(model, test_df, tree)   # {'accuracy': 0.998, 'log_loss': 0.006, 'roc_auc': 0.9995, ...}
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame

from coreset_spark.encoding import Encoder
from coreset_spark.metrics import MetricSums
from coreset_spark.spark.frame import prepare, with_classes


def full_proba(model: Any, x: np.ndarray, k: int) -> np.ndarray:
    """``predict_proba`` spread over all k classes (a model fitted on a subset may lack some)."""
    proba = np.zeros((x.shape[0], k))
    if x.shape[0]:
        proba[:, np.asarray(model.classes_, dtype=np.int64)] = model.predict_proba(x)
    return proba


def encoded_frame(df: DataFrame, tree: Any) -> DataFrame:
    """``df`` with the tree's bookkeeping columns and class indices (unseen classes are -1)."""
    prepared = prepare(df, tree.spec)
    frame = with_classes(prepared, tree.classes)
    return frame.select("_class", "_weight", *tree.encoder.input_columns)


def evaluate_many(models: dict[str, Any], df: DataFrame, tree: Any) -> dict[str, dict[str, float]]:
    """Metrics of several models in one pass over ``df``.

    ``tree`` supplies the data specification, encoder and classes (a :class:`CoresetTree`).
    """
    encoder: Encoder = tree.encoder
    k = len(tree.classes)
    names = list(models)

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        sums = {name: MetricSums.zeros(k) for name in names}
        seen = False
        for batch in batches:
            if not batch.num_rows:
                continue
            seen = True
            x = encoder.transform(batch)
            y = batch.column("_class").to_numpy(zero_copy_only=False)
            w = batch.column("_weight").to_numpy(zero_copy_only=False)
            for name in names:
                sums[name] = sums[name] + MetricSums.of(full_proba(models[name], x, k), y, w)
        if seen:
            yield pa.RecordBatch.from_arrays(
                [pa.array(names), pa.array([sums[n].to_vector() for n in names], pa.list_(pa.float64()))],
                ["model", "sums"])

    parts = encoded_frame(df, tree).mapInArrow(score, "model string, sums array<double>").toArrow()
    totals = {name: MetricSums.zeros(k) for name in names}
    for name, vector in zip(parts.column("model").to_pylist(), parts.column("sums").to_pylist()):
        totals[name] = totals[name] + MetricSums.from_vector(np.asarray(vector), k)
    return {name: totals[name].report() for name in names}
