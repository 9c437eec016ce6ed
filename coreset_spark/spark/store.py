"""Save a coreset tree to one Delta table and load it back in any Spark session.

**Layout.** One Delta table, partitioned by ``part`` and ``level``, in the coreset schema
(:data:`coreset_spark.tree.CORESET_SCHEMA`) plus the column ``part``:

* ``part = 'tree'``: the sampled rows of every level (``level`` 0 is the root), with node, row id,
  target, stratum, weight, input weight, inclusion probability, importance and encoded features;
* ``part = 'strata'`` (level -5): per leaf (``node``) and stratum the input rows (``input_weight``),
  their weight (``weight``), the sum of weight x importance (``importance``) and the row kept for
  sure (``row_id``, its uniform number in ``probability``): what an incremental update needs;
* ``part = 'validation'`` (level -1): the hold-out sample, ``node`` = its leaf;
* ``part = 'pilot'`` (level -2): the pilot sample the family's pilot model is refitted from;
* ``part = 'batch'`` (level -3): ids of the rows added by incremental builds, ``node`` = batch;
* ``part = 'seen'`` (level -4): ids of rows marked as reviewed by cleaning.

Everything else (data specification, encoder, classes, parameters, tree plan, table statistics,
node table, the Gram matrix or family sums, totals, batches, source table and Delta version,
notes) is JSON in the commit's ``userMetadata``: a save is **one Delta transaction**, so a failed
or interrupted save leaves the previous tree readable and unchanged, and every earlier save stays
readable by version (time travel). Saving a loaded tree back to its path writes only the nodes
that changed (``replaceWhere`` on those nodes), in one transaction too.

**Parquet fallback** (``format="parquet"``, no Delta): every save writes a new folder
``save=<n>/`` and then a manifest ``_manifest/save=<n>/`` holding the metadata; loading takes the
highest complete manifest, so an interrupted save leaves the previous one current. Without a
transaction log this relies on the file system's job commit (a ``_SUCCESS`` marker).

>>> # tree.save("/tables/events_coreset"); tree = CoresetTree.load(spark, "/tables/events_coreset")
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from coreset_spark.config import ConfigError, CoresetParams, DataSpec, from_mapping
from coreset_spark.encoding import Encoder
from coreset_spark.metadata import (
    FORMAT_VERSION,
    columns_to_table,
    list_to_matrix,
    matrix_to_list,
    stats_from_dict,
    stats_to_dict,
    table_to_columns,
    tag,
    untag,
)
from coreset_spark.tree import (
    COLUMNS,
    CORESET_SCHEMA,
    TOTALS_SCHEMA,
    BuildContext,
    Sampler,
    TreePlan,
    restore_sampler,
)

if TYPE_CHECKING:
    from coreset_spark.coreset import CoresetTree

PART_LEVELS = {"validation": -1, "pilot": -2, "batch": -3, "seen": -4, "strata": -5}
STORED_COLUMNS = ("part", *COLUMNS)
MARKER = "coreset_spark"


# ---------------------------------------------------------------------------------------------
# Arrow forms of the bookkeeping parts


def strata_rows(strata: pa.Table) -> pa.Table:
    """Leaf strata (TOTALS_SCHEMA) in the stored coreset schema (``part = 'strata'``)."""
    n = strata.num_rows
    return pa.table({
        "level": pa.array(np.full(n, PART_LEVELS["strata"]), pa.int64()), "node": strata.column("node"),
        "row_id": strata.column("first_key"), "target": pa.array(np.zeros(n)), "stratum": strata.column("stratum"),
        "weight": strata.column("weight"), "input_weight": pa.array(strata.column("rows").to_numpy().astype(float)),
        "probability": strata.column("first_u"), "importance": strata.column("weighted_importance"),
        "features": pa.array([[] for _ in range(n)], pa.list_(pa.float64())),
    }, schema=CORESET_SCHEMA)


def strata_from_rows(table: pa.Table) -> pa.Table:
    """Inverse of :func:`strata_rows`."""
    table = table.sort_by([("node", "ascending"), ("stratum", "ascending")])
    return pa.table({
        "node": table.column("node"), "stratum": table.column("stratum"),
        "rows": pa.array(table.column("input_weight").to_numpy().astype(np.int64)),
        "weight": table.column("weight"), "weighted_importance": table.column("importance"),
        "first_u": table.column("probability"), "first_key": table.column("row_id"),
    }, schema=TOTALS_SCHEMA)


def id_rows(ids: np.ndarray, part: str, node: np.ndarray | int = 0) -> pa.Table:
    """Row ids (batch index, seen marks) in the stored coreset schema."""
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids)
    nodes = np.broadcast_to(np.asarray(node, dtype=np.int64), (n,))
    zeros = np.zeros(n)
    return pa.table({
        "level": np.full(n, PART_LEVELS[part], np.int64), "node": nodes, "row_id": ids, "target": zeros,
        "stratum": np.zeros(n, np.int64), "weight": zeros, "input_weight": zeros, "probability": zeros,
        "importance": zeros, "features": pa.array([[] for _ in range(n)], pa.list_(pa.float64())),
    }, schema=CORESET_SCHEMA)


def _frame_of(spark: SparkSession, table: pa.Table) -> DataFrame:
    from coreset_spark.tree import CORESET_DDL

    if not table.num_rows:
        return spark.createDataFrame([], CORESET_DDL)
    return spark.createDataFrame(table.to_pandas(), CORESET_DDL)


def _with_part(frame: DataFrame, part: str) -> DataFrame:
    return frame.select(F.lit(part).alias("part"), *COLUMNS)


# ---------------------------------------------------------------------------------------------
# Metadata


def tree_metadata(tree: CoresetTree) -> dict[str, Any]:
    """The JSON the save's commit carries: the lineage plus what loading and updating need."""
    context = tree.context
    meta = dict(tree.lineage())
    meta[MARKER] = FORMAT_VERSION
    meta["tree"] = {
        "classes": [tag(c) for c in tree.classes],
        "stats": stats_to_dict(tree.stats),
        "nodes": table_to_columns(tree.nodes),
        "timings": tree.timings,
        "batches": tree.batches,
        "has_validation": tree.validation is not None,
        "context": None if context is None else {
            "totals": list(context.totals),
            "level_totals": {str(k): list(v) for k, v in context.level_totals.items()},
            "gram": matrix_to_list(context.gram), "sums": matrix_to_list(context.sums),
            "has_pilot": context.pilot is not None,
        },
    }
    return meta


