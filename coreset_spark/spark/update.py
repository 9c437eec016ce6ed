"""Keep a coreset tree up to date without rebuilding it: add rows, remove rows, fix labels and features.

**What is frozen and what is refreshed.** An update never re-reads the rows the tree was built
from. Frozen at the first build: the encoder (category levels, means and scales: a new category
level maps to ``__other__``, a shifted mean is not re-centred), the classes (a new class is an
error: rebuild), the family's sampling context (Gram matrix, pilot model, k-means centres) and the
totals that normalise inclusion probabilities at the leaves and at every level below the root.
Refreshed: the rows, weights and class counts of every node on a changed path, the root's
normalisation (so the root keeps about ``size`` rows as the data grow), the node table, the
per-leaf strata and the table statistics' row and class counts. Each batch's drift from the frozen
encoding (mean of each standardised column, share of rows in ``__other__``) is recorded in
``tree.batches`` and the notes; when it grows large, rebuild.

* :func:`partial_build` adds a DataFrame of new rows as a new *batch* with leaves of its own
  (:class:`coreset_spark.tree.LeafMap`), re-merges only that batch's path, and re-reduces the root;
  :func:`rows_added_since` finds the rows a Delta table gained since the version the tree records.
* :func:`remove_rows`, :func:`update_targets` and :func:`update_features` change rows by id: the
  change is written to the source Delta table in one transaction (DELETE / MERGE) and the tree
  edits only the leaves holding those rows (:mod:`coreset_spark.incremental`) and re-reduces their
  paths to the root.

Each returns a new tree whose changed nodes are listed in ``pending``; ``tree.save(path)`` on the
path it was loaded from writes just those nodes, in one Delta transaction.

>>> # tree = CoresetTree.load(spark, "/tables/flights_coreset")
>>> # tree = tree.partial_build(spark.read.format("delta").load("/data/flights_today"))
>>> # tree = remove_rows(tree, [17, 42], table="/data/flights"); tree.save("/tables/flights_coreset")
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from coreset_spark.config import ConfigError, DataError, DataSpec
from coreset_spark.encoding import OTHER, TableStats
from coreset_spark.incremental import LeafEdit, LeafStrata, edit_leaf, empty_rows, split_by_leaf
from coreset_spark.spark.build import (
    CORESET_DDL,
    Stages,
    concat_nodes,
    holdout_frame,
    leaf_level,
    level_totals,
    materialise,
    merge_level,
    node_table,
    totals_pass,
)
from coreset_spark.spark.frame import column, prepare, with_classes
from coreset_spark.spark.store import PART_LEVELS, table_version
from coreset_spark.tree import (
    CORESET_SCHEMA,
    TOTALS_SCHEMA,
    LeafMap,
    Rows,
    Sampler,
    encode_batch,
    holdout_mask,
    leaf_totals,
)

if TYPE_CHECKING:
    from coreset_spark.coreset import CoresetTree

Progress = Callable[[str], None]


# ---------------------------------------------------------------------------------------------
# New rows in the tree's encoding


def encoded_input(tree: CoresetTree, df: DataFrame) -> DataFrame:
    """``df`` in the form the tree's samplers read: ``_row_id``, ``_class``, ``_weight``, ``_target``
    and the feature columns as ``_c0, _c1, ...`` (frozen encoder, classes and class factors).

    Rows with a null target are kept here (``_class`` null); :func:`check_input` counts them.
    """
    spec = replace(tree.spec, features=tuple(tree.encoder.input_columns), categorical=tuple(tree.encoder.categorical))
    prepared = prepare(df, spec)
    frame = prepared.frame
    if tree.task == "classification":
        frame = with_classes(prepared, tree.classes)
        target = F.col("_class").cast("double")
        if tree.class_factors and tree.params.class_weight is not None:
            factor = F.element_at(F.array(*[F.lit(f) for f in tree.class_factors]), F.col("_class").cast("int") + 1)
            frame = frame.withColumn("_weight", F.when(F.col("_class") >= 0, F.col("_weight") * factor)
                                     .otherwise(F.col("_weight")))
    elif tree.task == "regression":
        value = column(str(tree.spec.target)).cast("double")
        frame = frame.withColumn("_class", F.lit(0).cast("long"))
        target = F.when(~F.isnan(value), value)
    else:
        frame = frame.withColumn("_class", F.lit(0).cast("long"))
        target = F.lit(0.0)
    names = tree.encoder.input_columns
    return frame.select("_row_id", "_class", F.col("_weight").cast("double").alias("_weight"),
                        target.alias("_target"), *[column(c).alias(f"_c{i}") for i, c in enumerate(names)])


def check_input(tree: CoresetTree, frame: DataFrame, what: str) -> tuple[DataFrame, dict[str, float]]:
    """Refuse rows the tree cannot take (clear errors); drop null targets only when the spec says so.

    Returns the usable rows and their counts: rows, weight, excluded (null target).
    """
    w = F.col("_weight")
    bad_target = F.col("_target").isNull()
    row = frame.agg(
        F.count(F.lit(1)).alias("rows"), F.sum(w).alias("weight"),
        F.sum(F.when(bad_target, 1).otherwise(0)).alias("null_target"),
        F.sum(F.when(F.col("_class") < 0, 1).otherwise(0)).alias("unseen"),
        F.sum(F.when(F.col("_row_id").isNull(), 1).otherwise(0)).alias("null_id"),
        F.sum(F.when(w.isNull() | (w < 0) | F.isnan(w) | (w == F.lit(float("inf"))), 1).otherwise(0)).alias("bad_weight"),
    ).collect()[0]
    target = tree.spec.target
    if row["unseen"]:
        labels = [r[0] for r in frame.where(F.col("_class") < 0).limit(5).collect()]
        raise DataError(f"{what}: {row['unseen']} rows have a target {target!r} value that is not one of the tree's "
                        f"classes {[str(c) for c in tree.classes][:10]} (row ids {labels}); a new class needs a rebuild "
                        "(build_tree)")
    if row["null_id"]:
        raise DataError(f"{what}: row id column {tree.spec.row_id!r} has {row['null_id']} null values; fill them")
    if row["bad_weight"]:
        raise DataError(f"{what}: weight column {tree.spec.weight!r} has {row['bad_weight']} null, NaN, infinite or "
                        "negative values; weights must be finite non-negative numbers")
    excluded = int(row["null_target"] or 0)
    if excluded and not tree.spec.drop_null_target:
        raise DataError(f"{what}: target column {target!r} has {excluded} null values; fix them, or set "
                        "data.drop_null_target: true to exclude those rows (they are counted)")
    if excluded:
        frame = frame.where(~bad_target)
    if tree.spec.row_id is not None and row["rows"]:
        repeated = frame.groupBy("_row_id").count().where(F.col("count") > 1).limit(5).collect()
        if repeated:
            raise DataError(f"{what}: row id column {tree.spec.row_id!r} repeats values (internal ids "
                            f"{[r['_row_id'] for r in repeated]}); ids must be unique")
    return frame, {"rows": float(row["rows"] or 0) - excluded, "weight": float(row["weight"] or 0.0),
                   "excluded": float(excluded)}


def _rows_of(frame: DataFrame, sampler: Sampler) -> Rows:
    table = frame.toArrow()
    if not table.num_rows:
        return empty_rows(sampler.encoder.width)
    return encode_batch(table.sort_by("_row_id"), sampler.encoder)


def _drift(leaves: pa.Table, tree: CoresetTree) -> dict[str, float]:
    """Weighted mean of each standardised numeric column and the share of ``__other__`` per categorical
    in a batch's leaf sample: how far the batch is from the frozen encoding."""
    from coreset_spark.tree import features_matrix

    if not leaves.num_rows:
        return {}
    x = features_matrix(leaves, tree.encoder.width)
    w = leaves.column("weight").to_numpy()
    means = (w[:, None] * x).sum(axis=0) / w.sum()
    names = tree.encoder.feature_names
    out = {f"mean_std_units[{n}]": round(float(means[i]), 4) for i, n in enumerate(tree.encoder.numeric)}
    for j, name in enumerate(names):
        if name.endswith("=" + OTHER):
            out[f"share[{name}]"] = round(float(means[j]), 4)
    return out


