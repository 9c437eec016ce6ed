"""Bad input gets a clear error naming the column, the value and the fix; sources read right."""

from __future__ import annotations

import datetime

import pytest
from pyspark.sql import functions as F

from coreset_spark.config import CoresetParams, DataError, DataSpec
from coreset_spark.spark.build import build_tree
from coreset_spark.spark.source import read_source

PARAMS = CoresetParams(size=20, fanin=2)


@pytest.fixture(scope="module")
def small(spark):
    rows = [(float(i), float(i % 7), "a" if i % 3 else "b", i % 2, 1.0 + i % 3) for i in range(200)]
    return spark.createDataFrame(rows, "x double, z double, c string, y int, w double")


@pytest.mark.parametrize("change, spec, message", [
    (None, DataSpec(target="nope"), r"data.target names column 'nope'.*available columns"),
    (lambda d: d.withColumn("y", F.when(F.col("x") < 5, None).otherwise(F.col("y"))), DataSpec(target="y"),
     r"target column 'y' has 5 null values out of 200 rows.*drop_null_target"),
    (lambda d: d.withColumn("y", F.col("x") * 1.5), DataSpec(target="y"),
     r"target column 'y' holds non-integer numbers \(e.g. [0-9.]+\).*bin the target"),
    (lambda d: d.withColumn("z", F.lit(None).cast("double")), DataSpec(target="y"),
     r"feature column 'z' is null \(or NaN\) in every row; drop it"),
    (lambda d: d.withColumn("y", F.lit(1)), DataSpec(target="y"), r"single class \(1\)"),
    (lambda d: d.where(F.col("x") < 0), DataSpec(target="y"), r"input table is empty"),
    (lambda d: d.withColumn("w", F.col("w") - 2.5), DataSpec(target="y", weight="w"),
     r"weight column 'w' has \d+ null, NaN, infinite or negative values"),
    (lambda d: d.withColumn("t", F.lit(datetime.datetime(2024, 1, 1))), DataSpec(target="y"),
     r"feature column 't' has type timestamp.*convert it"),
    (lambda d: d.withColumn("z", F.when(F.col("x") < 3, None).otherwise(F.col("z"))),
     DataSpec(target="y", missing="error"), r"feature column 'z' has 3 null/NaN values"),
    (lambda d: d.withColumn("z", F.when(F.col("x") < 2, float("inf")).otherwise(F.col("z"))), DataSpec(target="y"),
     r"feature column 'z' has 2 infinite values"),
    (lambda d: d.withColumn("z", F.col("x") * 1e300), DataSpec(target="y"),
     r"feature column 'z' has values too large to standardise"),
    (lambda d: d.withColumn("sid", F.when(F.col("x") % 5 == 0, None).otherwise(F.col("x").cast("string"))),
     DataSpec(target="y", row_id="sid"), r"row id column 'sid' has 40 null values"),
    (lambda d: d.withColumn("rid", (F.col("x") % 50).cast("long")), DataSpec(target="y", row_id="rid"),
     r"data.row_id='rid' is not unique: 50 ids occur more than once, on 200 rows"),
    (lambda d: d.withColumn("w", F.lit(0.0)), DataSpec(target="y", weight="w"), r"total weight of the rows is 0.0"),
    (lambda d: d.withColumn("w", F.when(F.col("x") == 3, float("inf")).otherwise(F.col("w"))),
     DataSpec(target="y", weight="w"), r"weight column 'w' has 1 null, NaN, infinite or negative values"),
    (lambda d: d.withColumnRenamed("z", "_weight"), DataSpec(target="y"), r"names reserved for bookkeeping"),
    (lambda d: d.withColumn("y", (F.col("x") / 2).cast("decimal(6,1)")), DataSpec(target="y"),
     r"holds non-integer numbers"),
])
def test_bad_input_errors(small, change, spec, message):
    df = change(small) if change else small
    with pytest.raises(DataError, match=message):
        build_tree(df, spec, PARAMS)


def test_excluded_rows_are_counted_and_nulls_imputed(small):
    df = small.withColumn("y", F.when(F.col("x") < 5, None).otherwise(F.col("y"))) \
        .withColumn("z", F.when(F.col("x") > 190, F.lit(float("nan"))).otherwise(F.col("z")))
    tree = build_tree(df, DataSpec(target="y", drop_null_target=True, weight="w"), PARAMS)
    assert tree.stats.excluded_rows == 5
    assert any("excluded 5 rows" in note for note in tree.notes)
    assert any("'z': 9" in note for note in tree.notes)
    assert any("categorical: ['c']" in note for note in tree.notes)
    total_weight = df.where(F.col("y").isNotNull()).agg(F.sum("w")).first()[0]
    assert tree.get_coreset(0).weight.sum() == pytest.approx(total_weight)


