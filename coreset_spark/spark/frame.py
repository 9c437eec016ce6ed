"""Validate a DataFrame against a data specification, and the one global statistics pass.

The prepared frame has the bookkeeping columns ``_row_id`` (int64), ``_weight`` (double),
``_class`` (int64 class index, added once the classes are known) and the feature columns
(numerics as double with NaN turned into null, categoricals as strings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from coreset_spark.config import RESERVED_COLUMNS, DataError, DataSpec
from coreset_spark.encoding import MISSING, NumericStats, TableStats
from coreset_spark.sampling import stable_round_on

NUMERIC_TYPES = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)
CATEGORICAL_TYPES = (T.StringType, T.BooleanType)
MAX_CLASSES = 1000


def column(name: str) -> Column:
    """A column by its exact name (dots, spaces and other characters taken literally)."""
    return F.col("`" + name.replace("`", "``") + "`")


@dataclass(frozen=True)
class Columns:
    """The resolved roles of the columns."""

    target: str | None
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    auto_categorical: tuple[str, ...] = ()


@dataclass
class Prepared:
    """A validated frame, its column roles and what was excluded."""

    frame: DataFrame
    columns: Columns
    notes: list[str] = field(default_factory=list)


def resolve_columns(df: DataFrame, spec: DataSpec) -> Columns:
    """Check the named columns exist and have usable types; pick default features."""
    available = df.columns
    named = [("target", spec.target), ("row_id", spec.row_id), ("weight", spec.weight)]
    named += [("features", c) for c in spec.features] + [("categorical", c) for c in spec.categorical]
    for role, column in named:
        if column is not None and column not in available:
            raise DataError(f"data.{role} names column {column!r}, which the table does not have; "
                            f"available columns: {available}")
    clash = sorted(set(available) & set(RESERVED_COLUMNS))
    if clash:
        raise DataError(f"column(s) {clash} use names reserved for bookkeeping {list(RESERVED_COLUMNS)}; rename them")
    reserved = {spec.target, spec.row_id, spec.weight}
    features = list(spec.features) or [c for c in available if c not in reserved]
    for column in spec.categorical:
        if column not in features:
            raise DataError(f"data.categorical names {column!r}, which is not a feature; add it to data.features")
    if not features:
        raise DataError("the table has no feature columns besides the target, row id and weight; "
                        "add feature columns or list them in data.features")
    types = dict(df.dtypes)
    fields = {f.name: f.dataType for f in df.schema.fields}
    numeric, categorical, auto = [], [], []
    for column in features:
        dtype = fields[column]
        if column in spec.categorical:
            if not isinstance(dtype, CATEGORICAL_TYPES + NUMERIC_TYPES):
                raise DataError(f"categorical column {column!r} has type {types[column]}; "
                                "cast it to string or integer first")
            categorical.append(column)
        elif isinstance(dtype, NUMERIC_TYPES):
            numeric.append(column)
        elif isinstance(dtype, CATEGORICAL_TYPES):
            categorical.append(column)
            auto.append(column)
        else:
            raise DataError(f"feature column {column!r} has type {types[column]}, which is neither numeric nor "
                            "categorical; convert it (e.g. a timestamp to hour/day numbers) or leave it out of "
                            "data.features")
    if spec.weight is not None and not isinstance(fields[spec.weight], NUMERIC_TYPES):
        raise DataError(f"data.weight column {spec.weight!r} has type {types[spec.weight]}; it must be numeric")
    if spec.target is not None and isinstance(fields[spec.target], (T.ArrayType, T.MapType, T.StructType, T.BinaryType)):
        raise DataError(f"target column {spec.target!r} has type {types[spec.target]}; "
                        "it must hold class labels (string, integer, boolean)")
    return Columns(spec.target, tuple(numeric), tuple(categorical), tuple(auto))


def with_row_ids(df: DataFrame, name: str = "row_id") -> DataFrame:
    """Add a unique int64 row id computed from the data (never from partition ids).

    The id is a hash of the row's values and of its rank among identical rows, so duplicates get
    different ids and the same table gives the same ids however it is partitioned. Costs a shuffle.
    """
    from pyspark.sql import Window

    if name in df.columns:
        raise DataError(f"column {name!r} already exists; pass another name for the row id column")
    content = content_hash(df.columns)
    rank = F.row_number().over(Window.partitionBy(content).orderBy(*[column(c).asc_nulls_first() for c in df.columns]))
    return df.withColumn(name, F.xxhash64(content, rank))


def content_hash(columns: list[str], *extra: Column) -> Column:
    """A 64-bit hash of the values of ``columns`` in which a null differs from every value
    (xxhash64 alone skips nulls, so (1, null) and (null, 1) would collide)."""
    parts = [part for c in columns for part in (column(c), column(c).isNull())]
    return F.xxhash64(*parts, *extra)


def row_id_column(df: DataFrame, spec: DataSpec) -> Column:
    """An int64 row id: an integer id column as is, any other id hashed, else a hash of the row."""
    if spec.row_id is None:
        return content_hash(df.columns)
    dtype = dict((f.name, f.dataType) for f in df.schema.fields)[spec.row_id]
    if isinstance(dtype, (T.ByteType, T.ShortType, T.IntegerType, T.LongType)):
        return column(spec.row_id).cast("long")
    # a null id stays null (and is refused), instead of hashing to one shared value
    return F.when(column(spec.row_id).isNotNull(), F.xxhash64(column(spec.row_id)))


def prepare(df: DataFrame, spec: DataSpec) -> Prepared:
    """Validate and select: bookkeeping columns plus typed feature columns (no Spark job runs)."""
    columns = resolve_columns(df, spec)
    notes = []
    if columns.auto_categorical:
        notes.append(f"string/boolean feature columns treated as categorical: {list(columns.auto_categorical)}")
    weight = column(spec.weight).cast("double") if spec.weight else F.lit(1.0)
    selected = [row_id_column(df, spec).alias("_row_id"), weight.alias("_weight")]
    if spec.target is not None:
        target = column(spec.target)
        if isinstance(dict((f.name, f.dataType) for f in df.schema.fields)[spec.target], (T.FloatType, T.DoubleType)):
            target = F.when(~F.isnan(target), target)  # a NaN label is a missing label
        selected.append(target.alias(spec.target))
    for c in columns.numeric:
        value = column(c).cast("double")
        selected.append(F.when(F.isnan(value), F.lit(None)).otherwise(value).alias(c))
    selected += [column(c).cast("string").alias(c) for c in columns.categorical]
    frame = df.select(*selected)
    return Prepared(frame, columns, notes)


# Spark turns whole-stage code generation off for a plan of more than spark.sql.codegen.maxFields
# (100) fields, and one aggregation over every column of a wide table has hundreds: interpreted,
# it ran 2 to 3 times slower (KDD Cup's 37 columns: 224 aggregates). Aggregations are split into
# jobs of at most AGG_CHUNK expressions instead, each compiled.
AGG_CHUNK = 80


def aggregate(frame: DataFrame, exprs: list[Column]) -> dict[str, Any]:
    """``frame.agg(*exprs)`` as one row dict, in jobs of at most ``AGG_CHUNK`` expressions."""
    row: dict[str, Any] = {}
    for start in range(0, len(exprs), AGG_CHUNK):
        row.update(frame.agg(*exprs[start:start + AGG_CHUNK]).collect()[0].asDict())
    return row


def _moment_exprs(columns: Columns, weighted: bool = True) -> list[Column]:
    # Plain sums only: Spark's avg/stddev_pop aggregates cost about 4 times as much as sums here
    # (7 s against 2 s for KDD Cup's 37 columns); the variance comes from a second, cheap pass of
    # squared deviations from the mean (two-pass, numerically stable), weighted or not. Infinite
    # values show in the range (min or max infinite) and are only counted then
    # (:func:`_infinite_counts`); without a weight column the weighted count and sum are the count
    # and the plain sum (:func:`_unweighted_moments`): four aggregates per column, not six.
    w = F.col("_weight")
    exprs = [F.count(F.lit(1)).alias("rows"), F.sum(w).alias("weight")]
    for i, c in enumerate(columns.numeric):
        x = column(c)
        exprs += [F.count(x).alias(f"n{i}"), F.min(x).alias(f"lo{i}"), F.max(x).alias(f"hi{i}")]
        if weighted:
            wx = F.when(x.isNotNull(), w)
            exprs += [F.sum(wx).alias(f"w{i}"), F.sum(wx * x).alias(f"s{i}")]
        else:
            exprs.append(F.sum(x).alias(f"s{i}"))
    for i, c in enumerate(columns.categorical):
        exprs.append(F.count(column(c)).alias(f"c{i}"))
    return exprs


def _unweighted_moments(row: dict[str, Any], columns: Columns, weighted: bool) -> dict[str, Any]:
    """Fill in ``w{i}`` (the weight of the non-null values) as the count when every weight is 1."""
    if not weighted:
        for i in range(len(columns.numeric)):
            row[f"w{i}"] = float(row[f"n{i}"])
            row[f"s{i}"] = 0.0 if row[f"s{i}"] is None else row[f"s{i}"]
    return row


def _infinite_counts(frame: DataFrame, row: dict[str, Any], columns: Columns) -> None:
    """Refuse infinite feature values, with their count (a job only when the range shows some)."""
    for i, c in enumerate(columns.numeric):
        if row[f"lo{i}"] == float("-inf") or row[f"hi{i}"] == float("inf"):
            count = frame.where(F.abs(column(c)) == F.lit(float("inf"))).count()
            raise DataError(f"feature column {c!r} has {count} infinite values; replace them (e.g. by null, "
                            "which is imputed, or by a capped value)")


def compute_stats(prepared: Prepared, spec: DataSpec, task: str = "classification"
                  ) -> tuple[TableStats, list[Any], Prepared]:
    """One aggregation pass over the table, plus small group-bys for target and categorical levels.

    Returns the statistics, the sorted class labels (empty unless ``task`` is classification), and
    the prepared frame with ``_class`` (class index; 0 without classes) and ``_target`` (the class
    index, the regression value, or 0 for clustering) added; rows with a null target are removed
    when ``drop_null_target`` is set (the statistics then describe the rows kept). A weight column
    costs nothing more: the variances always come from a second pass of squared deviations.
    """
    frame, columns = prepared.frame, prepared.columns
    if task == "clustering" or columns.target is None:
        task = "clustering"
        if columns.target is not None:
            frame = frame.drop(columns.target)
            columns = Columns(None, columns.numeric, columns.categorical, columns.auto_categorical)
    if task == "regression":
        _check_numeric_target(frame, columns)
    target = column(columns.target) if columns.target is not None else F.lit(0)
    w = F.col("_weight")
    if task == "regression":
        bad_target = target.isNull() | F.isnan(target) | (F.abs(target) == F.lit(float("inf")))
    else:
        bad_target = target.isNull()
    checks = [F.sum(F.when(bad_target, 1).otherwise(0)).alias("null_target"),
              F.sum(F.when(F.col("_row_id").isNull(), 1).otherwise(0)).alias("null_id"),
              F.sum(F.when(w.isNull() | (w < 0) | F.isnan(w) | (w == F.lit(float("inf"))), 1).otherwise(0))
              .alias("bad_weight")]
    weighted = spec.weight is not None
    row = _unweighted_moments(aggregate(frame, [*checks, *_moment_exprs(columns, weighted)]), columns, weighted)
    n_rows = int(row["rows"])
    if n_rows == 0:
        raise DataError("the input table is empty (0 rows); check the path, the filter or the Delta version")
    if row["null_id"]:
        raise DataError(f"row id column {spec.row_id!r} has {row['null_id']} null values; fill them or drop data.row_id")
    if spec.row_id is not None:
        # a group-by, not count_distinct inside the big aggregation (which Spark plans far more slowly)
        repeated = frame.groupBy("_row_id").count().where(F.col("count") > 1) \
            .agg(F.count(F.lit(1)).alias("ids"), F.sum("count").alias("rows")).collect()[0]
        if repeated["ids"]:
            raise DataError(f"data.row_id={spec.row_id!r} is not unique: {repeated['ids']} ids occur more than once, "
                            f"on {int(repeated['rows'])} rows; ids must be unique: name another column, or make ids "
                            "from the data with with_row_ids(df) (the jobs: input.row_ids)")
    if row["bad_weight"]:
        raise DataError(f"weight column {spec.weight!r} has {row['bad_weight']} null, NaN, infinite or negative "
                        "values; weights must be finite non-negative numbers")
    notes = list(prepared.notes)
    null_target = int(row["null_target"])
    excluded = 0
    if null_target:
        if not spec.drop_null_target:
            what = "null, NaN or infinite" if task == "regression" else "null"
            raise DataError(f"target column {columns.target!r} has {null_target} {what} values out of {n_rows} rows; "
                            "fix them, or set data.drop_null_target: true to exclude those rows (they are counted)")
        frame = frame.where(~bad_target)
        excluded = null_target
        notes.append(f"excluded {excluded} rows with a null target {columns.target!r}")
        row = _unweighted_moments(aggregate(frame, _moment_exprs(columns, weighted)), columns, weighted)
        n_rows = int(row["rows"]) + excluded
    if not float(row["weight"] or 0.0) > 0:
        raise DataError(f"the total weight of the rows is {row['weight']}; weight column {spec.weight!r} must have "
                        "some positive values")
    _infinite_counts(frame, row, columns)
    if columns.numeric:
        means = {i: (float(row[f"s{i}"]) / float(row[f"w{i}"]) if row[f"w{i}"] else 0.0)
                 for i in range(len(columns.numeric))}
        spread = [F.sum(F.when(column(c).isNotNull(), w) * (column(c) - F.lit(means[i])) ** 2).alias(f"q{i}")
                  for i, c in enumerate(columns.numeric)]
        row.update(aggregate(frame, spread))
    numeric, null_features = {}, {}
    for i, c in enumerate(columns.numeric):
        count = int(row[f"n{i}"])
        kept = n_rows - excluded
        if count == 0:
            raise DataError(f"feature column {c!r} is null (or NaN) in every row; drop it from data.features")
        if count < kept:
            null_features[c] = kept - count
            if spec.missing == "error":
                raise DataError(f"feature column {c!r} has {kept - count} null/NaN values; fill them or set "
                                "data.missing: impute_mean")
        total = float(row[f"w{i}"] or 0.0)
        mean = float(row[f"s{i}"]) / total if total > 0 else 0.0
        std = (max(float(row[f"q{i}"] or 0.0), 0.0) / total) ** 0.5 if total > 0 else 0.0
        if not (np.isfinite(mean) and np.isfinite(std)):
            raise DataError(f"feature column {c!r} has values too large to standardise (mean {mean!r}, standard "
                            f"deviation {std!r}, range {row[f'lo{i}']!r} to {row[f'hi{i}']!r}); rescale or log-transform it")
        # Spark's sums carry errors of about 1e-16 |mean| that depend on the partitioning: round on grids
        # coarser than that so every partitioning gives the same encoder (shifts are absorbed by the intercept).
        noise = abs(mean) * 2.0 ** -16
        std = float(stable_round_on(std, max(std, noise)))
        mean = float(stable_round_on(mean, max(std, noise, abs(mean) * 2.0 ** -24)))
        numeric[c] = NumericStats(count, total, mean, std,
                                  float(row[f"lo{i}"]), float(row[f"hi{i}"]))
    for i, c in enumerate(columns.categorical):
        if int(row[f"c{i}"]) == 0:
            raise DataError(f"feature column {c!r} is null in every row; drop it from data.features")
        if int(row[f"c{i}"]) < n_rows - excluded:
            null_features[c] = n_rows - excluded - int(row[f"c{i}"])
            if spec.missing == "error":
                raise DataError(f"categorical column {c!r} has {null_features[c]} null values; fill "
                                "them or set data.missing: impute_mean (nulls become the level __missing__)")
    categorical = level_counts(frame, columns.categorical, spec.max_levels + 1)
    if task != "classification":
        frame = frame.withColumn("_class", F.lit(0).cast("long")).withColumn("_target", target.cast("double"))
        if columns.target is not None:
            frame = frame.drop(columns.target)
        stats = TableStats(n_rows=n_rows - excluded, weight_total=float(row["weight"]), target_counts={},
                           numeric=numeric, categorical=categorical, null_target=null_target,
                           excluded_rows=excluded, null_features=null_features)
        if null_features:
            notes.append(f"null feature values imputed ({spec.missing}): {null_features}")
        return stats, [], Prepared(frame, columns, notes)
    classes_rows = frame.groupBy(target.alias("t")).agg(F.count(F.lit(1)).alias("n"), F.sum(w).alias("w")).collect()
    classes_rows = [r for r in classes_rows if r["t"] is not None]
    if len(classes_rows) < 2:
        only = classes_rows[0]["t"] if classes_rows else None
        raise DataError(f"target column {columns.target!r} has a single class ({only!r}); a classifier needs at "
                        "least two: check the filter or the target column")
    if len(classes_rows) > MAX_CLASSES:
        raise DataError(f"target column {columns.target!r} has {len(classes_rows)} distinct values (more than "
                        f"{MAX_CLASSES}); it looks continuous: use a regression family or bin the target")
    fractional = [r["t"] for r in classes_rows
                  if isinstance(r["t"], (float, Decimal)) and not float(r["t"]).is_integer()]
    if fractional:
        raise DataError(f"target column {columns.target!r} holds non-integer numbers (e.g. {fractional[0]!r}), "
                        "not class labels; a classifier needs labels: bin the target or use a regression family")
    classes = sorted((r["t"] for r in classes_rows), key=lambda v: (str(type(v)), v))
    if len(classes) > 50:
        notes.append(f"target {columns.target!r} has {len(classes)} classes; check it is a label, not a measurement")
    target_counts = {r["t"]: float(r["w"]) for r in classes_rows}
    mapping = F.create_map(*[item for i, v in enumerate(classes) for item in (F.lit(v), F.lit(i))])
    frame = (frame.withColumn("_class", mapping[target].cast("long"))
             .withColumn("_target", F.col("_class").cast("double")).drop(str(columns.target)))
    stats = TableStats(n_rows=n_rows - excluded, weight_total=float(sum(target_counts.values())),
                       target_counts=target_counts, numeric=numeric, categorical=categorical,
                       null_target=null_target, excluded_rows=excluded, null_features=null_features)
    if null_features:
        notes.append(f"null feature values imputed ({spec.missing}): {null_features}")
    return stats, classes, Prepared(frame, columns, notes)


def level_counts(frame: DataFrame, categorical: tuple[str, ...], top: int) -> dict[str, dict[str, int]]:
    """Per categorical column, its ``top`` most frequent levels and their row counts (one job).

    Levels are strings (nulls become ``__missing__``); ties are broken by the level, so the result
    does not depend on the partitioning.
    """
    if not categorical:
        return {}
    pairs = F.array(*[F.struct(F.lit(i).alias("i"), F.coalesce(column(c).cast("string"), F.lit(MISSING)).alias("level"))
                      for i, c in enumerate(categorical)])
    counts = frame.select(F.explode(pairs).alias("p")).groupBy("p.i", "p.level").count()
    rank = F.row_number().over(Window.partitionBy("i").orderBy(F.desc("count"), F.asc("level")))
    rows = counts.withColumn("rank", rank).where(F.col("rank") <= top).orderBy("i", "rank").collect()
    out: dict[str, dict[str, int]] = {c: {} for c in categorical}
    for r in rows:
        out[categorical[r["i"]]][r["level"]] = int(r["count"])
    return out


def _check_numeric_target(frame: DataFrame, columns: Columns) -> None:
    dtype = dict((f.name, f.dataType) for f in frame.schema.fields)[str(columns.target)]
    if not isinstance(dtype, NUMERIC_TYPES):
        raise DataError(f"target column {columns.target!r} has type {dtype.simpleString()}; regression needs a numeric "
                        "target: cast it to double, or use a classification family (logistic, tree)")


def with_classes(prepared: Prepared, classes: list[Any]) -> DataFrame:
    """Map the target of a prepared frame (e.g. test data) to class indices.

    A null target stays null (callers exclude and count it); a label not seen in training, or of
    another type, becomes -1.
    """
    if prepared.columns.target is None:
        raise DataError("this data has no target column (clustering); class indices need data.target")
    target = column(prepared.columns.target)
    key_type = _key_type(classes)
    mapping = F.create_map(*[item for i, v in enumerate(classes) for item in (F.lit(v).cast(key_type), F.lit(i))])
    found = mapping[target.try_cast(key_type)]
    index = F.when(target.isNull(), F.lit(None)).otherwise(F.coalesce(found.cast("long"), F.lit(-1).cast("long")))
    return prepared.frame.withColumn("_class", index)


def _key_type(classes: list[Any]) -> str:
    first = classes[0]
    if isinstance(first, bool):
        return "boolean"
    if isinstance(first, int):
        return "long"
    if isinstance(first, float):
        return "double"
    if isinstance(first, Decimal):
        return "decimal(38,18)"
    return "string"
