"""The driver-side result: a coreset tree and the weighted coreset of one of its levels.

>>> # tree = build_tree(df, spec, CoresetParams(size=2000))
>>> # tree.level_sizes()                 # {0: 1987, 1: 15840, 2: 127512}
>>> # c = tree.get_coreset(level=0)      # the root: the smallest coreset
>>> # LogisticRegression().fit(c.x, c.y, sample_weight=c.weight)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from coreset_spark.config import ConfigError, CoresetParams, DataSpec
from coreset_spark.encoding import Encoder, TableStats
from coreset_spark.tree import BuildContext, Sampler, TreePlan, features_matrix

ROW_ID_SCHEMA = pa.schema([("row_id", pa.int64())])


@dataclass
class Coreset:
    """A weighted coreset on the driver.

    ``x`` holds the encoded features (standardised numerics, one-hot categoricals; see
    ``feature_names``), ``y`` the class index for classification (``classes[y]`` is the label), the
    target value for regression, zeros for clustering; ``weight`` sums to the number of input rows
    (input weight) the coreset stands for, ``row_id`` the source row ids.
    """

    x: np.ndarray
    y: np.ndarray
    weight: np.ndarray
    row_id: np.ndarray
    feature_names: list[str]
    classes: list[Any]
    level: int
    task: str = "classification"

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to_pandas(self) -> pd.DataFrame:
        """Features, ``target`` (the original label), ``weight`` and ``row_id`` as a pandas frame."""
        frame = pd.DataFrame(self.x, columns=self.feature_names)
        frame["target"] = self.labels()
        frame["weight"] = self.weight
        frame["row_id"] = self.row_id
        return frame

    def labels(self) -> list[Any]:
        """The target in its original form: class labels, or the regression values."""
        if self.task == "classification":
            return [self.classes[int(i)] for i in self.y]
        return [float(v) for v in self.y]

    def to_spark(self, spark: SparkSession) -> DataFrame:
        """The coreset as a Spark DataFrame: ``features`` array, ``target``, ``weight``, ``row_id``."""
        table = pa.table({
            "row_id": pa.array(self.row_id, pa.int64()),
            "target": pa.array(self.labels()),
            "weight": pa.array(self.weight, pa.float64()),
            "features": pa.array(list(self.x), pa.list_(pa.float64())),
        })
        return spark.createDataFrame(table.to_pandas())


@dataclass
class StoreRef:
    """Where a tree was last saved or loaded from: path, format and table version."""

    path: str
    format: str
    version: int


@dataclass
class CoresetTree:
    """Every level of a built coreset tree (Spark frames) and what built it.

    Besides the levels, a tree keeps what it needs to be saved, loaded and updated without its
    input: the build ``context`` (global statistics, per-leaf totals), the ``batches`` of rows it
    was built from (batch 0 is the first build, later ones come from :meth:`partial_build`), the
    ids of later batches' rows (``batch_index``), an optional hold-out sample (``validation``), the
    rows marked as reviewed (``seen``), where it is stored (``store``) and which nodes changed since
    (``pending``: ``(part, level) -> nodes``).
    """

    levels: dict[int, DataFrame]
    nodes: pa.Table
    encoder: Encoder
    classes: list[Any]
    spec: DataSpec
    params: CoresetParams
    plan: TreePlan
    stats: TableStats
    sampler: Sampler
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    task: str = "classification"
    class_factors: list[float] = field(default_factory=list)
    context: BuildContext | None = None
    validation: DataFrame | None = None
    batches: list[dict[str, Any]] = field(default_factory=list)
    batch_index: DataFrame | None = None
    seen: pa.Table = field(default_factory=ROW_ID_SCHEMA.empty_table)
    store: StoreRef | None = None
    pending: dict[tuple[str, int], set[int]] = field(default_factory=dict)

    def level_sizes(self) -> dict[int, int]:
        """Rows per level: level 0 is the root (smallest); higher levels are larger and closer to the data."""
        rows = self.nodes.group_by("level").aggregate([("rows", "sum")]).to_pydict()
        return {int(k): int(v) for k, v in sorted(zip(rows["level"], rows["rows_sum"]))}

    def node_table(self) -> pd.DataFrame:
        """One row per node: level, node, rows kept, input rows it stands for, and its children."""
        frame = self.nodes.to_pandas()
        fanin = self.plan.fanin
        present = {(int(r.level), int(r.node)) for r in frame.itertuples()}
        frame["children"] = [
            [c for c in range(int(r.node) * fanin, (int(r.node) + 1) * fanin) if (int(r.level) + 1, c) in present]
            for r in frame.itertuples()
        ]
        return frame

    def level_frame(self, level: int = 0) -> DataFrame:
        """The rows of a level as a Spark DataFrame in the stored schema."""
        if level not in self.levels:
            raise ConfigError(f"level={level!r} does not exist; this tree has levels {sorted(self.levels)} "
                              "(0 is the root, the smallest)")
        return self.levels[level]

    def get_coreset(self, level: int = 0, remove_class_weight: bool = False) -> Coreset:
        """Collect the coreset of ``level`` to the driver (guarded by ``params.max_driver_rows``).

        With ``params.class_weight`` set, the weights include the class factors;
        ``remove_class_weight=True`` divides them back out (weights then sum to the rows per class).
        """
        size = self.level_sizes().get(level)
        frame = self.level_frame(level)
        if size is not None and size > self.params.max_driver_rows:
            raise ConfigError(f"level {level} has {size} rows, more than coreset.max_driver_rows="
                              f"{self.params.max_driver_rows}; use a smaller level number or raise the limit")
        return self._to_coreset(frame.toArrow(), level, remove_class_weight)

    def get_validation(self) -> Coreset:
        """The hold-out sample (``params.holdout_fraction``): uniform rows left out of the tree, each
        with its input weight, for validating models trained on the coreset (level -1)."""
        if self.validation is None:
            raise ConfigError("this tree keeps no hold-out sample; build it with coreset.holdout_fraction > 0 "
                              "(e.g. 0.02)")
        return self._to_coreset(self.validation.toArrow(), -1, False)

    def _to_coreset(self, table: pa.Table, level: int, remove_class_weight: bool) -> Coreset:
        from coreset_spark.tree import CORESET_SCHEMA

        table = (table.cast(CORESET_SCHEMA) if table.num_rows else CORESET_SCHEMA.empty_table()) \
            .sort_by([("row_id", "ascending")])
        target = table.column("target").to_numpy()
        weight = table.column("weight").to_numpy().astype(np.float64)
        if remove_class_weight and self.params.class_weight is not None and self.class_factors:
            weight = weight / np.asarray(self.class_factors)[target.astype(np.int64)]
        return Coreset(
            x=features_matrix(table, self.encoder.width),
            y=target.astype(np.int64) if self.task == "classification" else target.astype(np.float64),
            weight=weight,
            row_id=table.column("row_id").to_numpy().astype(np.int64),
            feature_names=self.encoder.feature_names, classes=list(self.classes), level=level, task=self.task,
        )

    def lineage(self) -> dict[str, Any]:
        """What this coreset came from and how it was built (JSON-ready)."""
        return {
            "source": self.source, "task": self.task, "seed": self.params.seed,
            "class_factors": self.class_factors, "params": self.params.__dict__,
            "spec": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.spec.__dict__.items()},
            "plan": self.plan.__dict__, "rows": self.stats.n_rows, "weight_total": self.stats.weight_total,
            "excluded_rows": self.stats.excluded_rows, "level_sizes": self.level_sizes(),
            "classes": [str(c) for c in self.classes], "encoder": self.encoder.to_dict(), "notes": self.notes,
        }

    def save(self, path: str, mode: str = "overwrite", format: str = "delta") -> int:
        """Save the tree (every level, its metadata and bookkeeping) to ``path``; returns the table version.

        Delta (default): one table, one transaction per save, so a failed or interrupted save leaves
        the previous tree readable and intact. Saving back to the path the tree was loaded from (or
        last saved to) writes only the nodes that changed since (``pending``). ``format="parquet"``
        is the fallback without Delta (a new folder per save and a manifest written last).
        See :mod:`coreset_spark.spark.store`.
        """
        from coreset_spark.spark.store import save_tree

        return save_tree(self, path, mode=mode, format=format)

    @staticmethod
    def load(spark: SparkSession, path: str, version: int | None = None) -> CoresetTree:
        """Load a tree saved by :meth:`save` (the latest save, or the one at table ``version``)."""
        from coreset_spark.spark.store import load_tree

        return load_tree(spark, path, version)

    def partial_build(self, new_rows: DataFrame, source: dict[str, Any] | None = None,
                      progress: Any = None) -> CoresetTree:
        """A new tree with ``new_rows`` added as a batch of new leaves; only their path to the root is
        recomputed. See :func:`coreset_spark.spark.update.partial_build`."""
        from coreset_spark.spark.update import partial_build

        return partial_build(self, new_rows, source=source, progress=progress)

    def partial_build_from_table(self, path: str | None = None, progress: Any = None) -> CoresetTree:
        """A new tree with the rows the source Delta table gained since the version this tree records."""
        from coreset_spark.spark.update import partial_build_from_table

        return partial_build_from_table(self, path, progress=progress)

    def remove_rows(self, ids: Any, table: str | None = None, progress: Any = None) -> CoresetTree:
        """Delete rows by id from the source Delta table (one transaction) and from the tree (only
        their leaves and paths are recomputed). See :func:`coreset_spark.spark.update.remove_rows`."""
        from coreset_spark.spark.update import remove_rows

        return remove_rows(self, ids, table=table, progress=progress)

    def update_targets(self, targets: Any, table: str | None = None, progress: Any = None) -> CoresetTree:
        """Set new labels ``{row id: label}`` in the source Delta table (one MERGE) and in the tree."""
        from coreset_spark.spark.update import update_targets

        return update_targets(self, targets, table=table, progress=progress)

    def update_features(self, values: DataFrame, table: str | None = None, progress: Any = None) -> CoresetTree:
        """Set new feature values (a frame of the id column and the columns to change) in the table and tree."""
        from coreset_spark.spark.update import update_features

        return update_features(self, values, table=table, progress=progress)

    def suspicious_rows(self, n: int | None = 50, per_class: Any = None, level: int | None = None,
                        estimator: Any = None, folds: int = 5, include_seen: bool = False) -> pd.DataFrame:
        """The sampled rows most likely mislabeled or anomalous, most suspicious first.

        Scores every row of ``level`` (default: the leaf level, the largest) by its out-of-fold loss
        under a weighted model (``estimator``; default gradient boosting), see
        :mod:`coreset_spark.cleaning`. ``n`` rows overall, or ``per_class={label: count}``; rows marked
        with :meth:`mark_seen` are skipped unless ``include_seen``. Returns a frame with ``row_id``,
        ``label``, ``predicted``, ``p_label`` (the model's probability of the given label), ``score``,
        ``weight``, ``importance`` (sampling importance) and ``node``. Clustering trees (no labels) are
        ranked by their sampling importance (distance-based), the anomaly score of those families.
        """
        from coreset_spark.cleaning import (
            mislabel_scores,
            out_of_fold_predictions,
            out_of_fold_proba,
            rank_rows,
            residual_scores,
        )

        level = self.plan.levels if level is None else level
        c = self.get_coreset(level)
        table = self.level_frame(level).select("row_id", "importance", "node").toArrow().sort_by("row_id")
        importance, node = table.column("importance").to_numpy(), table.column("node").to_numpy()
        exclude = None if include_seen else np.isin(c.row_id, self.seen.column("row_id").to_numpy())
        predicted: Any = [None] * len(c)
        p_label = np.full(len(c), np.nan)
        if self.task == "classification":
            from sklearn.ensemble import HistGradientBoostingClassifier

            model = estimator if estimator is not None else HistGradientBoostingClassifier(max_iter=100, random_state=0)
            proba = out_of_fold_proba(model, c.x, c.y, c.weight, c.row_id, len(self.classes), folds, self.params.seed)
            scores = mislabel_scores(proba, c.y)
            p_label = proba[np.arange(len(c)), c.y]
            predicted = [self.classes[int(i)] for i in np.argmax(proba, axis=1)]
            if per_class:
                unknown = [k for k in per_class if k not in self.classes]
                if unknown:
                    raise ConfigError(f"per_class names {unknown}, which are not classes of this tree "
                                      f"{[str(k) for k in self.classes][:10]}")
                per_class = {self.classes.index(k): int(v) for k, v in dict(per_class).items()}
        elif self.task == "regression":
            from sklearn.ensemble import HistGradientBoostingRegressor

            model = estimator if estimator is not None else HistGradientBoostingRegressor(max_iter=100, random_state=0)
            prediction = out_of_fold_predictions(model, c.x, c.y, c.weight, c.row_id, folds, self.params.seed)
            scores = residual_scores(prediction, c.y, c.weight)
            predicted = prediction.tolist()
            if per_class:
                raise ConfigError("per_class needs class labels; this is a regression tree: pass n instead")
        else:
            scores = importance.astype(np.float64)
            if per_class:
                raise ConfigError("per_class needs class labels; this is a clustering tree: pass n instead")
        index = rank_rows(scores, c.y, n=n, per_class=per_class, exclude=exclude)
        labels = c.labels()
        return pd.DataFrame({
            "row_id": c.row_id[index], "label": [labels[i] for i in index], "predicted": [predicted[i] for i in index],
            "p_label": p_label[index], "score": scores[index], "weight": c.weight[index],
            "importance": importance[index], "node": node[index], "level": level,
        })

    def mark_seen(self, row_ids: Any) -> CoresetTree:
        """A tree with these rows marked as reviewed (skipped by :meth:`suspicious_rows`; saved with it)."""
        from dataclasses import replace

        ids = np.unique(np.concatenate([self.seen.column("row_id").to_numpy(),
                                        np.asarray(list(row_ids), dtype=np.int64)]))
        pending = {k: set(v) for k, v in self.pending.items()}
        pending.setdefault(("seen", -4), set()).add(0)
        return replace(self, seen=pa.table({"row_id": ids}, schema=ROW_ID_SCHEMA), pending=pending)


def read_saved_level(spark: SparkSession, path: str, level: int = 0, version: int | None = None) -> DataFrame:
    """Read one level of a coreset saved by :meth:`CoresetTree.save` (Delta), in the coreset schema."""
    from coreset_spark.tree import COLUMNS

    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    frame = reader.load(path)
    if "part" in frame.columns:
        frame = frame.where(F.col("part") == "tree")
    return frame.where(F.col("level") == level).select(*COLUMNS)


def saved_lineage(spark: SparkSession, path: str) -> dict[str, Any]:
    """The lineage recorded with the latest save of a coreset table."""
    from coreset_spark.spark.store import latest_save

    version, lineage = latest_save(spark, path)
    lineage = {k: v for k, v in lineage.items() if k != "tree"}
    lineage["table_version"] = version
    return dict(lineage)
