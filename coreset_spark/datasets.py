"""A small registry of real public datasets, with their original URLs and checksums.

Files are looked up in a data directory: ``data_dir`` if given, else ``$CORESET_SPARK_DATA_DIR``,
else the download cache ``~/.cache/coreset_spark`` (filled from the original URL on first use and
checked against the sha256). Tests and CI point ``CORESET_SPARK_DATA_DIR`` at ``../shared/data``.

>>> DATASETS["kddcup99"].sha256[:8]
'7bfaa8ce'
>>> sorted(VARIANTS)  # doctest: +NORMALIZE_WHITESPACE
['adult', 'california_housing', 'covertype', 'flights', 'flights_airports', 'flights_delay', 'kddcup99',
 'kddcup99_multiclass']
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from coreset_spark.config import ConfigError, DataSpec

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

KDD_COLUMNS = (
    "duration protocol_type service flag src_bytes dst_bytes land wrong_fragment urgent hot "
    "num_failed_logins logged_in num_compromised root_shell su_attempted num_root num_file_creations "
    "num_shells num_access_files num_outbound_cmds is_host_login is_guest_login count srv_count "
    "serror_rate srv_serror_rate rerror_rate srv_rerror_rate same_srv_rate diff_srv_rate "
    "srv_diff_host_rate dst_host_count dst_host_srv_count dst_host_same_srv_rate dst_host_diff_srv_rate "
    "dst_host_same_src_port_rate dst_host_srv_diff_host_rate dst_host_serror_rate "
    "dst_host_srv_serror_rate dst_host_rerror_rate dst_host_srv_rerror_rate label"
).split()
KDD_CATEGORICAL = ("protocol_type", "service", "flag")
FLIGHT_FEATURES = ("distance", "hour", "weekday", "day_of_year", "origin", "destination")


@dataclass(frozen=True)
class DatasetFile:
    """One public file: where it lives in the data directory, where it came from, its sha256."""

    path: str
    url: str
    sha256: str
    licence: str


DATASETS = {
    "kddcup99": DatasetFile(
        "kddcup99/kddcup.data_10_percent.gz",
        "http://kdd.ics.uci.edu/databases/kddcup99/kddcup.data_10_percent.gz",
        "7bfaa8cef1350f72842018c32893e2fa4539d57efbb22f998eb74ecefc3da3b4", "UCI, CC BY 4.0"),
    "kddcup99_test": DatasetFile(
        "kddcup99/corrected.gz",
        "http://kdd.ics.uci.edu/databases/kddcup99/corrected.gz",
        "74f0daef49b242badc09f2adbd457dea6a45b4f77177efbd11216d333651044b", "UCI, CC BY 4.0"),
    "covertype_odds": DatasetFile(
        "covertype_odds/cover.npz",
        "https://github.com/Minqi824/ADBench (datasets/Classical, the Cover file from ODDS)",
        "945a097c3542ae81a551bf1c06dcad78a755d94f84fcaf1d60687e42d1a656df", "BSD-2 (ADBench); UCI CC BY 4.0"),
    "adult": DatasetFile(
        "adult/adult.parquet", "https://archive.ics.uci.edu/dataset/2/adult",
        "fb07816c87bb0c929d6aa644e101eb3adf8805f12c591ffa3e6829d03663a189", "UCI, CC BY 4.0"),
    "california_housing": DatasetFile(
        "california_housing/california_housing.parquet", "https://www.dcc.fc.up.pt/~ltorgo/Regression/cal_housing.html",
        "5755ed8e5e21b13e715e79b9278bb3329fcb8f6a46fa0fff914915fe4ccf73bf", "public"),
    "flights": DatasetFile(
        "flights/flights-3m.parquet", "https://github.com/vega/vega-datasets (data/flights-3m.parquet)",
        "dbeb920c90f59b6ccaff823dcc3d08f25a97fa1ce128d93f40be4e931f5900b0", "public domain"),
}


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data directory in use."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("CORESET_SPARK_DATA_DIR")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "coreset_spark"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_path(name: str, directory: str | os.PathLike[str] | None = None, verify: bool = False) -> Path:
    """Local path of a dataset file, downloading it into the cache when it is not there.

    A downloaded file is always checked against its sha256; a file already present only when
    ``verify`` is true.
    """
    if name not in DATASETS:
        raise ConfigError(f"dataset {name!r} is unknown; known datasets: {sorted(DATASETS)}")
    entry = DATASETS[name]
    path = data_dir(directory) / entry.path
    if not path.exists():
        if not entry.url.startswith("http") or " " in entry.url:
            raise ConfigError(
                f"dataset {name!r} is not in {path.parent}; download it from {entry.url} to {path} "
                "or set CORESET_SPARK_DATA_DIR to a folder holding it")
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(path.suffix + ".part")
        try:
            with urllib.request.urlopen(entry.url, timeout=60) as response, partial.open("wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise ConfigError(
                f"dataset {name!r} is not in {path.parent} and downloading {entry.url} failed ({exc}); set "
                "CORESET_SPARK_DATA_DIR to a folder that holds it (e.g. ../shared/data) or download it there") from exc
        verify = True
        partial.replace(path)
    if verify and sha256_of(path) != entry.sha256:
        raise ConfigError(f"dataset file {path} has sha256 {sha256_of(path)}, expected {entry.sha256}; "
                          "delete it and download it again")
    return path


@dataclass(frozen=True)
class Variant:
    """A learning task on a dataset: how to read it and which columns are what."""

    dataset: str
    spec: DataSpec
    reader: Callable[[SparkSession, Path], DataFrame]
    description: str


def _read_kdd(spark: SparkSession, path: Path) -> DataFrame:
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    schema = StructType([StructField(c, StringType() if c in KDD_CATEGORICAL + ("label",) else DoubleType())
                         for c in KDD_COLUMNS])
    df = spark.read.csv(str(path), schema=schema, header=False, mode="FAILFAST")
    return df.withColumn("is_attack", (F.col("label") != F.lit("normal.")).cast("int"))


def _read_kdd_binary(spark: SparkSession, path: Path) -> DataFrame:
    return _read_kdd(spark, path).drop(*KDD_CATEGORICAL, "num_outbound_cmds", "label")


def _read_kdd_multiclass(spark: SparkSession, path: Path) -> DataFrame:
    return _read_kdd(spark, path).drop("is_attack", "num_outbound_cmds")


SPARK_CODECS = {"SNAPPY", "GZIP", "ZSTD", "LZ4_RAW", "UNCOMPRESSED"}


def spark_readable(path: Path) -> Path:
    """The Parquet file itself, or a zstd copy in the cache when Spark lacks its codec (Brotli).

    The copy is written once, next to the other cached files, under the source's sha256 prefix.
    """
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    codecs = {meta.row_group(i).column(j).compression for i in range(meta.num_row_groups)
              for j in range(meta.num_columns)}
    if codecs <= SPARK_CODECS:
        return path
    copy = Path.home() / ".cache" / "coreset_spark" / "converted" / f"{sha256_of(path)[:16]}-{path.name}"
    if not copy.exists():
        copy.parent.mkdir(parents=True, exist_ok=True)
        partial = copy.with_suffix(".part")
        pq.write_table(pq.read_table(path), partial, compression="zstd")
        partial.replace(copy)
    return copy


def _read_parquet(spark: SparkSession, path: Path) -> DataFrame:
    return spark.read.parquet(str(spark_readable(path)))


def _read_cover(spark: SparkSession, path: Path) -> DataFrame:
    data = np.load(path)
    x, y = data["X"].astype(np.float64), data["y"].astype(np.int64)
    columns = {f"x{j}": x[:, j] for j in range(x.shape[1])}
    columns["y"] = y
    return spark.createDataFrame(pa.table(columns).to_pandas())


def _read_flights(spark: SparkSession, path: Path) -> DataFrame:
    from pyspark.sql import functions as F

    df = spark.read.parquet(str(spark_readable(path)))
    return df.select(
        (F.col("delay") > 15).cast("int").alias("late"),
        F.col("delay").cast("double").alias("delay"),
        F.col("distance").cast("double").alias("distance"),
        F.hour("date").cast("double").alias("hour"),
        F.dayofweek("date").cast("double").alias("weekday"),
        F.dayofyear("date").cast("double").alias("day_of_year"),
        F.col("origin"), F.col("destination"),
    )


VARIANTS: dict[str, Variant] = {
    "kddcup99": Variant("kddcup99", DataSpec(target="is_attack"), _read_kdd_binary,
                        "KDD Cup 99 10%, attack vs normal; categoricals and num_outbound_cmds dropped"),
    "kddcup99_multiclass": Variant("kddcup99", DataSpec(target="label", categorical=KDD_CATEGORICAL),
                                   _read_kdd_multiclass, "KDD Cup 99 10%, 23 classes, categoricals one-hot"),
    "covertype": Variant("covertype_odds", DataSpec(target="y"), _read_cover,
                         "Covertype rows of types 2 (y=0) and 4 (y=1), 10 continuous features"),
    "adult": Variant("adult", DataSpec(target="income"), _read_parquet,
                     "UCI Adult, income >50K; string columns one-hot, '?' kept as a level"),
    "flights": Variant("flights", DataSpec(target="late", features=("distance", "hour", "weekday", "day_of_year")),
                       _read_flights, "3M US flights, late = delay > 15 min; 4 numeric features"),
    "flights_airports": Variant(
        "flights", DataSpec(target="late", features=FLIGHT_FEATURES, categorical=("origin", "destination")),
        _read_flights, "3M US flights, late = delay > 15 min; 4 numeric features, origin and destination one-hot"),
    "flights_delay": Variant(
        "flights", DataSpec(target="delay", features=FLIGHT_FEATURES, categorical=("origin", "destination"),
                            task="regression"),
        _read_flights, "3M US flights, regression on the delay in minutes; origin and destination one-hot"),
    "california_housing": Variant("california_housing", DataSpec(target="MedHouseVal", task="regression"),
                                  _read_parquet, "California housing (1990 census blocks), median house value"),
}


def registered(variant: str, key: str = "dataset") -> Variant:
    """The registered task ``variant``; an unknown name is an error naming ``key`` (the setting).

    >>> registered("adult").spec.target
    'income'
    """
    if variant not in VARIANTS:
        raise ConfigError(f"{key}={variant!r} is unknown; use one of {sorted(VARIANTS)}, or a table of your own "
                          "(format: parquet, delta, csv or table, with path or table)")
    return VARIANTS[variant]


def load(spark: SparkSession, variant: str, directory: str | os.PathLike[str] | None = None) -> tuple[DataFrame, DataSpec]:
    """Read a registered task as a Spark DataFrame with its data specification.

    >>> # df, spec = load(spark, "kddcup99")   # 494,021 rows, target is_attack
    """
    entry = registered(variant)
    return entry.reader(spark, dataset_path(entry.dataset, directory)), entry.spec
