"""Score a full table with a model chosen on the coreset, in Spark, and write the predictions.

The model travels to the executors; each task encodes its rows exactly as the coreset was
encoded (the tree's encoder: the same standardisation, one-hot levels, ``__other__`` for levels
unseen at build time and mean imputation of missing numerics) and predicts batch by batch.

>>> # predictions = predict_table(model, spark.read.format("delta").load("/data/events"), tree,
>>> #                             keep=["event_id"])
>>> # write_predictions(predictions, "/tables/event_scores")   # one Delta transaction; returns its version
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from coreset_spark.config import ConfigError
from coreset_spark.metrics import full_proba
from coreset_spark.spark.frame import column

PREDICTION = "prediction"
PROBABILITY = "probability"


def _label_type(df: DataFrame, tree: Any) -> T.DataType:
    fields = {f.name: f.dataType for f in df.schema.fields}
    target = tree.spec.target
    if target in fields and not isinstance(fields[target], (T.FloatType, T.DoubleType)):
        return fields[target]
    if all(isinstance(c, bool) for c in tree.classes):
        return T.BooleanType()
    if all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in tree.classes):
        return T.LongType()
    return T.StringType()


def predict_table(model: Any, df: DataFrame, tree: Any, keep: Sequence[str] | None = None,
                  probability: bool = True) -> DataFrame:
    """``df``'s ``keep`` columns (default: the tree's row id column if it has one, else every
    column) with the model's ``prediction`` (a class label in the target's type, or a number for
    regression) and, for classifiers, ``probability`` (one value per class, in the order of
    ``tree.classes``). Every feature column the tree was built on must be present; the target
    need not be. Lazy: nothing runs until the frame is written or collected.
    """
    encoder = tree.encoder
    present = set(df.columns)
    missing = [c for c in encoder.input_columns if c not in present]
    if missing:
        raise ConfigError(f"the table to score lacks the feature column(s) {missing}; the model was trained on "
                          f"{list(encoder.input_columns)}")
    if keep is None:
        keep = [tree.spec.row_id] if tree.spec.row_id and tree.spec.row_id in present else list(df.columns)
    unknown = [c for c in keep if c not in present]
    if unknown:
        raise ConfigError(f"keep={list(unknown)} names column(s) the table does not have; it has {df.columns}")
    clash = [c for c in keep if c in (PREDICTION, PROBABILITY)]
    if clash:
        raise ConfigError(f"the kept column(s) {clash} would clash with the output; leave them out of keep=")
    classify = tree.task == "classification"
    if tree.task not in ("classification", "regression"):
        raise ConfigError(f"predict_table scores classifiers and regressors; this tree's task is {tree.task!r}")
    categorical = set(encoder.categorical)
    features = []
    for i, c in enumerate(encoder.input_columns):
        if c in categorical:
            features.append(column(c).cast("string").alias(f"_c{i}"))
        else:
            value = column(c).cast("double")
            features.append(F.when(F.isnan(value), F.lit(None)).otherwise(value).alias(f"_c{i}"))
    frame = df.select(*[column(k).alias(f"_k{i}") for i, k in enumerate(keep)], *features)
    fields = {f.name: f for f in df.schema.fields}
    label_type = _label_type(df, tree) if classify else T.DoubleType()
    out_fields = [T.StructField(k, fields[k].dataType, True) for k in keep] + [T.StructField(PREDICTION, label_type, True)]
    if classify and probability:
        out_fields.append(T.StructField(PROBABILITY, T.ArrayType(T.DoubleType(), False), True))
    schema = T.StructType(out_fields)
    arrow_schema = pa.schema([pa.field(f.name, _arrow_type(f.dataType)) for f in out_fields])
    safe, _ = encoder.with_safe_names()
    labels = np.asarray(tree.classes, dtype=object)
    k = len(tree.classes)
    n_keep = len(keep)

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if not batch.num_rows:
                continue
            x = safe.transform(batch)
            columns = [batch.column(i) for i in range(n_keep)]
            if classify:
                proba = full_proba(model, x, k)
                columns.append(pa.array(labels[np.argmax(proba, axis=1)].tolist(), arrow_schema.field(PREDICTION).type))
                if probability:
                    columns.append(pa.array(list(proba), pa.list_(pa.float64())))
            else:
                columns.append(pa.array(np.asarray(model.predict(x), dtype=np.float64)))
            yield pa.RecordBatch.from_arrays(columns, schema=arrow_schema)

    return frame.mapInArrow(score, schema)


def _arrow_type(data_type: T.DataType) -> pa.DataType:
    from pyspark.sql.pandas.types import to_arrow_type

    if isinstance(data_type, T.ArrayType):
        return pa.list_(pa.field("element", _arrow_type(data_type.elementType), nullable=False))
    return to_arrow_type(data_type)


def write_predictions(predictions: DataFrame, path: str, mode: str = "overwrite", format: str = "delta") -> dict[str, Any]:
    """Write scored rows to ``path`` (Delta by default: one transaction, so a failed write leaves the
    previous predictions intact); returns where, how many rows and the Delta version written."""
    if mode not in ("overwrite", "append", "error"):
        raise ConfigError(f"mode={mode!r} is not supported for predictions; use overwrite, append or error")
    if format not in ("delta", "parquet"):
        raise ConfigError(f"format={format!r} is not supported for predictions; use delta or parquet")
    writer = predictions.write.format(format).mode(mode)
    if format == "delta" and mode == "overwrite":  # a rerun may keep other columns: replace the schema too
        writer = writer.option("overwriteSchema", "true")
    writer.save(path)
    spark = predictions.sparkSession
    written = spark.read.format(format).load(path)
    info: dict[str, Any] = {"path": path, "format": format, "rows": written.count()}
    if format == "delta":
        from coreset_spark.spark.source import delta_version

        info["version"] = delta_version(spark, path)
    return info