def _spec_of(values: dict[str, Any]) -> DataSpec:
    return from_mapping(DataSpec, values, "data")


def _params_of(values: dict[str, Any]) -> CoresetParams:
    return from_mapping(CoresetParams, values, "coreset")


# ---------------------------------------------------------------------------------------------
# Save


def _is_delta(spark: SparkSession, path: str) -> bool:
    from delta.tables import DeltaTable

    return bool(DeltaTable.isDeltaTable(spark, path))


def table_version(spark: SparkSession, path: str) -> int:
    """The latest version of the Delta table at ``path``."""
    from delta.tables import DeltaTable

    return int(DeltaTable.forPath(spark, path).history(1).select("version").collect()[0]["version"])


def _full_frame(tree: CoresetTree, spark: SparkSession) -> DataFrame:
    parts = [_with_part(tree.levels[level], "tree") for level in sorted(tree.levels)]
    if tree.context is not None:
        parts.append(_with_part(_frame_of(spark, strata_rows(tree.context.leaf_strata)), "strata"))
        if tree.context.pilot is not None:
            pilot = tree.context.pilot
            pilot = pilot.set_column(0, "level", pa.array(np.full(pilot.num_rows, PART_LEVELS["pilot"]), pa.int64()))
            parts.append(_with_part(_frame_of(spark, pilot), "pilot"))
    if tree.validation is not None:
        parts.append(_with_part(tree.validation, "validation"))
    if tree.batch_index is not None:
        parts.append(_with_part(tree.batch_index, "batch"))
    if tree.seen.num_rows:
        parts.append(_with_part(_frame_of(spark, id_rows(tree.seen.column("row_id").to_numpy(), "seen")), "seen"))
    frame = parts[0]
    for part in parts[1:]:
        frame = frame.unionByName(part)
    return frame