def test_excluded_rows_do_not_feed_the_statistics(small):
    df = small.withColumn("y", F.when(F.col("x") < 20, F.lit(float("nan"))).otherwise(F.col("y").cast("double"))) \
        .withColumn("x", F.when(F.col("x") < 20, F.lit(1e6)).otherwise(F.col("x")))
    tree = build_tree(df, DataSpec(target="y", drop_null_target=True), PARAMS)
    kept = df.where(F.col("x") < 1e6).agg(F.avg("x"), F.stddev_pop("x")).first()
    assert tree.stats.excluded_rows == 20  # NaN labels count as missing labels
    assert tree.encoder.means[0] == pytest.approx(kept[0], rel=1e-6)
    assert tree.encoder.scales[0] == pytest.approx(kept[1], rel=1e-6)


def test_weighted_scale_is_stable_and_matches_unweighted(small):
    df = small.withColumn("big", F.col("x") * 0.01 + F.lit(1e8)).withColumn("one", F.lit(1.0)) \
        .withColumn("rid", F.col("x").cast("long"))
    spec = DataSpec(target="y", features=("big", "z"), row_id="rid")
    plain = build_tree(df, spec, PARAMS)
    weighted = build_tree(df, DataSpec(target="y", features=("big", "z"), row_id="rid", weight="one"), PARAMS)
    assert weighted.encoder.scales[0] == pytest.approx(plain.encoder.scales[0], rel=1e-5)
    trees = [build_tree(df.repartition(p), spec, PARAMS) for p in (1, 5)]
    assert trees[0].encoder == trees[1].encoder
    assert trees[0].level_frame(0).toArrow().sort_by("row_id").equals(trees[1].level_frame(0).toArrow().sort_by("row_id"))


def test_evaluation_skips_null_targets_and_ignores_extra_columns(small):
    from sklearn.linear_model import LogisticRegression

    from coreset_spark.spark.evaluate import evaluate_many

    tree = build_tree(small, DataSpec(target="y", features=("x", "z", "c")), PARAMS)
    c = tree.get_coreset(0)
    model = LogisticRegression().fit(c.x, c.y, sample_weight=c.weight)
    test = small.withColumn("y", F.when(F.col("x") < 10, None).when(F.col("x") < 20, F.lit(7)).otherwise(F.col("y"))) \
        .withColumn("ts", F.current_timestamp())
    m = evaluate_many({"m": model}, test, tree)["m"]
    assert m["null_target_rows"] == 10 and m["unseen_class_rows"] == 10 and m["rows"] == 190
    assert m["log_loss"] < 5  # the unseen class is not scored as -log(1e-15)


def test_column_names_with_dots_spaces_and_equals(small):
    df = small.withColumnRenamed("x", "a.b").withColumnRenamed("z", "c d=e").withColumnRenamed("y", "the.target")
    tree = build_tree(df, DataSpec(target="the.target", categorical=("c",)), PARAMS)
    assert tree.encoder.feature_names[:2] == ["a.b", "c d=e"]
    assert tree.get_coreset(0).weight.sum() == pytest.approx(200)


def test_read_parquet_csv_and_pinned_delta(spark, small, tmp_path):
    small.write.parquet(str(tmp_path / "p"))
    small.write.option("header", True).csv(str(tmp_path / "c"))
    path = str(tmp_path / "d")
    small.write.format("delta").save(path)
    small.where("x < 50").write.format("delta").mode("overwrite").save(path)
    df, _, lineage = read_source(spark, {"format": "parquet", "path": str(tmp_path / "p")})
    assert df.count() == 200 and lineage["format"] == "parquet"
    df, _, _ = read_source(spark, {"format": "csv", "path": str(tmp_path / "c")})
    assert df.count() == 200 and dict(df.dtypes)["x"] == "double"
    df, _, lineage = read_source(spark, {"format": "delta", "path": path})
    assert lineage["version"] == 1 and df.count() == 50
    df, _, lineage = read_source(spark, {"format": "delta", "path": path, "version": 0})
    assert lineage["version"] == 0 and df.count() == 200
