"""Every model family through the Spark build on small real data: weights, determinism across
partitionings, agreement with the in-memory build, regression and clustering targets."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from coreset_spark import datasets
from coreset_spark.config import ConfigError, CoresetParams, DataError, DataSpec
from coreset_spark.driver import fit_weighted
from coreset_spark.spark.build import build_tree
from coreset_spark.spark.evaluate import collect_rows
from coreset_spark.spark.frame import with_row_ids
from coreset_spark.tree import Sampler, build_in_memory


@pytest.fixture(scope="module")
def housing(spark, data_dir):
    """California housing: 20,640 real rows, regression on the median house value."""
    df, spec = datasets.load(spark, "california_housing", data_dir)
    df = with_row_ids(df, "rid").repartition(3).cache()
    df.count()
    yield df, spec
    df.unpersist()


@pytest.fixture(scope="module")
def adult(spark, data_dir):
    """About 12,000 real Adult rows with their categorical columns."""
    df, spec = datasets.load(spark, "adult", data_dir)
    df = with_row_ids(df.where(F.pmod(F.xxhash64(*df.columns), F.lit(4)) == 0), "rid").repartition(3).cache()
    df.count()
    yield df, spec
    df.unpersist()


CASES = [
    ("housing", "linear", {"ridge": 1.0}, {}),
    ("housing", "pca", {}, {"task": "auto"}),
    ("housing", "kmeans", {"kmeans_mode": "sensitivity", "clusters": 5, "pilot_rows": 2000}, {"target": None, "task": "auto"}),
    ("housing", "kmeans", {}, {"target": None, "task": "clustering"}),
    ("adult", "tree", {"pilot_rows": 3000}, {}),
    ("housing", "tree", {"pilot_rows": 3000}, {}),
]


@pytest.mark.parametrize("data,family,options,spec_changes", CASES)
def test_family_build_weights_and_partition_invariance(request, data, family, options, spec_changes):
    df, spec = request.getfixturevalue(data)
    spec = DataSpec(**{**spec.__dict__, "row_id": "rid", **spec_changes})
    params = CoresetParams(size=300, family=family, seed=2, fanin=4, levels=2, **options)
    tree = build_tree(df, spec, params)
    other = build_tree(df.repartition(7), spec, params)
    n = df.count()
    for level in tree.level_sizes():
        a = tree.level_frame(level).toArrow().sort_by("row_id")
        b = other.level_frame(level).toArrow().sort_by("row_id")
        assert a.equals(b), (family, level)  # same rows, weights and importances, bit for bit
        assert a.column("weight").to_numpy().sum() == pytest.approx(n, rel=1e-9)
    c = tree.get_coreset(0)
    assert 100 < len(c) < 1200
    if tree.task == "regression":
        assert c.y.dtype == np.float64 and c.y.std() > 0.1  # real house values, not class indices
        assert c.to_pandas().target.tolist() == pytest.approx(c.y.tolist())
    x, t, w = collect_rows(df, tree)  # every row, encoded like the coreset
    assert x.shape == (n, tree.encoder.width) and w.sum() == n


def test_regression_coreset_fits_close_to_full_data(housing):
    from sklearn.linear_model import Ridge

    df, spec = housing
    spec = DataSpec(**{**spec.__dict__, "row_id": "rid"})
    tree = build_tree(df, spec, CoresetParams(size=1500, family="linear", ridge=1.0, seed=0, fanin=4, levels=1))
    c = tree.get_coreset(0)
    x, t, _ = collect_rows(df, tree)
    full, _ = fit_weighted(Ridge(alpha=1.0), x, t, None)
    small, _ = fit_weighted(Ridge(alpha=1.0), c.x, c.y, c.weight)
    loss = lambda m: float(((t - m.predict(x)) ** 2).sum())  # noqa: E731
    assert loss(small) / loss(full) < 1.05


def test_in_memory_build_equals_spark_build_for_sensitivity_kmeans(housing, spark):
    df, spec = housing
    spec = DataSpec(target=None, row_id="rid", features=("MedInc", "HouseAge", "AveRooms", "Latitude", "Longitude"))
    params = CoresetParams(size=200, family="kmeans", kmeans_mode="sensitivity", clusters=4, pilot_rows=1500,
                           seed=1, fanin=4, levels=1)
    tree = build_tree(df, spec, params)
    encoder, names = tree.encoder.with_safe_names()
    pdf = df.select(F.col("rid").alias("_row_id"), *[F.col(c).alias(f"_c{i}") for i, c in enumerate(names)]).toPandas()
    table = pa.table({"_row_id": pdf["_row_id"].to_numpy(), "_class": np.zeros(len(pdf), np.int64),
                      "_weight": np.ones(len(pdf)), "_target": np.zeros(len(pdf)),
                      **{c: pdf[c].to_numpy() for c in pdf.columns if c.startswith("_c")}})
    sampler = Sampler.create("kmeans", encoder, tree.plan, 0, 1, params.alpha, params.min_per_class,
                             "clustering", params)
    levels = build_in_memory(table, sampler)
    for level, rows in levels.items():
        spark_rows = tree.level_frame(level).toArrow().sort_by("row_id")
        np.testing.assert_array_equal(rows.sort_by("row_id").column("row_id").to_numpy(),
                                      spark_rows.column("row_id").to_numpy())
        np.testing.assert_allclose(rows.sort_by("row_id").column("weight").to_numpy(),
                                   spark_rows.column("weight").to_numpy(), rtol=1e-12)


def test_regression_target_errors(spark, housing):
    df, _ = housing
    bad = df.withColumn("MedHouseVal", F.when(F.col("rid") % 97 == 0, F.lit(float("nan"))).otherwise(F.col("MedHouseVal")))
    with pytest.raises(DataError, match="target column 'MedHouseVal' has .* null, NaN or infinite values"):
        build_tree(bad, DataSpec(target="MedHouseVal", row_id="rid"), CoresetParams(family="linear", size=100))
    text = df.withColumn("MedHouseVal", F.col("MedHouseVal").cast("string"))
    with pytest.raises(DataError, match="regression needs a numeric target"):
        build_tree(text, DataSpec(target="MedHouseVal", row_id="rid"), CoresetParams(family="linear", size=100))
    kept = build_tree(bad, DataSpec(target="MedHouseVal", row_id="rid", drop_null_target=True),
                      CoresetParams(family="linear", size=100, levels=1))
    assert kept.stats.excluded_rows == bad.where(F.isnan("MedHouseVal")).count() > 0


def test_class_weighted_build_and_removing_the_factor(adult):
    df, spec = adult
    spec = DataSpec(**{**spec.__dict__, "row_id": "rid"})
    counts = {r["income"]: r["count"] for r in df.groupBy("income").count().collect()}
    tree = build_tree(df, spec, CoresetParams(size=400, family="logistic", seed=3, fanin=4, levels=1,
                                              class_weight="balanced"))
    n, k = sum(counts.values()), len(counts)
    for level in tree.level_sizes():
        c = tree.get_coreset(level)
        for i in range(len(c.classes)):  # balanced: every class weighs n / k
            assert c.weight[c.y == i].sum() == pytest.approx(n / k, rel=1e-9)
        plain = tree.get_coreset(level, remove_class_weight=True)
        for i, label in enumerate(plain.classes):
            assert plain.weight[plain.y == i].sum() == pytest.approx(counts[label], rel=1e-9)
    with pytest.raises(ConfigError, match="class_weight has no factor"):
        build_tree(df, spec, CoresetParams(size=100, class_weight={c: 2.0 for c in list(counts)[:1]}))
    with pytest.raises(ConfigError, match="class_weight"):
        CoresetParams(class_weight={"a": -1.0})
