"""Keeping a tree: save and load (Delta, Parquet), incremental builds, changes by id, cleaning, failed saves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from coreset_spark import datasets
from coreset_spark.config import ConfigError, CoresetParams, DataError, DataSpec
from coreset_spark.coreset import CoresetTree
from coreset_spark.spark.build import build_tree
from coreset_spark.spark.frame import with_row_ids
from coreset_spark.spark.store import table_version

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def adult_source(spark, data_dir, tmp_path_factory):
    """About 12,000 real Adult rows in a Delta table with an integer id; 10% of them held back as new rows."""
    df, spec = datasets.load(spark, "adult", data_dir)
    df = with_row_ids(df.where(F.pmod(F.xxhash64(*df.columns), F.lit(4)) == 0), "rid")
    base = df.where(F.pmod(F.col("rid"), F.lit(10)) != 3)
    new = df.where(F.pmod(F.col("rid"), F.lit(10)) == 3).cache()
    path = str(tmp_path_factory.mktemp("adult") / "source")
    base.write.format("delta").save(path)
    spec = DataSpec(**{**spec.__dict__, "row_id": "rid"})
    yield path, new, spec
    new.unpersist()


def build(spark, path, spec, **params):
    options = {"size": 200, "seed": 5, "fanin": 4, "levels": 2, **params}
    df = spark.read.format("delta").load(path)
    return build_tree(df, spec, CoresetParams(**options), source={"format": "delta", "path": path,
                                                                  "version": table_version(spark, path)})


def rows(tree, level):
    return tree.level_frame(level).toArrow().sort_by("row_id")


def same_levels(a, b):
    assert a.level_sizes() == b.level_sizes()
    for level in a.levels:
        x, y = rows(a, level), rows(b, level)
        assert x.equals(y.cast(x.schema)), level


@pytest.mark.parametrize("fmt", ["delta", "parquet"])
def test_save_and_load_keep_every_level(spark, adult_source, tmp_path, fmt):
    path, _, spec = adult_source
    tree = build(spark, path, spec, holdout_fraction=0.05).mark_seen([1, 2, 3])
    out = str(tmp_path / "tree")
    version = tree.save(out, format=fmt)
    back = CoresetTree.load(spark, out)
    same_levels(tree, back)
    assert back.store.format == fmt and back.store.version == version
    assert back.get_validation().row_id.tolist() == tree.get_validation().row_id.tolist()
    assert back.seen.column("row_id").to_pylist() == [1, 2, 3]
    assert back.classes == tree.classes and back.encoder == tree.encoder and back.spec == tree.spec
    assert back.node_table().represents.sum() == pytest.approx(tree.node_table().represents.sum())
    assert back.sampler.state is not None and back.sampler.total_weight == tree.sampler.total_weight
    c = back.get_coreset(0)
    assert c.weight.sum() == pytest.approx(tree.stats.n_rows - len(tree.get_validation()), rel=1e-9)
    with pytest.raises(ConfigError, match="exists"):
        tree.save(out, mode="error", format=fmt)
    with pytest.raises(ConfigError, match="level=7 does not exist"):
        back.get_coreset(7)


def test_partial_build_adds_a_batch_and_only_its_path(spark, adult_source, tmp_path):
    path, new, spec = adult_source
    tree = build(spark, path, spec)
    out = str(tmp_path / "tree")
    tree.save(out)
    loaded = CoresetTree.load(spark, out)
    # New rows with a category level the first build never saw: it maps to __other__ and is counted.
    novel = new.withColumn("native-country", F.when(F.pmod(F.col("rid"), F.lit(3)) == 0, F.lit("Atlantis"))
                           .otherwise(F.col("native-country")))
    grown = loaded.partial_build(novel.repartition(2))
    again = loaded.partial_build(novel.repartition(7))
    same_levels(grown, again)  # the incremental path does not depend on the partitioning either
    n_total = spark.read.format("delta").load(path).count() + new.count()
    for level in grown.levels:
        assert rows(grown, level).column("weight").to_numpy().sum() == pytest.approx(n_total, rel=1e-9)
    batch = grown.batches[-1]
    assert batch["batch"] == 1 and batch["rows"] == new.count()
    assert batch["drift"]["share[native-country=__other__]"] > 0.2
    leaves = tree.plan.levels
    changed_leaves = grown.pending[("tree", leaves)]
    assert min(changed_leaves) >= tree.plan.n_leaves  # only new leaves, no existing one
    for level in range(1, leaves + 1):  # existing nodes below the root are untouched
        old = rows(tree, level)
        kept = rows(grown, level).filter(pa.array(rows(grown, level).column("node").to_numpy() < 4 ** level))
        assert kept.equals(old.cast(kept.schema))
    grown.save(out)  # writes only the changed nodes
    back = CoresetTree.load(spark, out)
    same_levels(grown, back)
    assert back.batches[-1]["batch"] == 1 and back.pending == {}
    empty = back.partial_build(new.limit(0))
    same_levels(back, empty)
    assert "no new rows" in empty.notes[-1]
    with pytest.raises(DataError, match="not one of the tree's classes"):
        back.partial_build(new.withColumn("income", F.lit("unknown")))


def test_remove_and_update_by_id(spark, adult_source, tmp_path):
    path, _, spec = adult_source
    source = str(tmp_path / "source")
    spark.read.format("delta").load(path).write.format("delta").save(source)
    tree = build(spark, source, spec)
    out = str(tmp_path / "tree")
    tree.save(out)
    leaf_rows = rows(tree, tree.plan.levels)
    sampled = leaf_rows.column("row_id").to_numpy()[:30].tolist()  # rows that are in the coreset
    version = table_version(spark, source)
    with pytest.raises(DataError, match="not in .* nothing was changed"):
        tree.remove_rows(sampled[:3] + [-12345], table=source)
    assert table_version(spark, source) == version
    removed = tree.remove_rows(sampled[:10])
    assert spark.read.format("delta").load(source).where(F.col("rid").isin(sampled[:10])).count() == 0
    n = spark.read.format("delta").load(source).count()
    for level in removed.levels:
        table = rows(removed, level)
        assert not np.isin(table.column("row_id").to_numpy(), sampled[:10]).any()
        assert table.column("weight").to_numpy().sum() == pytest.approx(n, rel=1e-9)
    flip = {i: (">50K" if tree.classes[int(y)] == "<=50K" else "<=50K")
            for i, y in zip(sampled[10:30], leaf_rows.column("target").to_numpy()[10:30])}
    with pytest.raises(DataError, match="not classes of this tree"):
        removed.update_targets({sampled[10]: "maybe"})
    fixed = removed.update_targets(flip)
    leaf = fixed.get_coreset(fixed.plan.levels)
    labels = dict(zip(leaf.row_id.tolist(), leaf.labels()))
    assert all(labels[i] == flip[i] for i in flip if i in labels)
    assert sum(i in labels for i in flip) >= 15
    table = {r["rid"]: r["income"] for r in spark.read.format("delta").load(source)
             .where(F.col("rid").isin(list(flip))).collect()}
    assert table == flip
    counts = {r["income"]: r["count"] for r in spark.read.format("delta").load(source).groupBy("income").count().collect()}
    for level in fixed.levels:
        c = fixed.get_coreset(level)
        for i, label in enumerate(c.classes):
            assert c.weight[c.y == i].sum() == pytest.approx(counts[label], rel=1e-9)
    hours = spark.createDataFrame([(sampled[11], 99)], "rid long, `hours-per-week` long")
    moved = fixed.update_features(hours)
    row = [r for r in moved.level_frame(moved.plan.levels).where(F.col("row_id") == sampled[11]).collect()]
    assert spark.read.format("delta").load(source).where(F.col("rid") == sampled[11]).collect()[0]["hours-per-week"] == 99
    assert not row or row[0]["features"][moved.encoder.feature_names.index("hours-per-week")] > 2  # 99 hours is far out
    moved.save(out)
    back = CoresetTree.load(spark, out)
    same_levels(moved, back)
    assert back.source["version"] == table_version(spark, source)
    with pytest.raises(ConfigError, match="changed since"):
        tree.save(out)  # a stale tree cannot overwrite the newer save


def test_a_failed_save_leaves_the_previous_tree(spark, adult_source, tmp_path):
    path, new, spec = adult_source
    tree = build(spark, path, spec)
    out = str(tmp_path / "tree")
    tree.save(out)
    version = table_version(spark, out)
    grown = CoresetTree.load(spark, out).partial_build(new)

    def fail_halfway(batches):
        for i, batch in enumerate(batches):
            if i >= 1:
                raise RuntimeError("injected failure in the middle of the save")
            yield batch

    from coreset_spark.tree import CORESET_DDL

    broken = grown.levels[grown.plan.levels].repartition(4).mapInArrow(fail_halfway, CORESET_DDL)
    grown.levels[grown.plan.levels] = broken
    with pytest.raises(Exception, match="injected failure"):
        grown.save(out)
    assert table_version(spark, out) == version
    same_levels(tree, CoresetTree.load(spark, out))


SAVE_SCRIPT = r"""
import json, os, sys, time
from coreset_spark.config import SparkSettings
from coreset_spark.coreset import CoresetTree
from coreset_spark.spark.session import get_spark
from coreset_spark.tree import CORESET_DDL
spark = get_spark(SparkSettings(master="local[1]", conf={"spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "2", "spark.databricks.delta.snapshotPartitions": "2"}))
tree = CoresetTree.load(spark, sys.argv[1])
print(json.dumps({"sizes": tree.level_sizes(), "version": tree.store.version}), flush=True)
if sys.argv[2] == "save":
    def slow(batches):
        for batch in batches:
            time.sleep(1.0)
            yield batch
    level = tree.plan.levels
    tree.levels[level] = tree.levels[level].repartition(8).mapInArrow(slow, CORESET_DDL)
    tree.pending = {("tree", level): set(range(tree.plan.n_leaves))}
    print("SAVING", flush=True)
    tree.save(sys.argv[1])
    print("SAVED", flush=True)
"""


def test_killed_save_leaves_the_previous_tree_loadable_in_a_new_session(spark, adult_source, tmp_path):
    path, _, spec = adult_source
    tree = build(spark, path, spec)
    out = str(tmp_path / "tree")
    tree.save(out)
    version = table_version(spark, out)
    script = tmp_path / "save_job.py"
    script.write_text(SAVE_SCRIPT)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    job = subprocess.Popen([sys.executable, str(script), out, "save"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True, env=env, start_new_session=True)
    assert job.stdout is not None
    for line in job.stdout:
        if line.startswith("SAVING"):
            break
    time.sleep(3.0)  # the write is under way (8 partitions, 1 s each on one core)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=60)
    assert table_version(spark, out) == version  # nothing was committed
    same_levels(tree, CoresetTree.load(spark, out))
    check = subprocess.run([sys.executable, str(script), out, "load"], capture_output=True, text=True, env=env,
                           timeout=300)
    seen = json.loads(check.stdout.strip().splitlines()[0])  # a fresh Spark session reads the same tree
    assert {int(k): v for k, v in seen["sizes"].items()} == tree.level_sizes() and seen["version"] == version
    CoresetTree.load(spark, out).mark_seen([1]).save(out)  # and the next save succeeds
    assert table_version(spark, out) == version + 1


def test_cleaning_ranks_flipped_labels_first(spark, data_dir, tmp_path):
    df, spec = datasets.load(spark, "kddcup99", data_dir)
    df = with_row_ids(df.where(F.pmod(F.xxhash64(*df.columns), F.lit(25)) == 0), "rid").cache()
    flip = F.pmod(F.col("rid"), F.lit(50)) == 7  # 2% of the labels flipped
    noisy = df.withColumn("is_attack", F.when(flip, 1 - F.col("is_attack")).otherwise(F.col("is_attack")))
    flipped = {r["rid"] for r in df.where(flip).select("rid").collect()}
    n = df.count()
    tree = build_tree(noisy, DataSpec(target="is_attack", row_id="rid"),
                      CoresetParams(size=1000, seed=1, fanin=4, levels=1))
    review = tree.suspicious_rows(n=int(0.02 * n))
    hits = review.row_id.isin(flipped).mean()
    assert hits > 3 * 0.02  # the review finds flipped rows far more often than a random 2% would
    assert review.score.is_monotonic_decreasing
    seen = tree.mark_seen(review.row_id[:20])
    again = seen.suspicious_rows(n=20)
    assert not again.row_id.isin(review.row_id[:20]).any()
    per = tree.suspicious_rows(per_class={0: 5, 1: 7})
    assert sorted(per.label.value_counts().to_dict().items()) == [(0, 5), (1, 7)]
    with pytest.raises(ConfigError, match="not classes"):
        tree.suspicious_rows(per_class={"x": 1})
