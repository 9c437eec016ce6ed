"""The SparkSession helper: local by default, any master by configuration, Delta enabled.

>>> # spark = get_spark(SparkSettings(master="local[2]"))
"""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from coreset_spark.config import ConfigError, SparkSettings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DELTA_SQL = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def delta_jars(jars_dir: str | None = None) -> list[str]:
    """Delta jars resolved by ``make jars`` (or any folder named by ``jars_dir``)."""
    folder = Path(jars_dir or os.environ.get("CORESET_SPARK_JARS_DIR") or ".jars")
    jars = sorted(glob.glob(str(folder / "*.jar")))
    if not jars:
        raise ConfigError(
            f"spark.delta='maven' but no Delta jars are in {str(folder)!r}; run `make jars` (Maven), "
            "set spark.jars_dir / CORESET_SPARK_JARS_DIR to the folder holding them, or use "
            "spark.delta: ivy (resolved by Spark) or builtin (Databricks)")
    return jars


def get_spark(settings: SparkSettings | None = None) -> SparkSession:
    """Return the active SparkSession (Databricks, a notebook, a test) or start one.

    A new session gets ``settings.master``, Delta Lake (jars as ``settings.delta`` says), UTC
    session time, no console progress bars, and the extra settings in ``settings.conf`` (see
    ``conf/spark.yaml``), which override these.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    settings = settings or SparkSettings()
    # Python workers run the same interpreter as the driver unless told otherwise (a venv's numpy).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master(settings.master).appName(settings.app_name)
    # the console progress bars are off unless asked for (they flood notebooks and scripts' output)
    conf = {"spark.sql.session.timeZone": "UTC", "spark.ui.showConsoleProgress": "false", **settings.conf}
    if settings.delta != "builtin":
        conf.update(DELTA_SQL)
    if settings.delta == "maven":
        conf["spark.jars"] = ",".join(filter(None, [conf.get("spark.jars", ""), *delta_jars(settings.jars_dir)]))
    for key, value in conf.items():
        builder = builder.config(key, value)
    if settings.delta == "ivy":
        from delta.pip_utils import configure_spark_with_delta_pip

        builder = configure_spark_with_delta_pip(builder)
    return builder.getOrCreate()
