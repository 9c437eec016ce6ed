"""One SparkSession for the whole run (local[2], small shuffles and Arrow batches, Delta on)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real datasets (../shared/data beside the project, or $CORESET_SPARK_DATA_DIR)."""
    path = Path(os.environ.get("CORESET_SPARK_DATA_DIR") or ROOT.parent / "shared" / "data")
    if not (path / "kddcup99").exists():
        pytest.fail(f"real datasets not found in {path}; set CORESET_SPARK_DATA_DIR")
    os.environ["CORESET_SPARK_DATA_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def spark():
    """Reuse an active session (a cluster, Databricks) or start a small local one."""
    from coreset_spark.config import SparkSettings
    from coreset_spark.spark.session import get_spark

    settings = SparkSettings(
        master=os.environ.get("CORESET_SPARK_TEST_MASTER", "local[2]"),
        app_name="coreset_spark-tests",
        jars_dir=os.environ.get("CORESET_SPARK_JARS_DIR") or str(ROOT / ".jars"),
        conf={
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.execution.arrow.maxRecordsPerBatch": "64",
            "spark.databricks.delta.snapshotPartitions": "2",
            "spark.sql.adaptive.enabled": "false",
            "spark.driver.memory": "3g",
        },
    )
    session = get_spark(settings)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
