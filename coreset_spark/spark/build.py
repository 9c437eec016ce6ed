"""Build a coreset tree in Spark with DataFrame operations only (no RDD API).

Passes over the input:

1. statistics (:func:`coreset_spark.spark.frame.compute_stats`): counts, classes, means, scales, levels;
2. the family's global passes (:attr:`coreset_spark.tree.Sampler.passes`): the Gram matrix of
   [X, 1, t] (logistic, linear, pca, lightweight k-means), one d x d partial per partition; a
   uniform pilot sample collected to the driver (tree pilot model, k-means++ centres); family
   sums (k-means cluster weights and costs);
3. per (leaf, stratum) totals: weight, importance, the row kept for sure;
4. ``mapInArrow`` samples every partition batch by batch into leaves; ``groupBy(node)
   .applyInArrow`` calibrates each leaf and then merges ``fanin`` children per node, level by
   level, up to the root.

Every choice is a function of the row, the seed and global totals, so the result does not depend
on the partitioning or on which task attempt ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, GroupedData
from pyspark.sql import functions as F

from coreset_spark.config import CoresetParams, DataSpec, resolve_task
from coreset_spark.encoding import Encoder
from coreset_spark.spark.frame import Prepared, column, compute_stats, prepare
from coreset_spark.tree import (
    CORESET_DDL,
    CORESET_SCHEMA,
    TOTALS_DDL,
    TOTALS_SCHEMA,
    BuildContext,
    Sampler,
    TreePlan,
    calibrate_leaf,
    gram_of_batches,
    holdout_of_batch,
    leaf_totals,
    pilot_fraction,
    pilot_of_batch,
    reduce_node,
    sample_leaf_batch,
    sums_of_batches,
    totals_of_batch,
    with_pilot_table,
)

if TYPE_CHECKING:
    from coreset_spark.coreset import CoresetTree

Progress = Callable[[str], None]


class Stages:
    """Times named stages and reports them as they finish."""

    def __init__(self, progress: Progress | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.progress = progress or (lambda message: None)

    def run(self, name: str, work: Callable[[], Any]) -> Any:
        """Run ``work`` as stage ``name``."""
        self.progress(f"[coreset] {name} ...")
        start = time.perf_counter()
        result = work()
        self.seconds[name] = round(time.perf_counter() - start, 3)
        self.progress(f"[coreset] {name} done in {self.seconds[name]:.1f} s")
        return result


def _gram(frame: DataFrame, sampler: Sampler) -> np.ndarray:
    d = sampler.encoder.width + 2

    def partial_gram(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        first = next(batches, None)
        if first is None:  # empty partition: nothing to add
            return
        total = gram_of_batches(_chain(first, batches), sampler)
        yield pa.RecordBatch.from_arrays([pa.array([total.reshape(-1)], pa.list_(pa.float64()))], ["gram"])

    parts = frame.mapInArrow(partial_gram, "gram array<double>").toArrow()
    total = np.zeros((d, d))
    for values in parts.column("gram").to_pylist():
        total += np.asarray(values, dtype=np.float64).reshape(d, d)
    return total


def _sums(frame: DataFrame, sampler: Sampler) -> np.ndarray:
    def partial_sums(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        total = sums_of_batches(batches, sampler)
        if total is not None:
            yield pa.RecordBatch.from_arrays([pa.array([total], pa.list_(pa.float64()))], ["sums"])

    parts = frame.mapInArrow(partial_sums, "sums array<double>").toArrow().column("sums").to_pylist()
    return np.sum([np.asarray(p, dtype=np.float64) for p in parts], axis=0)


def _pilot_rows(frame: DataFrame, sampler: Sampler, n_rows: int) -> pa.Table:
    fraction = pilot_fraction(sampler, n_rows)

    def sample(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if batch.num_rows:
                yield from pilot_of_batch(batch, sampler, fraction).to_batches()

    table = frame.mapInArrow(sample, CORESET_DDL).toArrow()
    return table.cast(CORESET_SCHEMA) if table.num_rows else CORESET_SCHEMA.empty_table()


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest


def totals_pass(frame: DataFrame, sampler: Sampler) -> pa.Table:
    """Per (leaf, stratum) of the rows of ``frame``: rows, weight, weighted importance, first row (one job)."""
    def per_batch(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if batch.num_rows:
                yield from totals_of_batch(batch, sampler).to_batches()

    first = F.min(F.struct("first_u", "first_key"))
    grouped = (frame.mapInArrow(per_batch, TOTALS_DDL).groupBy("node", "stratum")
               .agg(F.sum("rows").alias("rows"), F.sum("weight").alias("weight"),
                    F.sum("weighted_importance").alias("weighted_importance"), first.alias("first")))
    rows = grouped.select("node", "stratum", "rows", "weight", "weighted_importance",
                          F.col("first.first_u").alias("first_u"), F.col("first.first_key").alias("first_key"))
    table = rows.toArrow()
    return table.cast(TOTALS_SCHEMA) if table.num_rows else TOTALS_SCHEMA.empty_table()


def by_group(frame: DataFrame, key: Column, groups: int) -> GroupedData:
    """``frame.groupBy(key)`` over at most ``groups`` shuffle partitions.

    A level has few nodes (16 leaves, one root); grouping it over the session's 200 shuffle
    partitions leaves most of them empty, and every later pass over the persisted level pays a
    task per empty partition. The partition count changes only where a node is computed, never
    what (each node's function sorts its rows).
    """
    limit = int(frame.sparkSession.conf.get("spark.sql.shuffle.partitions") or 200)
    return frame.repartition(max(1, min(int(groups), limit)), key).groupBy(key)


def leaf_level(frame: DataFrame, sampler: Sampler, leaf_weight: np.ndarray, keep: np.ndarray) -> DataFrame:
    """The sampled and calibrated leaves of the rows of ``frame`` (lazy)."""
    def sample(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if batch.num_rows:
                out = sample_leaf_batch(batch, sampler, leaf_weight, keep)
                if out.num_rows:
                    yield from out.to_batches()

    def calibrate(table: pa.Table) -> pa.Table:
        return calibrate_leaf(table, sampler, leaf_weight)

    sampled = frame.mapInArrow(sample, CORESET_DDL)
    return by_group(sampled, F.col("node"), sampler.plan.n_leaves).applyInArrow(calibrate, CORESET_DDL)


def merge_level(child: DataFrame, sampler: Sampler, level: int) -> DataFrame:
    """Merge and reduce the rows of level ``level + 1`` into the nodes of ``level``."""
    def merge(table: pa.Table) -> pa.Table:
        return reduce_node(table, sampler, level)

    fanin = sampler.plan.fanin
    parent = F.lit(0).cast("long") if level == 0 else F.floor(F.col("node") / F.lit(fanin)).cast("long")
    return by_group(child, parent.alias("parent"), fanin ** level).applyInArrow(merge, CORESET_DDL)


def holdout_frame(frame: DataFrame, sampler: Sampler) -> DataFrame:
    """The hold-out (validation) rows of the input, encoded, in the coreset schema (level -1)."""
    def held(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if batch.num_rows:
                out = holdout_of_batch(batch, sampler)
                if out.num_rows:
                    yield from out.to_batches()

    return frame.mapInArrow(held, CORESET_DDL)


def materialise(frame: DataFrame) -> DataFrame:
    """Persist a frame and compute it now (so later steps and timings see it done)."""
    frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
    frame.count()
    return frame


def build_tree(df: DataFrame, spec: DataSpec, params: CoresetParams, progress: Progress | None = None,
               source: dict[str, Any] | None = None) -> CoresetTree:
    """Build the coreset tree of ``df`` and keep every level (persisted in Spark).

    >>> # tree = build_tree(df, DataSpec(target="is_attack"), CoresetParams(size=2000, seed=1))
    >>> # tree.level_sizes()          -> {0: 1987, 1: 15840, 2: 127512}
    >>> # coreset = tree.get_coreset(0)
    """
    from coreset_spark.coreset import CoresetTree

    stages = Stages(progress)
    task = resolve_task(spec, params)
    prepared: Prepared = prepare(df, spec)
    stats, classes, prepared = stages.run("statistics pass", lambda: compute_stats(prepared, spec, task))
    factors = params.class_factors(list(classes), stats.target_counts) if task == "classification" else []
    if params.class_weight is not None and task == "classification":
        factor = F.element_at(F.array(*[F.lit(f) for f in factors]), F.col("_class").cast("int") + 1)
        prepared = replace(prepared, frame=prepared.frame.withColumn("_weight", F.col("_weight") * factor))
    encoder = Encoder.fit(stats, prepared.columns.numeric, prepared.columns.categorical,
                          spec.rare_level_fraction, spec.max_levels)
    task_encoder, names = encoder.with_safe_names()
    frame = prepared.frame.select("_row_id", "_class", "_weight", "_target",
                                  *[column(c).alias(f"_c{i}") for i, c in enumerate(names)])
    plan = TreePlan.choose(stats.n_rows, params.size, params.fanin, params.leaf_fraction, params.levels)
    sampler = Sampler.create(params.family, task_encoder, plan, len(classes), params.seed,
                             params.alpha, params.min_per_class, task, params)
    gram = sums = pilot = None
    for name in sampler.passes:
        if name == "gram":
            gram = stages.run("Gram pass", lambda: _gram(frame, sampler))
            sampler = sampler.with_gram(gram)
        elif name == "pilot":
            pilot = stages.run("pilot sample", lambda: _pilot_rows(frame, sampler, stats.n_rows))
            sampler = stages.run("pilot model", lambda: with_pilot_table(sampler, pilot))
        elif name == "sums":
            sums = stages.run(f"{params.family} sums pass", lambda: _sums(frame, sampler))
            sampler = sampler.with_sums(sums)
    totals = stages.run("importance totals pass", lambda: totals_pass(frame, sampler))
    leaf_weight, keep, s_total, w_total = leaf_totals(totals, sampler)
    sampler = sampler.with_totals(s_total, w_total)
    context = BuildContext(leaf_strata=totals, totals=(sampler.total_importance, sampler.total_weight),
                           gram=gram, sums=sums, pilot=pilot)
    levels: dict[int, DataFrame] = {}

    def leaves() -> DataFrame:
        return materialise(leaf_level(frame, sampler, leaf_weight, keep))

    levels[plan.levels] = stages.run(f"sample leaves (level {plan.levels}, {plan.n_leaves} nodes)", leaves)
    node_parts = [stages.run(f"node table (level {plan.levels})", lambda: node_table(levels[plan.levels]))]
    for level in range(plan.levels - 1, -1, -1):
        # Normalise by the child level's own totals (sum w s, sum w), so each level's size is on target.
        context.level_totals[level] = level_totals(node_parts[-1])
        level_sampler = sampler.with_totals(*context.level_totals[level])
        merged = merge_level(levels[level + 1], level_sampler, level)
        levels[level] = stages.run(f"merge level {level} (fan-in {plan.fanin})", partial(materialise, merged))
        node_parts.append(node_table(levels[level]))
    validation = None
    if params.holdout_fraction > 0:
        validation = stages.run("hold-out sample", lambda: materialise(holdout_frame(frame, sampler)))
    nodes = concat_nodes(node_parts)
    batches = [{"batch": 0, "rows": int(np.sum(totals.column("rows").to_numpy())), "weight": w_total,
                "leaves": plan.n_leaves, "source": dict(source or {})}]
    return CoresetTree(levels=levels, nodes=nodes, encoder=encoder, classes=list(classes), spec=spec, task=task,
                       params=params, plan=plan, stats=stats, notes=prepared.notes, timings=stages.seconds,
                       source=dict(source or {}), sampler=sampler, class_factors=factors, context=context,
                       validation=validation, batches=batches)


NODE_SCHEMA = pa.schema([("level", pa.int64()), ("node", pa.int64()), ("rows", pa.int64()),
                         ("represents", pa.float64()), ("weighted_importance", pa.float64())])


def node_table(frame: DataFrame) -> pa.Table:
    """Per node of a level frame: rows kept, the weight they stand for, and sum of weight x importance."""
    table = frame.groupBy("level", "node").agg(
        F.count(F.lit(1)).alias("rows"), F.sum("weight").alias("represents"),
        F.sum(F.col("weight") * F.col("importance")).alias("weighted_importance")).toArrow()
    return table.cast(NODE_SCHEMA) if table.num_rows else NODE_SCHEMA.empty_table()


def level_totals(nodes: pa.Table) -> tuple[float, float]:
    """(sum of weight x importance, sum of weight) over the nodes of a node table."""
    if not nodes.num_rows:
        return 0.0, 0.0
    return (float(np.sum(nodes.column("weighted_importance").to_numpy())),
            float(np.sum(nodes.column("represents").to_numpy())))


def concat_nodes(parts: list[pa.Table]) -> pa.Table:
    """Node tables of several levels as one, sorted by level and node."""
    table = pa.concat_tables([p.cast(NODE_SCHEMA) for p in parts]) if parts else NODE_SCHEMA.empty_table()
    return table.sort_by([("level", "ascending"), ("node", "ascending")])


def empty_coreset_frame(spark: Any) -> DataFrame:
    """An empty frame with the coreset schema (the identity of merge)."""
    return spark.createDataFrame([], CORESET_DDL)


__all__ = ["build_tree", "empty_coreset_frame", "merge_level", "node_table", "CORESET_SCHEMA", "Stages"]
