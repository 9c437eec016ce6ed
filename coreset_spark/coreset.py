"""The driver-side result: a coreset tree and the weighted coreset of one of its levels.

>>> # tree = build_tree(df, spec, CoresetParams(size=2000))
>>> # tree.level_sizes()                 # {0: 1987, 1: 15840, 2: 127512}
>>> # c = tree.get_coreset(level=0)      # the root: the smallest coreset
>>> # LogisticRegression().fit(c.x, c.y, sample_weight=c.weight)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from coreset_spark.config import ConfigError, CoresetParams, DataSpec
from coreset_spark.encoding import Encoder, TableStats
from coreset_spark.tree import Sampler, TreePlan, features_matrix


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
class CoresetTree:
    """Every level of a built coreset tree (Spark frames, persisted) and what built it."""

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
        table = frame.toArrow().sort_by([("row_id", "ascending")])
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

    def save(self, path: str, mode: str = "overwrite") -> None:
        """Write every level as one Delta table (column ``level``), the lineage in the commit metadata.

        The write is one Delta transaction: a failed save leaves the previous table as it was.
        """
        frame = None
        for level in sorted(self.levels):
            frame = self.levels[level] if frame is None else frame.unionByName(self.levels[level])
        assert frame is not None
        (frame.write.format("delta").mode(mode).option("overwriteSchema", "true")
         .option("userMetadata", json.dumps(self.lineage(), default=str)).partitionBy("level").save(path))


def read_saved_level(spark: SparkSession, path: str, level: int = 0, version: int | None = None) -> DataFrame:
    """Read one level of a coreset saved by :meth:`CoresetTree.save`."""
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(path).where(F.col("level") == level)


def saved_lineage(spark: SparkSession, path: str) -> dict[str, Any]:
    """The lineage recorded with the latest save of a coreset table."""
    from delta.tables import DeltaTable

    row = DeltaTable.forPath(spark, path).history(1).select("version", "userMetadata").collect()[0]
    lineage = json.loads(row["userMetadata"] or "{}")
    lineage["table_version"] = int(row["version"])
    return dict(lineage)
