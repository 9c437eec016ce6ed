"""Read the input table: a registered dataset, Parquet, Delta (optionally pinned), CSV, a catalog
table, or a DataFrame already in hand. Returns the frame and its lineage (what was read, which
Delta version).

>>> # df, spec, lineage = read_source(spark, {"format": "delta", "path": "/data/events"})
>>> # lineage -> {'format': 'delta', 'path': '/data/events', 'version': 12}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from coreset_spark import datasets
from coreset_spark.config import ConfigError, DataSpec

FORMATS = ("dataset", "parquet", "delta", "csv", "table")


def delta_version(spark: SparkSession, path: str) -> int:
    """The latest version of a Delta table (resolved once, at job start)."""
    from delta.tables import DeltaTable

    return int(DeltaTable.forPath(spark, path).history(1).select("version").collect()[0]["version"])


def read_source(spark: SparkSession, source: Mapping[str, Any]) -> tuple[DataFrame, DataSpec | None, dict[str, Any]]:
    """Read ``source`` (the ``input`` section of a job config).

    Keys: ``dataset`` (a registered variant, e.g. ``kddcup99``) or ``format`` with ``path`` /
    ``table``; ``version`` pins a Delta table; ``options`` go to the reader (CSV: header, etc.).
    """
    source = dict(source)
    if "dataset" in source:
        entry = datasets.registered(source["dataset"], "input.dataset")
        df, spec = datasets.load(spark, source["dataset"], source.get("data_dir"))
        return df, spec, {"format": "dataset", "dataset": source["dataset"],
                          "path": str(datasets.dataset_path(entry.dataset, source.get("data_dir")))}
    fmt = source.get("format")
    if fmt not in FORMATS:
        raise ConfigError(f"input.format={fmt!r} is unknown; use one of {FORMATS} (or input.dataset)")
    options = {str(k): str(v) for k, v in dict(source.get("options") or {}).items()}
    lineage: dict[str, Any] = {"format": fmt}
    if fmt == "table":
        if not source.get("table"):
            raise ConfigError("input.format=table needs input.table: the catalog table name")
        lineage["table"] = source["table"]
        return spark.table(source["table"]), None, lineage
    path = source.get("path")
    if not path:
        raise ConfigError(f"input.format={fmt} needs input.path")
    lineage["path"] = str(path)
    if fmt == "delta":
        version = source.get("version")
        version = delta_version(spark, str(path)) if version is None else int(version)
        lineage["version"] = version
        return spark.read.format("delta").option("versionAsOf", version).load(str(path)), None, lineage
    if fmt == "csv":
        options.setdefault("header", "true")
        options.setdefault("inferSchema", "true")
    return spark.read.format(fmt).options(**options).load(str(path)), None, lineage
