"""The coreset tree built in Spark: schema, invariants, determinism, edge partitions, Delta."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import functions as F

from coreset_spark import datasets
from coreset_spark.config import CoresetParams, DataSpec
from coreset_spark.coreset import read_saved_level, saved_lineage
from coreset_spark.spark.build import build_tree
from coreset_spark.spark.frame import with_row_ids
from coreset_spark.tree import CORESET_SCHEMA, Sampler, build_in_memory


@pytest.fixture(scope="module")
def kdd(spark, data_dir):
    """About 12,000 real KDD Cup 99 rows (a hash-chosen subset), with unique row ids."""
    df, spec = datasets.load(spark, "kddcup99_multiclass", data_dir)
    df = df.where(F.pmod(F.xxhash64(*df.columns), F.lit(40)) == 0)
    df = with_row_ids(df, "rid").repartition(3).cache()
    assert df.count() > 5000
    yield df, DataSpec(target="label", categorical=spec.categorical, row_id="rid")
    df.unpersist()


def rows_of(tree, level):
    table = tree.level_frame(level).toArrow().sort_by("row_id")
    return table


def test_levels_schema_weights_and_classes(kdd):
    df, spec = kdd
    tree = build_tree(df, spec, CoresetParams(size=400, seed=3, fanin=4))
    n = df.count()
    sizes = tree.level_sizes()
    assert sizes[0] < sizes[1]
    labels = {r["label"]: r["count"] for r in df.groupBy("label").count().collect()}
    for level in sizes:
        table = rows_of(tree, level)
        assert table.schema.equals(CORESET_SCHEMA, check_metadata=False)
        w = table.column("weight").to_numpy()
        assert w.sum() == pytest.approx(n, rel=1e-9)
        target = table.column("target").to_numpy().astype(int)
        for i, label in enumerate(tree.classes):
            assert w[target == i].sum() == pytest.approx(labels[label], rel=1e-9), (level, label)
    coreset = tree.get_coreset(0)
    assert coreset.x.shape == (len(coreset), len(coreset.feature_names))
    assert set(np.unique(coreset.y)) == set(range(len(tree.classes)))  # no class vanished
    nodes = tree.node_table()
    assert nodes.loc[nodes.level == 0, "children"].iloc[0]  # the root has children
    assert nodes.groupby("level").represents.sum().round(6).eq(float(n)).all()
    pdf = coreset.to_pandas()
    assert pdf.weight.sum() == pytest.approx(n)
    assert coreset.to_spark(df.sparkSession).count() == len(coreset)


def test_same_coreset_for_2_and_7_partitions_and_reruns(kdd):
    df, spec = kdd
    params = CoresetParams(size=300, seed=11, fanin=4)
    a = build_tree(df.repartition(2), spec, params)
    b = build_tree(df.repartition(7), spec, params)
    c = build_tree(df.repartition(7), spec, params)
    for level in a.level_sizes():
        ta, tb, tc = rows_of(a, level), rows_of(b, level), rows_of(c, level)
        assert ta.equals(tb), f"level {level} differs between 2 and 7 partitions"
        assert tb.equals(tc)


def test_spark_build_equals_the_in_memory_reference(kdd):
    df, spec = kdd
    params = CoresetParams(size=300, seed=5, fanin=4)
    tree = build_tree(df, spec, params)
    from coreset_spark.spark.evaluate import encoded_frame
    from coreset_spark.spark.frame import prepare, with_classes

    frame = with_classes(prepare(df, spec), tree.classes)
    local = frame.select("_row_id", "_class", "_weight", *tree.encoder.input_columns).toArrow()
    sampler = Sampler.create(params.family, tree.encoder, tree.plan, len(tree.classes), params.seed,
                             params.alpha, params.min_per_class)
    reference = build_in_memory(local, sampler)
    for level in tree.level_sizes():
        assert np.array_equal(rows_of(tree, level).column("row_id").to_numpy(),
                              reference[level].sort_by("row_id").column("row_id").to_numpy())
    assert encoded_frame(df, tree).count() == df.count()


def test_empty_partitions_one_row_and_skew(spark, kdd):
    df, spec = kdd
    # two rows of two classes spread over 7 partitions (5 of them empty)
    two = df.where(F.col("label").isin("normal.", "smurf.")).groupBy("label").agg(F.min("rid").alias("rid")) \
        .join(df, ["label", "rid"]).repartition(7)
    tree = build_tree(two, spec, CoresetParams(size=10, fanin=2))
    for level in tree.level_sizes():
        table = rows_of(tree, level)
        assert table.num_rows == 2 and table.column("weight").to_numpy().tolist() == [1.0, 1.0]
    # 90% of the rows in one partition
    n = df.count()
    skewed = df.withColumn("p", F.when(F.pmod(F.col("rid"), F.lit(10)) == 0, F.col("rid")).otherwise(0)) \
        .repartition(4, "p").drop("p")
    params = CoresetParams(size=300, seed=2, fanin=4)
    skew_tree, flat_tree = build_tree(skewed, spec, params), build_tree(df, spec, params)
    assert rows_of(skew_tree, 0).equals(rows_of(flat_tree, 0))
    assert rows_of(skew_tree, 0).column("weight").to_numpy().sum() == pytest.approx(n)


def test_delta_write_and_read_back_with_lineage(spark, kdd, tmp_path):
    df, spec = kdd
    tree = build_tree(df, spec, CoresetParams(size=200, seed=1, fanin=4), source={"format": "test"})
    path = str(tmp_path / "coreset")
    tree.save(path)
    back = read_saved_level(spark, path, 0).toArrow().sort_by("row_id")
    mine = rows_of(tree, 0)
    assert back.select(list(mine.column_names)).cast(mine.schema).equals(mine)
    lineage = saved_lineage(spark, path)
    assert lineage["seed"] == 1 and lineage["source"] == {"format": "test"}
    assert lineage["level_sizes"] == {str(k): v for k, v in tree.level_sizes().items()}
    assert lineage["table_version"] == 0