def _changed_frame(tree: CoresetTree, spark: SparkSession) -> tuple[DataFrame, str]:
    """The rows of every pending (part, level, nodes) group and the predicate that selects them."""
    clauses, frames = [], []
    for (part, level), nodes in sorted(tree.pending.items()):
        ids = sorted(int(n) for n in nodes)
        if part == "seen":
            clauses.append("(part = 'seen')")
            frames.append(_with_part(_frame_of(spark, id_rows(tree.seen.column("row_id").to_numpy(), "seen")), "seen"))
            continue
        if not ids:
            continue
        where = f"(part = '{part}' AND level = {level} AND node IN ({', '.join(map(str, ids))}))"
        clauses.append(where)
        in_nodes = F.col("node").isin(ids)
        if part == "tree":
            frames.append(_with_part(tree.levels[level].where(in_nodes), part))
        elif part == "validation" and tree.validation is not None:
            frames.append(_with_part(tree.validation.where(in_nodes), part))
        elif part == "batch" and tree.batch_index is not None:
            frames.append(_with_part(tree.batch_index.where(in_nodes), part))
        elif part == "strata" and tree.context is not None:
            strata = tree.context.leaf_strata
            mask = np.isin(strata.column("node").to_numpy(), np.asarray(ids, dtype=np.int64))
            frames.append(_with_part(_frame_of(spark, strata_rows(strata.filter(pa.array(mask)))), part))
    frame = frames[0] if frames else _with_part(_frame_of(spark, CORESET_SCHEMA.empty_table()), "tree")
    for other in frames[1:]:
        frame = frame.unionByName(other)
    return frame, " OR ".join(clauses) if clauses else "false"


def save_tree(tree: CoresetTree, path: str, mode: str = "overwrite", format: str = "delta") -> int:
    """Write ``tree`` to ``path`` (see the module docstring); returns the version written."""
    from coreset_spark.coreset import StoreRef

    if format not in ("delta", "parquet"):
        raise ConfigError(f"format={format!r} is unknown; use delta (default) or parquet")
    if mode not in ("overwrite", "error"):
        raise ConfigError(f"mode={mode!r} is unknown; use overwrite (replace the saved tree) or error")
    spark = tree.levels[0].sparkSession
    meta = json.dumps(tree_metadata(tree), default=str)
    if format == "parquet":
        version = _save_parquet(tree, spark, path, meta, mode)
        tree.store, tree.pending = StoreRef(path, "parquet", version), {}
        return version
    exists = _is_delta(spark, path)
    if exists and mode == "error":
        raise ConfigError(f"a table already exists at {path!r}; use mode='overwrite' or another path")
    incremental = (exists and tree.store is not None and tree.store.format == "delta"
                   and tree.store.path == path)
    if incremental:
        assert tree.store is not None
        current = table_version(spark, path)
        if current != tree.store.version:
            raise ConfigError(f"the tree saved at {path!r} changed since this tree was loaded or saved (version "
                              f"{tree.store.version}, now {current}); load it again before saving")
        if not tree.pending:
            return current
        frame, predicate = _changed_frame(tree, spark)
        (frame.write.format("delta").mode("overwrite").option("replaceWhere", predicate)
         .option("userMetadata", meta).save(path))
    else:
        frame = _full_frame(tree, spark)
        (frame.repartition("part", "level").sortWithinPartitions("node", "row_id")
         .write.format("delta").mode("overwrite").option("overwriteSchema", "true")
         .option("userMetadata", meta).partitionBy("part", "level").save(path))
    version = table_version(spark, path)
    tree.store, tree.pending = StoreRef(path, "delta", version), {}
    return version


def _save_parquet(tree: CoresetTree, spark: SparkSession, path: str, meta: str, mode: str) -> int:
    previous = _parquet_saves(spark, path)
    if previous and mode == "error":
        raise ConfigError(f"a saved tree already exists at {path!r}; use mode='overwrite' or another path")
    version = (max(previous) + 1) if previous else 0
    _full_frame(tree, spark).write.mode("error").partitionBy("part", "level").parquet(f"{path}/save={version}")
    spark.createDataFrame([(meta,)], "metadata string").coalesce(1).write.mode("error").json(
        f"{path}/_manifest/save={version}")
    return version


def _parquet_saves(spark: SparkSession, path: str) -> dict[int, str]:
    try:
        rows = spark.read.json(f"{path}/_manifest").select("save", "metadata").collect()
    except Exception:  # noqa: BLE001 - no manifest folder: nothing saved yet
        return {}
    return {int(r["save"]): r["metadata"] for r in rows}


# ---------------------------------------------------------------------------------------------
# Load