# ---------------------------------------------------------------------------------------------
# Adding rows


def _require_context(tree: CoresetTree) -> None:
    if tree.context is None or not tree.batches:
        raise ConfigError("this tree has no build context (it was built or saved by an older coreset_spark); "
                          "rebuild it with build_tree to update it incrementally")


def partial_build(tree: CoresetTree, new_rows: DataFrame, source: Mapping[str, Any] | None = None,
                  progress: Progress | None = None) -> CoresetTree:
    """Add ``new_rows`` to the tree as a new batch; recompute only the batch's leaves, its path and the root.

    ``source`` (e.g. ``{"format": "delta", "path": ..., "version": 13}``) becomes the tree's source
    lineage and the batch's record. An empty ``new_rows`` returns the tree unchanged (with a note).
    """
    _require_context(tree)
    assert tree.context is not None
    stages = Stages(progress)
    b = int(max(batch["batch"] for batch in tree.batches)) + 1
    frame = encoded_input(tree, new_rows)
    frame, counts = stages.run("check new rows", lambda: check_input(tree, frame, "partial_build"))
    if counts["rows"] <= 0:
        note = "partial_build: no new rows; the tree is unchanged"
        return replace(tree, notes=[*tree.notes, note], pending=dict(tree.pending))
    plan = tree.plan
    first_weight = float(tree.batches[0]["weight"])
    leaf_map = LeafMap.for_batch(plan, b, counts["weight"], first_weight)
    sampler = replace(tree.sampler, leaves=leaf_map)
    strata = stages.run("importance totals (new rows)", lambda: totals_pass(frame, sampler))
    leaf_weight, keep, _, _ = leaf_totals(strata, sampler)
    new_levels: dict[int, DataFrame] = {}
    new_levels[plan.levels] = stages.run(f"sample {leaf_map.count} new leaves",
                                         lambda: materialise(leaf_level(frame, sampler, leaf_weight, keep)))
    node_parts = [node_table(new_levels[plan.levels])]
    for level in range(plan.levels - 1, 0, -1):
        level_sampler = sampler.with_totals(*tree.context.level_totals[level])
        merged = merge_level(new_levels[level + 1], level_sampler, level)
        new_levels[level] = stages.run(f"merge new level {level}", lambda: materialise(merged))
        node_parts.append(node_table(new_levels[level]))
    level_one = tree.levels[1].unionByName(new_levels[1])
    old_nodes = tree.nodes.filter(pa.array(tree.nodes.column("level").to_numpy() > 0))
    one_nodes = concat_nodes([old_nodes, *node_parts])
    one_nodes = one_nodes.filter(pa.array(one_nodes.column("level").to_numpy() == 1))
    root_totals = level_totals(one_nodes)
    root = stages.run("re-reduce the root", lambda: materialise(
        merge_level(level_one, sampler.with_totals(*root_totals), 0)))
    node_parts.append(node_table(root))
    levels = {0: root, **{k: tree.levels[k].unionByName(new_levels[k]) for k in range(1, plan.levels + 1)}}
    nodes = concat_nodes([old_nodes, *node_parts])
    context = replace(tree.context, leaf_strata=pa.concat_tables([tree.context.leaf_strata, strata.cast(TOTALS_SCHEMA)]),
                      level_totals={**tree.context.level_totals, 0: root_totals})
    ids = frame.select("_row_id")
    batch_rows = ids.select(F.lit(PART_LEVELS["batch"]).cast("long").alias("level"), F.lit(b).cast("long").alias("node"),
                            F.col("_row_id").alias("row_id"), F.lit(0.0).alias("target"), F.lit(0).cast("long").alias("stratum"),
                            F.lit(0.0).alias("weight"), F.lit(0.0).alias("input_weight"), F.lit(0.0).alias("probability"),
                            F.lit(0.0).alias("importance"), F.array().cast("array<double>").alias("features"))
    batch_rows = stages.run("record the batch's row ids", lambda: materialise(batch_rows))
    batch_index = batch_rows if tree.batch_index is None else tree.batch_index.unionByName(batch_rows)
    pending = _merge_pending(tree.pending, {("tree", 0): {0}, ("strata", PART_LEVELS["strata"]): set(leaf_map.ids.tolist()),
                                            ("batch", PART_LEVELS["batch"]): {b}})
    for level in range(1, plan.levels + 1):
        start, stop = plan.batch_range(b, level)
        pending = _merge_pending(pending, {("tree", level): set(range(start, stop))})
    validation = tree.validation
    if sampler.holdout > 0:
        held = stages.run("hold-out rows of the batch", lambda: materialise(holdout_frame(frame, sampler)))
        validation = held if validation is None else validation.unionByName(held)
        pending = _merge_pending(pending, {("validation", PART_LEVELS["validation"]): set(leaf_map.ids.tolist())})
    drift = _drift(new_levels[plan.levels].toArrow(), tree)
    record = {"batch": b, "rows": int(counts["rows"]), "weight": counts["weight"], "leaves": leaf_map.count,
              "excluded_rows": int(counts["excluded"]), "source": dict(source or {}), "drift": drift,
              "added": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    notes = [*tree.notes, f"batch {b}: {int(counts['rows'])} rows in {leaf_map.count} new leaves; drift from the frozen "
             f"encoding {drift}"]
    if counts["excluded"]:
        notes.append(f"batch {b}: excluded {int(counts['excluded'])} rows with a null target")
    stats = _stats_plus(tree, frame, counts)
    return replace(tree, levels=levels, nodes=nodes, context=context, batches=[*tree.batches, record],
                   batch_index=batch_index, validation=validation, pending=pending, notes=notes, stats=stats,
                   source=dict(source) if source else dict(tree.source),
                   timings={f"partial_build {k}": v for k, v in stages.seconds.items()})


def _stats_plus(tree: CoresetTree, frame: DataFrame, counts: Mapping[str, float]) -> TableStats:
    """Row and class counts of the tree's statistics with a batch's added (the encoder stays frozen)."""
    target_counts = dict(tree.stats.target_counts)
    if tree.task == "classification":
        for row in frame.groupBy("_class").agg(F.sum("_weight").alias("w")).collect():
            label = tree.classes[int(row["_class"])]
            target_counts[label] = target_counts.get(label, 0.0) + float(row["w"])
    return replace(tree.stats, n_rows=tree.stats.n_rows + int(counts["rows"]),
                   weight_total=tree.stats.weight_total + float(counts["weight"]), target_counts=target_counts)


def _merge_pending(a: Mapping[tuple[str, int], set[int]], b: Mapping[tuple[str, int], set[int]]
                   ) -> dict[tuple[str, int], set[int]]:
    out = {k: set(v) for k, v in a.items()}
    for k, v in b.items():
        out.setdefault(k, set()).update(v)
    return out


def rows_added_since(spark: SparkSession, path: str, version: int, row_id: str | None = None
                     ) -> tuple[DataFrame, int]:
    """The rows the Delta table at ``path`` gained after ``version``, and its latest version.

    With the change data feed enabled on the table (``delta.enableChangeDataFeed``) the inserts are
    read from it; otherwise the rows whose ``row_id`` is not in the old version (an anti-join).
    """
    latest = table_version(spark, path)
    if latest <= version:
        current = spark.read.format("delta").option("versionAsOf", latest).load(path)
        return current.limit(0), latest
    current = spark.read.format("delta").option("versionAsOf", latest).load(path)
    props = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").select("properties").collect()[0]["properties"] or {}
    if str(props.get("delta.enableChangeDataFeed", "false")).lower() == "true":
        changes = (spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", version + 1)
                   .option("endingVersion", latest).load(path))
        added = changes.where(F.col("_change_type") == "insert").select(*current.columns)
        return added, latest
    if row_id is None:
        raise ConfigError(f"the table {path!r} has no change data feed, so the rows added since version {version} are "
                          "found by their ids: set data.row_id, or enable delta.enableChangeDataFeed on the table")
    old = spark.read.format("delta").option("versionAsOf", version).load(path).select(column(row_id))
    return current.join(old, on=row_id, how="left_anti"), latest


def partial_build_from_table(tree: CoresetTree, path: str | None = None, progress: Progress | None = None
                             ) -> CoresetTree:
    """Add the rows the tree's source Delta table gained since the version the tree records."""
    spark = tree.levels[0].sparkSession
    path, version = _source_table(tree, path)
    added, latest = rows_added_since(spark, path, version, tree.spec.row_id)
    return partial_build(tree, added, source={"format": "delta", "path": path, "version": latest,
                                               "since_version": version}, progress=progress)


# ---------------------------------------------------------------------------------------------
# Changing rows by id


def _source_table(tree: CoresetTree, path: str | None) -> tuple[str, int]:
    source = tree.source or {}
    path = path or (source.get("path") if source.get("format") == "delta" else None)
    if not path:
        raise ConfigError("this tree records no Delta source table; pass table=<path of the Delta table it was built "
                          "from>")
    version = source.get("version") if source.get("path") == path else None
    if version is None:
        raise ConfigError(f"this tree does not record which version of {path!r} it reflects; build it from the table "
                          "with read_source (which records the version) or pass source={'format': 'delta', 'path': "
                          "..., 'version': ...} to build_tree")
    return str(path), int(version)


def _require_ids(tree: CoresetTree) -> str:
    if tree.spec.row_id is None:
        raise ConfigError("changing rows by id needs data.row_id (a unique id column in the source table); without "
                          "it a row's id is a hash of its values, which a change would alter")
    return tree.spec.row_id


def _current_rows(tree: CoresetTree, path: str, version: int, ids: list[Any]) -> DataFrame:
    """The source rows with these ids, checked: the table is at the tree's version and every id exists."""
    spark = tree.levels[0].sparkSession
    row_id = _require_ids(tree)
    latest = table_version(spark, path)
    if latest != version:
        raise ConfigError(f"the table {path!r} is at version {latest} but the tree reflects version {version}; bring "
                          "the tree up to date first (partial_build_from_table), or rebuild it")
    if not ids:
        raise DataError("no row ids given; pass the ids of the rows to change")
    if len(set(ids)) != len(ids):
        raise DataError(f"row ids repeat in the request ({len(ids) - len(set(ids))} repeated); give each id once")
    current = spark.read.format("delta").option("versionAsOf", version).load(path)
    found = current.where(column(row_id).isin(list(ids)))
    present = {r[0] for r in found.select(column(row_id)).collect()}
    missing = [i for i in ids if i not in present]
    if missing:
        raise DataError(f"{len(missing)} of the {len(ids)} row ids are not in {path!r} (column {row_id!r}), e.g. "
                        f"{missing[:5]}; nothing was changed")
    return found


def _leaf_of_rows(tree: CoresetTree, keys: np.ndarray) -> np.ndarray:
    """The leaf of each row key: batch 0's hash leaves, or the leaves of the batch that added the row."""
    batch_of = np.zeros(len(keys), np.int64)
    if tree.batch_index is not None and len(keys):
        rows = tree.batch_index.where(F.col("row_id").isin([int(k) for k in keys])).select("row_id", "node").collect()
        lookup = {int(r["row_id"]): int(r["node"]) for r in rows}
        batch_of = np.array([lookup.get(int(k), 0) for k in keys], np.int64)
    records = {int(b["batch"]): b for b in tree.batches}
    leaves = np.zeros(len(keys), np.int64)
    for b in np.unique(batch_of):
        mask = batch_of == b
        record = records[int(b)]
        leaves[mask] = LeafMap(int(b), int(b) * tree.plan.n_leaves, int(record["leaves"])).leaves(keys[mask])
    return leaves


def _edit_tree(tree: CoresetTree, removed: Rows, added: Rows, stages: Stages) -> CoresetTree:
    """Apply leaf edits (rows leaving, rows joining) and re-reduce their paths to the root."""
    _require_context(tree)
    assert tree.context is not None
    sampler, plan = tree.sampler, tree.plan
    held_r = holdout_mask(removed.keys, sampler.seed, sampler.holdout)
    held_a = holdout_mask(added.keys, sampler.seed, sampler.holdout)
    pending: dict[tuple[str, int], set[int]] = dict(tree.pending)
    validation = tree.validation
    stats = _stats_changed(tree, removed, added)
    if (held_r.any() or held_a.any()) and validation is not None:
        validation, touched = _edit_validation(tree, _subset(removed, held_r), _subset(added, held_a))
        pending = _merge_pending(pending, {("validation", PART_LEVELS["validation"]): touched})
    removed, added = _subset(removed, ~held_r), _subset(added, ~held_a)
    r_leaf, a_leaf = _leaf_of_rows(tree, removed.keys), _leaf_of_rows(tree, added.keys)
    by_leaf_r, by_leaf_a = split_by_leaf(removed, r_leaf), split_by_leaf(added, a_leaf)
    affected = sorted(set(by_leaf_r) | set(by_leaf_a))
    if not affected:
        return replace(tree, validation=validation, pending=pending, stats=stats)
    width = sampler.encoder.width
    edits = {leaf: LeafEdit(by_leaf_r.get(leaf, empty_rows(width)), by_leaf_a.get(leaf, empty_rows(width)))
             for leaf in affected}
    strata_all = tree.context.leaf_strata
    strata = {leaf: LeafStrata.of_leaf(strata_all, leaf) for leaf in affected}
    new_strata: dict[int, pa.Table] = {}

    def edit(table: pa.Table) -> pa.Table:
        leaf = int(table.column("node")[0].as_py())
        return edit_leaf(table, strata[leaf], edits[leaf], sampler, leaf)[0]

    for leaf in affected:  # the strata (small) on the driver; the leaf rows in Spark
        _, s_new, _ = edit_leaf(CORESET_SCHEMA.empty_table(), strata[leaf], edits[leaf], sampler, leaf)
        new_strata[leaf] = s_new.to_table(leaf)
    leaves_frame = tree.levels[plan.levels].where(F.col("node").isin(affected))
    new_leaves = stages.run(f"edit {len(affected)} leaves", lambda: materialise(
        leaves_frame.groupBy("node").applyInArrow(edit, CORESET_DDL)))
    _check_orphans(tree, new_leaves, new_strata, affected)
    new_levels = {plan.levels: new_leaves}
    changed = {plan.levels: set(affected)}
    nodes_parts = [node_table(new_leaves)]
    for level in range(plan.levels - 1, -1, -1):
        parents = set(plan.parent_of(np.array(sorted(changed[level + 1])), level).tolist())
        changed[level] = parents
        child_level = tree.levels[level + 1]
        untouched = child_level.where(~F.col("node").isin(sorted(changed[level + 1])))
        if level > 0:
            untouched = untouched.where(F.floor(F.col("node") / F.lit(plan.fanin)).cast("long").isin(sorted(parents)))
            totals = tree.context.level_totals[level]
        else:
            old = tree.nodes.filter(pa.array((tree.nodes.column("level").to_numpy() == 1)
                                             & ~np.isin(tree.nodes.column("node").to_numpy(), sorted(changed[1]))))
            ones = [p for p in nodes_parts if p.num_rows and p.column("level")[0].as_py() == 1]
            totals = level_totals(concat_nodes([old, *ones]))
        children = untouched.unionByName(new_levels[level + 1])
        merged = merge_level(children, sampler.with_totals(*totals), level)
        new_levels[level] = stages.run(f"re-reduce {len(parents)} node(s) of level {level}",
                                       lambda: materialise(merged))
        nodes_parts.append(node_table(new_levels[level]))
    levels = {k: (tree.levels[k].where(~F.col("node").isin(sorted(changed[k]))).unionByName(new_levels[k])
                  if k > 0 else new_levels[0]) for k in tree.levels}
    keep_nodes = ~np.zeros(tree.nodes.num_rows, dtype=bool)
    node_level, node_id = tree.nodes.column("level").to_numpy(), tree.nodes.column("node").to_numpy()
    for k, ids in changed.items():
        keep_nodes &= ~((node_level == k) & np.isin(node_id, sorted(ids)))
    nodes = concat_nodes([tree.nodes.filter(pa.array(keep_nodes)), *nodes_parts])
    old_strata_mask = ~np.isin(strata_all.column("node").to_numpy(), affected)
    leaf_strata = pa.concat_tables([strata_all.filter(pa.array(old_strata_mask)), *new_strata.values()])
    context = replace(tree.context, leaf_strata=leaf_strata)
    for k, ids in changed.items():
        pending = _merge_pending(pending, {("tree", k): ids})
    pending = _merge_pending(pending, {("strata", PART_LEVELS["strata"]): set(affected)})
    return replace(tree, levels=levels, nodes=nodes, context=context, validation=validation, pending=pending,
                   stats=stats)


def _stats_changed(tree: CoresetTree, removed: Rows, added: Rows) -> TableStats:
    """Row and class counts after rows left and joined (the encoder's statistics stay frozen)."""
    counts = dict(tree.stats.target_counts)
    if tree.task == "classification":
        for rows, sign in ((removed, -1.0), (added, 1.0)):
            for c, w in zip(rows.classes.tolist(), rows.weight.tolist()):
                label = tree.classes[int(c)]
                counts[label] = counts.get(label, 0.0) + sign * w
    n = tree.stats.n_rows - len(removed.keys) + len(added.keys)
    weight = tree.stats.weight_total - float(removed.weight.sum()) + float(added.weight.sum())
    return replace(tree.stats, n_rows=n, weight_total=weight, target_counts=counts)


def _check_orphans(tree: CoresetTree, leaves: DataFrame, strata: Mapping[int, pa.Table], affected: list[int]) -> None:
    present = {(int(r["node"]), int(r["stratum"])) for r in leaves.select("node", "stratum").distinct().collect()}
    for leaf in affected:
        s = LeafStrata.of_leaf(strata[leaf], leaf)
        lost = [int(c) for c, w in zip(s.stratum, s.weight) if w > 0 and (leaf, int(c)) not in present]
        if lost:
            raise DataError(f"the change leaves stratum(s) {lost} of leaf {leaf} with input rows but no sampled row (its "
                            "row kept for sure was changed or removed); the tree cannot follow without re-reading "
                            "that leaf's input: apply the change to the table and rebuild the tree (build_tree); "
                            "nothing was changed")


def _subset(rows: Rows, mask: np.ndarray) -> Rows:
    return Rows(rows.keys[mask], rows.classes[mask], rows.weight[mask], rows.x[mask], rows.target[mask])


def _edit_validation(tree: CoresetTree, removed: Rows, added: Rows) -> tuple[DataFrame, set[int]]:
    """Hold-out rows leave or join the validation sample (no sampling there: every hold-out row is kept)."""
    from coreset_spark.spark.store import _frame_of
    from coreset_spark.tree import coreset_table

    assert tree.validation is not None
    leaves_r, leaves_a = _leaf_of_rows(tree, removed.keys), _leaf_of_rows(tree, added.keys)
    kept = tree.validation.where(~F.col("row_id").isin([int(k) for k in removed.keys]))
    n = len(added.keys)
    joined = coreset_table(-1, leaves_a, added.keys, added.target, added.classes, added.weight, np.ones(n),
                           np.zeros(n), added.x)
    spark = tree.levels[0].sparkSession
    out = kept.unionByName(_frame_of(spark, joined)) if n else kept
    return materialise(out), set(leaves_r.tolist()) | set(leaves_a.tolist())


def _ids_to_list(ids: Iterable[Any]) -> list[Any]:
    out = []
    for i in ids:
        out.append(i.item() if isinstance(i, np.generic) else i)
    return out


def remove_rows(tree: CoresetTree, ids: Iterable[Any], table: str | None = None,
                progress: Progress | None = None) -> CoresetTree:
    """Delete rows by id from the source Delta table (one DELETE transaction) and from the tree.

    Every id must exist in the table at the version the tree reflects, else a :class:`DataError`
    and nothing changes. Only the leaves holding those rows and their paths are recomputed.
    """
    from delta.tables import DeltaTable

    stages = Stages(progress)
    ids = _ids_to_list(ids)
    path, version = _source_table(tree, table)
    row_id = _require_ids(tree)
    current = stages.run("read the rows", lambda: _current_rows(tree, path, version, ids))
    removed = _rows_of(encoded_input(tree, current), tree.sampler)
    updated = _edit_tree(tree, removed, empty_rows(tree.sampler.encoder.width), stages)
    spark = tree.levels[0].sparkSession
    stages.run("DELETE from the table", lambda: DeltaTable.forPath(spark, path).delete(column(row_id).isin(ids)))
    latest = table_version(spark, path)
    return _after_change(updated, tree, path, latest, f"removed {len(ids)} rows", stages)


def update_targets(tree: CoresetTree, targets: Mapping[Any, Any], table: str | None = None,
                   progress: Progress | None = None) -> CoresetTree:
    """Set new target values (``{row id: new label}``) in the source table (one MERGE) and in the tree."""
    stages = Stages(progress)
    target = tree.spec.target
    if target is None:
        raise ConfigError("this tree has no target column (clustering); there are no targets to update")
    changes = {(k.item() if isinstance(k, np.generic) else k): (v.item() if isinstance(v, np.generic) else v)
               for k, v in dict(targets).items()}
    if tree.task == "classification":
        unknown = sorted({str(v) for v in changes.values() if v not in tree.classes})
        if unknown:
            raise DataError(f"new target value(s) {unknown[:5]} are not classes of this tree "
                            f"{[str(c) for c in tree.classes][:10]}; a new class needs a rebuild; nothing was changed")
    return _replace_rows(tree, changes, {target: None}, table, stages, f"updated {len(changes)} targets")


def update_features(tree: CoresetTree, values: DataFrame, table: str | None = None,
                    progress: Progress | None = None) -> CoresetTree:
    """Set new feature values: ``values`` holds the id column and the feature columns to change."""
    stages = Stages(progress)
    row_id = _require_ids(tree)
    if row_id not in values.columns:
        raise DataError(f"update_features: the values have no id column {row_id!r}; include it")
    columns = [c for c in values.columns if c != row_id]
    unknown = [c for c in columns if c not in tree.encoder.input_columns]
    if unknown or not columns:
        raise DataError(f"update_features: column(s) {unknown or columns} are not feature columns of this tree "
                        f"{tree.encoder.input_columns}; give the id and feature columns only")
    rows = values.collect()
    changes = {r[row_id]: {c: r[c] for c in columns} for r in rows}
    return _replace_rows(tree, changes, {c: None for c in columns}, table, stages,
                         f"updated features {columns} of {len(changes)} rows")


def _replace_rows(tree: CoresetTree, changes: Mapping[Any, Any], columns: Mapping[str, None], table: str | None,
                  stages: Stages, what: str) -> CoresetTree:
    """Old versions of rows leave the tree, new versions join; the table gets one MERGE."""
    from delta.tables import DeltaTable

    path, version = _source_table(tree, table)
    row_id = _require_ids(tree)
    ids = list(changes)
    current = stages.run("read the rows", lambda: _current_rows(tree, path, version, ids))
    spark = tree.levels[0].sparkSession
    names = list(columns)
    schema = dict(current.dtypes)
    if len(names) == 1 and names[0] == tree.spec.target:
        records = [(k, v) for k, v in changes.items()]
    else:
        records = [(k, *[changes[k][c] for c in names]) for k in ids]
    ddl = ", ".join([f"`{row_id}` {schema[row_id]}", *[f"`{c}` {schema[c]}" for c in names]])
    new_values = spark.createDataFrame(records, ddl)
    renamed = new_values.select(column(row_id).alias("__id"), *[column(c).alias(f"__new{i}") for i, c in enumerate(names)])
    staged = current.join(renamed, on=column(row_id) == F.col("__id"), how="inner")
    replaced = staged.select(*[(F.col(f"__new{names.index(c)}") if c in names else column(c)).alias(c)
                               for c in current.columns])
    old = _rows_of(encoded_input(tree, current), tree.sampler)
    new_frame, _ = check_input(tree, encoded_input(tree, replaced), what)
    new = _rows_of(new_frame, tree.sampler)
    updated = _edit_tree(tree, old, new, stages)
    condition = f"t.`{row_id}` = s.`{row_id}`"
    assignments: dict[str, Any] = {f"`{c}`": f"s.`{c}`" for c in names}
    stages.run("MERGE into the table", lambda: DeltaTable.forPath(spark, path).alias("t").merge(
        new_values.alias("s"), condition).whenMatchedUpdate(set=assignments).execute())
    latest = table_version(spark, path)
    return _after_change(updated, tree, path, latest, what, stages)


def _after_change(updated: CoresetTree, old: CoresetTree, path: str, latest: int, what: str, stages: Stages) -> CoresetTree:
    source = {**dict(old.source), "path": path, "format": "delta", "version": latest}
    return replace(updated, source=source, notes=[*old.notes, f"{what} (table {path!r} now at version {latest})"],
                   timings={f"update {k}": v for k, v in stages.seconds.items()})


__all__ = ["DataSpec", "partial_build", "partial_build_from_table", "remove_rows", "rows_added_since",
           "update_features", "update_targets"]