def latest_save(spark: SparkSession, path: str, version: int | None = None) -> tuple[int, dict[str, Any]]:
    """The version and metadata of the latest save of a coreset tree at ``path`` (or of ``version``)."""
    from delta.tables import DeltaTable

    if not _is_delta(spark, path):
        raise ConfigError(f"no Delta table at {path!r}; save a tree there first (tree.save(path)), or check the path")
    history = DeltaTable.forPath(spark, path).history().select("version", "userMetadata")
    if version is not None:
        history = history.where(F.col("version") == version)
    rows = history.where(F.col("userMetadata").isNotNull()).orderBy(F.desc("version")).limit(50).collect()
    for row in rows:
        meta = json.loads(row["userMetadata"])
        if isinstance(meta, dict) and ("tree" in meta or "level_sizes" in meta):
            return int(row["version"]), meta
    what = f"version {version}" if version is not None else "any version"
    raise ConfigError(f"the Delta table at {path!r} holds no coreset tree ({what} lacks its metadata); "
                      "it was not written by CoresetTree.save")


def load_tree(spark: SparkSession, path: str, version: int | None = None) -> CoresetTree:
    """Read a tree saved by :func:`save_tree`: levels as lazy Delta reads pinned to the save's version."""
    if _is_delta(spark, path):
        v, meta = latest_save(spark, path, version)
        table = spark.read.format("delta").option("versionAsOf", v).load(path)
        fmt = "delta"
    else:
        saves = _parquet_saves(spark, path)
        if not saves:
            raise ConfigError(f"no saved coreset tree at {path!r} (neither a Delta table nor a Parquet save with "
                              "a manifest); check the path")
        v = max(saves) if version is None else int(version)
        if v not in saves:
            raise ConfigError(f"no save {v} at {path!r}; saves there: {sorted(saves)}")
        meta = json.loads(saves[v])
        table = spark.read.parquet(f"{path}/save={v}")
        fmt = "parquet"
    if MARKER not in meta:
        raise ConfigError(f"the tree at {path!r} was saved by an older coreset_spark without the metadata needed to "
                          "load it; rebuild it and save it again")
    return _tree_from(table, meta, path, fmt, v)


def _tree_from(table: DataFrame, meta: dict[str, Any], path: str, fmt: str, version: int) -> CoresetTree:
    from coreset_spark.coreset import CoresetTree, StoreRef
    from coreset_spark.spark.build import NODE_SCHEMA

    info = meta["tree"]
    spec = _spec_of(meta["spec"])
    params = _params_of(meta["params"])
    plan = TreePlan(**meta["plan"])
    encoder = Encoder.from_dict(meta["encoder"])
    classes = [untag(c) for c in info["classes"]]
    stats = stats_from_dict(info["stats"])

    def part(name: str) -> DataFrame:
        return table.where(F.col("part") == name).select(*COLUMNS)

    tree_rows = part("tree")
    levels = {int(k): tree_rows.where(F.col("level") == int(k)) for k in meta["level_sizes"]}
    ctx = info.get("context")
    context = None
    if ctx is not None:
        strata = strata_from_rows(part("strata").toArrow())
        pilot = None
        if ctx.get("has_pilot"):
            pilot = part("pilot").toArrow().cast(CORESET_SCHEMA).sort_by("row_id")
            pilot = pilot.set_column(0, "level", pa.array(np.full(pilot.num_rows, -1), pa.int64()))
        context = BuildContext(leaf_strata=strata, totals=(float(ctx["totals"][0]), float(ctx["totals"][1])),
                               level_totals={int(k): (float(a), float(b)) for k, (a, b) in ctx["level_totals"].items()},
                               gram=list_to_matrix(ctx.get("gram")), sums=list_to_matrix(ctx.get("sums")), pilot=pilot)
    task_encoder, _ = encoder.with_safe_names()
    sampler = Sampler.create(params.family, task_encoder, plan, len(classes), params.seed, params.alpha,
                             params.min_per_class, meta["task"], params)
    if context is not None:
        sampler = restore_sampler(sampler, context)
    batches = list(info.get("batches") or [])
    batch_index = part("batch") if len(batches) > 1 else None
    seen = part("seen").select("row_id").toArrow().cast(pa.schema([("row_id", pa.int64())])).sort_by("row_id")
    validation = part("validation") if info.get("has_validation") else None
    tree = CoresetTree(
        levels=levels, nodes=columns_to_table(info["nodes"], NODE_SCHEMA), encoder=encoder, classes=classes,
        spec=spec, params=params, plan=plan, stats=stats, sampler=sampler, notes=list(meta.get("notes") or []),
        timings=dict(info.get("timings") or {}), source=dict(meta.get("source") or {}), task=meta["task"],
        class_factors=list(meta.get("class_factors") or []), context=context, validation=validation,
        batches=batches, batch_index=batch_index, seen=seen, store=StoreRef(path, fmt, version))
    return tree
