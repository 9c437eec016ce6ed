"""The batch jobs as library functions: ``build``, ``update``, ``tune``, ``evaluate``, ``score``, ``clean``.

Each takes a parsed YAML configuration (the files ``conf/<command>.yaml``), checks every section
and key before Spark starts (an unknown key is a :class:`ConfigError` naming it), prints what it
read (table and Delta version), what it wrote (path and version) and how long each stage took,
writes its report to ``<output.path>/<command>_report.json`` and returns it (JSON-ready). The
console script runs them as ``coreset-spark <command> --config conf/<command>.yaml``; the scripts in
``jobs/`` and the notebooks in ``notebooks/`` call the same functions.

=========  ====================================================================================
build      read a table, build the coreset tree, save it (Delta)
update     load the tree, add new rows (a Delta table's rows since the recorded version, or a
           table/path), save only the changed nodes
tune       load the tree, search the candidates on a level, validate the finalists on a hold-out
           table in Spark, save the chosen model (joblib), optionally log an MLflow run
evaluate   load models and their tree, compute metrics on a table in Spark
score      load a model and its tree, write predictions for a table as Delta
clean      apply reviewed fixes (remove rows, new labels) to the source table and the tree, then
           list the rows most likely mislabeled
=========  ====================================================================================

>>> check_config("build", {"input": {"dataset": "adult"}, "coreset": {"size": 500}, "tree": {"path": "/tmp/t"}})["coreset"]
{'size': 500}
>>> check_config("build", {"coreset": {"sise": 500}})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
coreset_spark.config.ConfigError: unknown key(s) ['sise'] in section 'coreset' of the build config; known keys: ...
>>> # report = build(load_yaml("conf/build.yaml"))   # what `coreset-spark build --config conf/build.yaml` runs
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from coreset_spark.config import ConfigError, CoresetParams, DataSpec, SparkSettings, from_mapping, load_yaml

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from coreset_spark.coreset import CoresetTree

Progress = Callable[[str], None]

MODEL_FORMAT = "coreset_spark.model/1"
INPUT_KEYS = ("dataset", "data_dir", "format", "path", "table", "version", "options", "where", "row_ids", "partitions")
TREE_KEYS = ("path", "version")


def _fields(cls: Any) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


# command -> section -> allowed keys (None: any key, e.g. model names; "list": a YAML list)
SCHEMA: dict[str, dict[str, Any]] = {
    "build": {"spark": _fields(SparkSettings), "input": INPUT_KEYS, "data": _fields(DataSpec),
              "coreset": _fields(CoresetParams), "tree": ("path", "format"), "output": ("path",)},
    "update": {"spark": _fields(SparkSettings), "tree": TREE_KEYS, "new_rows": (*INPUT_KEYS, "since_version"),
               "output": ("path",)},
    "tune": {"spark": _fields(SparkSettings), "tree": (*TREE_KEYS, "level"),
             "search": ("method", "scoring", "cv", "n_iter", "seed", "backend", "n_jobs", "batch_size", "top", "select"),
             "candidates": "list", "holdout": INPUT_KEYS,
             "tracking": ("mlflow", "experiment", "tracking_uri", "run_name", "log_model"), "output": ("path", "model")},
    "evaluate": {"spark": _fields(SparkSettings), "models": None, "tree": TREE_KEYS, "table": INPUT_KEYS,
                 "output": ("path",)},
    "score": {"spark": _fields(SparkSettings), "model": ("path",), "tree": TREE_KEYS, "table": INPUT_KEYS,
              "predictions": ("path", "mode", "format", "keep", "probability"), "output": ("path",)},
    "clean": {"spark": _fields(SparkSettings), "tree": (*TREE_KEYS, "level"),
              "review": ("n", "per_class", "folds", "include_seen", "estimator", "params"),
              "fixes": ("file", "table", "mark_seen"), "output": ("path",)},
}
REQUIRED: dict[str, tuple[tuple[str, str], ...]] = {
    "build": (("input", "the table to build from (dataset: adult, or format: delta with path: ...)"),
              ("tree", "path: where the tree is saved")),
    "update": (("tree", "path: the saved tree"),),
    "tune": (("tree", "path: the saved tree"), ("candidates", "a list of {name, estimator, params, space}")),
    "evaluate": (("models", "{name: path of a model file from `coreset-spark tune`}"), ("table", "the table to evaluate on")),
    "score": (("model", "path: a model file from `coreset-spark tune`"), ("table", "the table to score"),
              ("predictions", "path: where the predictions are written")),
    "clean": (("tree", "path: the saved tree"),),
}


def check_config(command: str, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check a job configuration's sections and keys; returns a copy (sections as dicts).

    >>> check_config("score", {"model": {"path": "m.joblib"}, "table": {"dataset": "adult"},
    ...                        "predictions": {"path": "/tmp/p"}})["predictions"]
    {'path': '/tmp/p'}
    """
    if command not in SCHEMA:
        raise ConfigError(f"command {command!r} is unknown; use one of {sorted(SCHEMA)}")
    config = dict(config or {})
    schema = SCHEMA[command]
    unknown = sorted(set(config) - set(schema))
    if unknown:
        raise ConfigError(f"unknown section(s) {unknown} in the {command} config; known sections: {sorted(schema)}")
    out: dict[str, Any] = {}
    for section, value in config.items():
        keys = schema[section]
        if value is None:
            continue
        if keys == "list":
            if not isinstance(value, list) or not value:
                raise ConfigError(f"section {section!r} of the {command} config must be a non-empty list, "
                                  f"got {value!r}")
            out[section] = list(value)
            continue
        if not isinstance(value, Mapping):
            raise ConfigError(f"section {section!r} of the {command} config must be a mapping of keys to values, "
                              f"got {value!r}")
        if keys is not None:
            bad = sorted(set(value) - set(keys))
            if bad:
                raise ConfigError(f"unknown key(s) {bad} in section {section!r} of the {command} config; "
                                  f"known keys: {sorted(keys)}")
        out[section] = dict(value)
    for section, hint in REQUIRED[command]:
        if not out.get(section):
            raise ConfigError(f"the {command} config needs section {section!r}: {hint}")
    for section, values in out.items():  # a misspelled dataset or scoring fails here, before Spark starts
        if isinstance(values, dict) and values.get("dataset") is not None:
            from coreset_spark.datasets import registered

            registered(values["dataset"], f"{section}.dataset")
    if (out.get("search") or {}).get("scoring") is not None:
        from coreset_spark.tuning import scoring_name

        scoring_name(out["search"]["scoring"], None, key="search.scoring")
    for section in ("tree", "model", "predictions"):
        if section in out and "path" in schema[section] and section in dict(REQUIRED[command]) \
                and not out[section].get("path"):
            raise ConfigError(f"{section}.path is missing in the {command} config; give the path of the "
                              f"{'saved tree' if section == 'tree' else section}")
    return out


# ---------------------------------------------------------------------------------------------
# Reporting: what was read and written, and the time of every stage


def describe(lineage: Mapping[str, Any]) -> str:
    """One line for a table's lineage: format, location, Delta version, filter.

    >>> describe({"format": "delta", "path": "/data/events", "version": 3})
    'delta /data/events (version 3)'
    >>> describe({"format": "dataset", "dataset": "adult", "path": "/d/adult.parquet", "where": "x > 1"})
    "dataset adult (/d/adult.parquet; not versioned), where 'x > 1'"
    """
    fmt = lineage.get("format", "?")
    where = lineage.get("table") or lineage.get("path") or "?"
    if fmt == "dataset":
        text = f"dataset {lineage.get('dataset')} ({where}; not versioned)"
    elif lineage.get("version") is not None:
        since = lineage.get("since_version")
        text = f"{fmt} {where} (version {lineage['version']}" + (f", rows added since version {since})"
                                                                  if since is not None else ")")
    else:
        text = f"{fmt} {where} (not versioned)"
    if lineage.get("row_ids"):
        text += f", ids {lineage['row_ids']!r} computed from the data"
    if lineage.get("where"):
        text += f", where {lineage['where']!r}"
    return text


class JobLog:
    """Prints and records a job's reads, writes and timed stages (:class:`~coreset_spark.spark.build.Stages`).

    >>> log = JobLog("build", progress=None)
    >>> log.stage("count", lambda: 3)
    3
    >>> list(log.stages.seconds)
    ['count']
    """

    def __init__(self, command: str, progress: Progress | None = print) -> None:
        from coreset_spark.spark.build import Stages

        self.command = command
        self.say: Progress = progress or (lambda message: None)
        # the job's own stages carry its name; the build's inner stages keep "[coreset]"
        self.stages = Stages(lambda message: self.say(message.replace("[coreset] ", f"[{command}] ", 1)))
        self.read: list[dict[str, Any]] = []
        self.wrote: list[dict[str, Any]] = []
        self.started = time.perf_counter()

    def note(self, message: str) -> None:
        """Print one line prefixed with the command."""
        self.say(f"[{self.command}] {message}")

    def stage(self, name: str, work: Callable[[], Any]) -> Any:
        """Run ``work`` as a timed stage (printed when it starts and ends)."""
        return self.stages.run(name, work)

    def reads(self, what: str, lineage: Mapping[str, Any], **extra: Any) -> None:
        """Record and print a read: ``what`` (input, tree, ...) and its lineage."""
        self.read.append({"what": what, **lineage, **extra})
        more = "".join(f", {k} {v}" for k, v in extra.items())
        self.note(f"read {what}: {describe(lineage)}{more}")

    def writes(self, what: str, path: str, version: int | None = None, **extra: Any) -> None:
        """Record and print a write: its path and, for Delta, the version written."""
        self.wrote.append({"what": what, "path": str(path), "version": version, **extra})
        more = "".join(f", {k} {v}" for k, v in extra.items())
        label = "Parquet save" if extra.get("format") == "parquet" else "Delta version"
        self.note(f"wrote {what}: {path}" + (f" ({label} {version})" if version is not None else "") + more)

    def finish(self, report: dict[str, Any], out_dir: Path) -> dict[str, Any]:
        """Add reads, writes and stage times to ``report``, write it as JSON, print the times."""
        path = out_dir / f"{self.command}_report.json"
        self.writes("report", str(path))
        seconds = {**self.stages.seconds, "total": round(time.perf_counter() - self.started, 3)}
        report = {"command": self.command, **report, "read": self.read, "wrote": self.wrote, "seconds": seconds}
        out_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_jsonable(report), indent=2) + "\n")
        self.note("stage times: " + "; ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
        return report


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


# ---------------------------------------------------------------------------------------------
# Shared steps


def _session(config: Mapping[str, Any], spark: SparkSession | None, log: JobLog) -> SparkSession:
    if spark is not None:
        return spark
    from coreset_spark.job import spark_settings
    from coreset_spark.spark.session import get_spark

    settings = spark_settings(config.get("spark"))
    return log.stage("start Spark", lambda: get_spark(settings))


def _out_dir(config: Mapping[str, Any]) -> Path:
    return Path(str((config.get("output") or {}).get("path") or "output/jobs"))


def read_input(spark: SparkSession, section: Mapping[str, Any], name: str = "input"
               ) -> tuple[DataFrame, DataSpec | None, dict[str, Any]]:
    """Read a table section (``input``, ``new_rows``, ``holdout``, ``table``): the keys of
    :func:`~coreset_spark.spark.source.read_source` plus ``row_ids`` (add a unique id column of that
    name computed from the data, before the filter), ``where`` (a Spark SQL filter) and ``partitions``.

    Returns the frame, the dataset's default data specification (or ``None``) and the lineage.

    >>> # df, spec, lineage = read_input(spark, {"dataset": "adult", "row_ids": "rid", "where": "pmod(rid, 10) < 6"})
    """
    from pyspark.errors import PySparkException

    from coreset_spark.spark.frame import with_row_ids
    from coreset_spark.spark.source import read_source

    values = {k: v for k, v in dict(section).items() if v is not None}
    where, row_ids, partitions = values.pop("where", None), values.pop("row_ids", None), values.pop("partitions", None)
    if "dataset" not in values and "format" not in values:
        raise ConfigError(f"section {name!r} names no table: set {name}.dataset (a registered dataset, e.g. adult) or "
                          f"{name}.format (parquet, delta, csv, table) with {name}.path or {name}.table")
    try:
        df, spec, lineage = read_source(spark, values)
    except ConfigError as exc:  # read_source names the keys as input.*; say which section they are in
        raise ConfigError(str(exc).replace("input.", f"{name}.")) from exc
    except PySparkException as exc:
        raise ConfigError(f"{name}: cannot read {describe({**values, 'format': values.get('format', 'dataset')})}: "
                          f"{_first_line(exc)}; check {name}.path / {name}.table") from exc
    if row_ids:
        df = with_row_ids(df, str(row_ids))
        lineage["row_ids"] = str(row_ids)
    if where:
        try:
            df = df.where(str(where))
            df.schema  # noqa: B018 - analyse now, so a bad filter is reported here with its key
        except PySparkException as exc:
            raise ConfigError(f"{name}.where={where!r} is not a valid filter on the columns {df.columns}: "
                              f"{_first_line(exc)}") from exc
        lineage["where"] = str(where)
    if partitions:
        df = df.repartition(_int(partitions, f"{name}.partitions", 1))
    return df, spec, lineage


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _int(value: Any, key: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{key}={value!r} must be an integer")
    try:
        number = int(value)
    except ValueError as exc:
        raise ConfigError(f"{key}={value!r} must be an integer") from exc
    if number != float(value) or (minimum is not None and number < minimum):
        raise ConfigError(f"{key}={value!r} must be an integer" + (f" of at least {minimum}" if minimum is not None else ""))
    return number


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} must be true or false")
    return value


def _load_tree(spark: SparkSession, section: Mapping[str, Any], log: JobLog, what: str = "tree") -> CoresetTree:
    from coreset_spark.coreset import CoresetTree

    path = str(section["path"])
    version = section.get("version")
    version = None if version is None else _int(version, f"{what}.version", 0)
    tree = log.stage("load tree", lambda: CoresetTree.load(spark, path, version))
    assert tree.store is not None
    log.reads("tree", {"format": tree.store.format, "path": path, "version": tree.store.version},
              rows=tree.stats.n_rows, levels=tree.level_sizes())
    return tree


def _store_format(tree: CoresetTree) -> str:
    """A loaded tree is saved back in the format it was loaded from (Delta, or the Parquet fallback)."""
    return tree.store.format if tree.store is not None else "delta"


def _tree_summary(tree: CoresetTree) -> dict[str, Any]:
    return {"path": tree.store.path if tree.store else None, "version": tree.store.version if tree.store else None,
            "format": tree.store.format if tree.store else None, "level_sizes": tree.level_sizes(),
            "rows": tree.stats.n_rows, "weight_total": tree.stats.weight_total, "task": tree.task,
            "family": tree.params.family, "classes": [str(c) for c in tree.classes],
            "features": len(tree.encoder.feature_names), "batches": len(tree.batches), "source": tree.source}


# ---------------------------------------------------------------------------------------------
# build


def data_spec(default: DataSpec | None, section: Mapping[str, Any] | None, row_ids: str | None = None) -> DataSpec:
    """The data specification: the dataset's defaults, overlaid by the ``data`` section; a computed
    id column (``input.row_ids``) is the row id unless ``data.row_id`` names another.

    >>> data_spec(DataSpec(target="income"), {"rare_level_fraction": 0.01}, "rid").row_id
    'rid'
    """
    values = dict(default.__dict__) if default else {}
    values.update(section or {})
    if row_ids and not values.get("row_id"):
        values["row_id"] = row_ids
    if not values.get("target") and values.get("task") != "clustering":
        raise ConfigError("data.target is missing: name the label column in the data section (or set data.task: "
                          "clustering for kmeans/pca)")
    values.setdefault("target", None)
    return from_mapping(DataSpec, values, "data")


def build(config: Mapping[str, Any], spark: SparkSession | None = None, progress: Progress | None = print
          ) -> dict[str, Any]:
    """Read the ``input`` table, build the coreset tree (``data``, ``coreset``) and save it to ``tree.path``.

    >>> # build({"input": {"dataset": "adult", "row_ids": "rid"}, "coreset": {"size": 1000},
    >>> #        "tree": {"path": "output/jobs/adult/tree"}})["tree"]["level_sizes"]   # {0: 1009, 1: 7890}
    """
    from pyspark import StorageLevel

    from coreset_spark.spark.build import build_tree

    cfg = check_config("build", config)
    params: CoresetParams = from_mapping(CoresetParams, cfg.get("coreset"), "coreset")
    path, fmt = str(cfg["tree"]["path"]), str(cfg["tree"].get("format", "delta"))
    if fmt not in ("delta", "parquet"):
        raise ConfigError(f"tree.format={fmt!r} is unknown; use delta (default) or parquet")
    log = JobLog("build", progress)
    spark = _session(cfg, spark, log)
    df, default_spec, lineage = read_input(spark, cfg["input"], "input")
    spec = data_spec(default_spec, cfg.get("data"), lineage.get("row_ids"))
    df = df.persist(StorageLevel.MEMORY_AND_DISK)
    rows = log.stage("read input", df.count)
    log.reads("input", lineage, rows=rows)
    tree = log.stage("build coreset tree", lambda: build_tree(df, spec, params, progress, lineage))
    version = log.stage("save tree", lambda: tree.save(path, format=fmt))
    log.writes("tree", path, version, format=fmt)
    df.unpersist()
    log.note(f"tree levels (level: rows) {tree.level_sizes()}; {tree.stats.n_rows} input rows; classes "
             f"{[str(c) for c in tree.classes][:10]}")
    return log.finish({"tree": _tree_summary(tree), "input": lineage, "build_stages_s": tree.timings,
                       "notes": tree.notes}, _out_dir(cfg))


# ---------------------------------------------------------------------------------------------
# update


def update(config: Mapping[str, Any], spark: SparkSession | None = None, progress: Progress | None = print
           ) -> dict[str, Any]:
    """Load the tree at ``tree.path``, add new rows, save the changed nodes back (one Delta transaction).

    The new rows are ``new_rows`` read like a build's ``input`` (a table or path; refused when the
    tree already holds a batch from the same source), or, with ``new_rows.since_version: true``,
    the rows the tree's source Delta table gained since the version the tree records.

    >>> # update({"tree": {"path": "output/jobs/adult/tree"}, "new_rows": {"since_version": True}})
    """
    cfg = check_config("update", config)
    new = dict(cfg.get("new_rows") or {"since_version": True})
    since = _bool(new.pop("since_version", False), "new_rows.since_version")
    if since and any(v is not None for v in new.values()):
        raise ConfigError(f"new_rows.since_version: true reads the tree's own source table; remove the other new_rows "
                          f"keys {sorted(new)}, or set since_version: false to read them")
    if not since and not new:
        raise ConfigError("new_rows names no table: give new_rows.dataset or new_rows.format with path/table, or "
                          "new_rows.since_version: true")
    log = JobLog("update", progress)
    spark = _session(cfg, spark, log)
    tree = _load_tree(spark, cfg["tree"], log)
    path = str(cfg["tree"]["path"])
    before = len(tree.batches)
    if since:
        source = tree.source or {}
        if source.get("format") != "delta" or source.get("version") is None:
            raise ConfigError(f"new_rows.since_version: true needs a tree built from a Delta table (input.format: delta); "
                              f"this tree's source is {describe(source) if source else 'not recorded'}: give new_rows "
                              "as a table or path instead")
        if source.get("where"):
            raise ConfigError(f"new_rows.since_version: true would add every row the table gained, but the tree was built "
                              f"from the rows where {source['where']!r} (input.where); give new_rows as a table with "
                              "that filter (new_rows.format: delta, path, where) instead")
        if source.get("row_ids"):
            raise ConfigError(f"new_rows.since_version: true finds new rows by the table's id column, but this tree's ids "
                              f"({source['row_ids']!r}) were computed by input.row_ids; give the table an id column "
                              "(data.row_id) and rebuild, or give new_rows as a table or path")
        grown = log.stage("add the source's new rows", lambda: tree.partial_build_from_table(progress=progress))
        read = grown.batches[-1]["source"] if len(grown.batches) > before else \
            {"format": "delta", "path": source["path"], "version": source["version"], "since_version": source["version"]}
        log.reads("new rows", read, rows=grown.batches[-1]["rows"] if len(grown.batches) > before else 0)
    else:
        df, _, lineage = read_input(spark, new, "new_rows")
        for batch in tree.batches:
            if batch.get("source") == lineage:
                raise ConfigError(f"new_rows {describe(lineage)} is already in the tree as batch {batch['batch']} "
                                  f"({batch.get('added', 'the first build')}); adding it again would count its rows "
                                  "twice: point new_rows at new data (another path, where or version)")
        grown = log.stage("add new rows", lambda: tree.partial_build(df, source=lineage, progress=progress))
        log.reads("new rows", lineage, rows=grown.batches[-1]["rows"] if len(grown.batches) > before else 0)
    added = grown.batches[-1] if len(grown.batches) > before else None
    version = log.stage("save changed nodes", lambda: grown.save(path, format=_store_format(tree)))
    if added is None:
        log.note(f"no new rows; the tree is unchanged at version {version}")
    else:
        log.writes("tree", path, version, batch=added["batch"], rows_added=added["rows"])
        log.note(f"tree levels (level: rows) {grown.level_sizes()}; {grown.stats.n_rows} input rows in "
                 f"{len(grown.batches)} batches")
    return log.finish({"tree": _tree_summary(grown), "added": added, "changed": added is not None,
                       "previous_version": tree.store.version if tree.store else None,
                       "timings": grown.timings}, _out_dir(cfg))


# ---------------------------------------------------------------------------------------------
# tune

SELECT = ("holdout", "cv")


def tune(config: Mapping[str, Any], spark: SparkSession | None = None, progress: Progress | None = print
         ) -> dict[str, Any]:
    """Search ``candidates`` on a level of the tree at ``tree.path``, re-score the ``search.top``
    finalists on the ``holdout`` table in Spark, save the chosen model to ``output.model`` (default
    ``<output.path>/model.joblib``) and, with ``tracking.mlflow: true``, log an MLflow run (SQLite in
    the output folder unless ``tracking.tracking_uri`` says otherwise).

    ``search.select: holdout`` (default) keeps the finalist with the best hold-out score, ``cv`` the
    best cross-validation score on the coreset.

    >>> # tune({"tree": {"path": "output/jobs/adult/tree"}, "candidates": [{"estimator":
    >>> #       "sklearn.linear_model.LogisticRegression", "space": {"C": [0.1, 1.0]}}]})["selected"]
    """
    from coreset_spark import tuning

    cfg = check_config("tune", config)
    candidates = tuning.candidates_from_config(cfg["candidates"])
    search = dict(cfg.get("search") or {})
    level = _int(cfg["tree"].get("level", 0), "tree.level", 0)
    method = str(search.get("method", "grid"))
    backend = str(search.get("backend", "local"))
    cv = _int(search.get("cv", 3), "search.cv", 2)
    top = _int(search.get("top", 3), "search.top", 1)
    select = str(search.get("select", "holdout"))
    if select not in SELECT:
        raise ConfigError(f"search.select={select!r} is unknown; use holdout (best finalist on the hold-out table) or cv")
    if select == "holdout" and not cfg.get("holdout"):
        raise ConfigError("search.select: holdout needs a holdout section (a table the search never saw); add one or "
                          "set search.select: cv")
    tracking_cfg = dict(cfg.get("tracking") or {})
    use_mlflow = _bool(tracking_cfg.get("mlflow", False), "tracking.mlflow")
    out_dir = _out_dir(cfg)
    model_path = Path(str((cfg.get("output") or {}).get("model") or out_dir / "model.joblib"))
    log = JobLog("tune", progress)
    spark = _session(cfg, spark, log)
    tree = _load_tree(spark, cfg["tree"], log)
    if level not in tree.levels:
        raise ConfigError(f"tree.level={level} does not exist; the tree has levels {tree.level_sizes()} (0 is the root)")
    coreset = log.stage(f"collect level {level}", lambda: tree.get_coreset(level))
    log.note(f"coreset level {level}: {len(coreset)} rows standing for {coreset.weight.sum():.0f} input rows")
    configs = sum(len(c.grid()) for c in candidates) if method == "grid" else \
        _int(search.get("n_iter", 20), "search.n_iter", 1) * (len(candidates) if method == "random" else 1)
    result = log.stage(f"search: {configs} configurations x {cv} folds ({method}, {backend})", lambda: tuning.tune(
        candidates, coreset, scoring=search.get("scoring"), method=method, cv=cv,
        n_iter=_int(search.get("n_iter", 20), "search.n_iter", 1), seed=_int(search.get("seed", 0), "search.seed", 0),
        backend=backend, spark=spark if backend == "spark" else None, n_jobs=_int(search.get("n_jobs", 1), "search.n_jobs"),
        batch_size=_int(search.get("batch_size", 8), "search.batch_size", 1), progress=log.say))
    for row in result.table()[:5]:
        log.note(f"  cv {result.scoring} {row['cv_score']:.4f} +- {row['cv_std']:.4f}  {row['candidate']} {row['params']}")
    finalists: list[dict[str, Any]] = []
    if cfg.get("holdout"):
        from coreset_spark.spark.evaluate import validate_finalists

        df, _, lineage = read_input(spark, cfg["holdout"], "holdout")
        finalists = log.stage(f"validate {top} finalists on the hold-out table (Spark)", lambda: validate_finalists(
            result, df, tree, top=top, coreset=coreset))
        log.reads("holdout", lineage, rows=int(finalists[0]["holdout"].get("rows", 0)) if finalists else 0)
        for row in finalists:
            log.note(f"  finalist {row['rank']}: cv {row['cv_score']:.4f}, hold-out {row['holdout_score']:.4f}  "
                     f"{row['candidate']} {row['params']}")
        chosen = max(finalists, key=lambda r: r["holdout_score"]) if select == "holdout" else finalists[0]
        model = chosen["model"]
    else:
        best = result.best
        chosen = {"rank": 1, "candidate": best.candidate, "params": best.params, "cv_score": best.score,
                  "cv_std": best.std, "holdout_score": None, "holdout": None}
        model = result.best_estimator_
    selected = {k: v for k, v in chosen.items() if k != "model"}
    log.note(f"selected {selected['candidate']} {selected['params']} (by {select})")
    assert tree.store is not None
    bundle = {"format": MODEL_FORMAT, "model": model, "task": tree.task, "classes": list(tree.classes),
              "feature_names": list(tree.encoder.feature_names), "scoring": result.scoring,
              "tree": {"path": tree.store.path, "version": tree.store.version, "level": level},
              **{k: selected[k] for k in ("candidate", "params", "cv_score", "holdout_score", "holdout")},
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    log.stage("save model", lambda: save_model(bundle, model_path))
    log.writes("model", str(model_path))
    mlflow_info = None
    if use_mlflow:
        from coreset_spark.tracking import log_search

        uri = str(tracking_cfg.get("tracking_uri") or f"sqlite:///{(out_dir / 'mlflow.db').resolve()}")
        (out_dir).mkdir(parents=True, exist_ok=True)
        result.best_estimator_ = model  # the logged model is the one saved above
        run_id = log.stage("log MLflow run", lambda: log_search(
            result, coreset, tree, validation=finalists or None, tracking_uri=uri,
            experiment=str(tracking_cfg.get("experiment", "coreset_spark")), run_name=tracking_cfg.get("run_name"),
            log_model=_bool(tracking_cfg.get("log_model", True), "tracking.log_model")))
        mlflow_info = {"tracking_uri": uri, "run_id": run_id}
        log.writes("MLflow run", uri, run_id=run_id)
    return log.finish({
        "tree": _tree_summary(tree), "level": level, "coreset_rows": len(coreset),
        "coreset_weight": float(coreset.weight.sum()), "search": {
            "method": result.method, "scoring": result.scoring, "cv": result.cv, "backend": result.backend,
            "trials": result.table(), "seconds": result.seconds},
        "finalists": [{k: v for k, v in row.items() if k != "model"} for row in finalists],
        "select": select, "selected": selected, "model": str(model_path), "mlflow": mlflow_info}, out_dir)


def save_model(bundle: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a model bundle (the fitted model with its tree, classes and features) with joblib.

    >>> # save_model({"format": MODEL_FORMAT, "model": model, ...}, "output/jobs/adult/model.joblib")
    """
    import joblib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    joblib.dump(dict(bundle), tmp)
    tmp.replace(path)  # a reader never sees half a file
    return path


def load_model(path: str | os.PathLike[str], key: str = "model.path") -> dict[str, Any]:
    """Read a model bundle written by :func:`tune` (joblib; load only files you trust).

    >>> # bundle = load_model("output/jobs/adult/model.joblib"); bundle["model"].predict(x)
    """
    import joblib

    if not Path(path).is_file():
        raise ConfigError(f"{key}={str(path)!r} does not exist; run `coreset-spark tune` first or fix the path")
    try:
        bundle = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same mistake
        raise ConfigError(f"{key}={str(path)!r} is not a model file ({type(exc).__name__}: {exc}); give a file "
                          "written by `coreset-spark tune`") from exc
    if not isinstance(bundle, dict) or bundle.get("format") != MODEL_FORMAT:
        raise ConfigError(f"{key}={str(path)!r} is not a model file written by `coreset-spark tune` (format "
                          f"{MODEL_FORMAT})")
    return bundle


def _models_and_tree(spark: SparkSession, cfg: Mapping[str, Any], models: Mapping[str, str], keys: Mapping[str, str],
                     log: JobLog) -> tuple[dict[str, dict[str, Any]], CoresetTree]:
    """Model bundles (``keys``: the config key naming each, for errors) and the tree they were tuned on."""
    bundles = {name: load_model(path, keys[name]) for name, path in models.items()}
    for name, path in models.items():
        log.reads("model" if name == "model" else f"model {name}", {"format": "joblib", "path": str(path)},
                  candidate=bundles[name]["candidate"])
    tree_cfg = dict(cfg.get("tree") or {})
    if not tree_cfg.get("path"):
        recorded = {(b["tree"]["path"], b["tree"]["version"]) for b in bundles.values()}
        if len(recorded) > 1:
            raise ConfigError(f"the models were tuned on different trees {sorted(recorded)}; set tree.path (and "
                              "tree.version) to the one whose encoding they share")
        tree_cfg = {"path": next(iter(recorded))[0], "version": next(iter(recorded))[1]}
    tree = _load_tree(spark, tree_cfg, log)
    for name, bundle in bundles.items():
        if [str(c) for c in bundle["classes"]] != [str(c) for c in tree.classes] or \
                list(bundle["feature_names"]) != list(tree.encoder.feature_names):
            raise ConfigError(f"model {name!r} ({models[name]}) was trained on another encoding than the tree at "
                              f"{tree_cfg['path']!r} (classes or features differ); set tree.path to the tree it was "
                              f"tuned on ({bundle['tree']['path']})")
    return bundles, tree


# ---------------------------------------------------------------------------------------------
# evaluate and score


def evaluate(config: Mapping[str, Any], spark: SparkSession | None = None, progress: Progress | None = print
             ) -> dict[str, Any]:
    """Evaluate the ``models`` (``{name: model file}``) on the ``table`` in Spark, one pass for all of
    them; the encoding is the tree's (``tree.path``, default the tree the models were tuned on).

    >>> # evaluate({"models": {"tuned": "output/jobs/adult/model.joblib"},
    >>> #           "table": {"dataset": "adult"}})["metrics"]["tuned"]["accuracy"]
    """
    from coreset_spark.spark.evaluate import evaluate_many

    cfg = check_config("evaluate", config)
    models = {str(k): str(v) for k, v in cfg["models"].items()}
    log = JobLog("evaluate", progress)
    spark = _session(cfg, spark, log)
    bundles, tree = _models_and_tree(spark, cfg, models, {n: f"models.{n}" for n in models}, log)
    df, _, lineage = read_input(spark, cfg["table"], "table")
    metrics = log.stage(f"evaluate {len(models)} model(s) (Spark)", lambda: evaluate_many(
        {name: b["model"] for name, b in bundles.items()}, df, tree))
    log.reads("table", lineage, rows=int(next(iter(metrics.values())).get("rows", 0)))
    keys = ("accuracy", "log_loss", "roc_auc", "f1_macro") if tree.task == "classification" else ("rmse", "mae", "r2")
    log.note(f"{'model':<16}" + "".join(f"{k:>11}" for k in keys))
    for name, m in metrics.items():
        log.note(f"{name:<16}" + "".join(f"{_num(m.get(k)):>11}" for k in keys))
    return log.finish({"tree": _tree_summary(tree), "table": lineage, "metrics": metrics,
                       "models": {n: {"path": models[n], **{k: bundles[n][k] for k in ("candidate", "params", "scoring")}}
                                  for n in models}}, _out_dir(cfg))


def _num(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def score(config: Mapping[str, Any], spark: SparkSession | None = None, progress: Progress | None = print
          ) -> dict[str, Any]:
    """Score the ``table`` with ``model.path`` in Spark and write the predictions to ``predictions.path``
    (Delta, one transaction): the ``predictions.keep`` columns (default the tree's row id), the
    ``prediction`` and, for classifiers, the ``probability`` of each class.

    >>> # score({"model": {"path": "output/jobs/adult/model.joblib"}, "table": {"dataset": "adult"},
    >>> #        "predictions": {"path": "output/jobs/adult/predictions"}})["predictions"]["version"]
    """
    from coreset_spark.spark.predict import predict_table, write_predictions

    cfg = check_config("score", config)
    out = dict(cfg["predictions"])
    keep = out.get("keep")
    if keep is not None and (not isinstance(keep, list) or not all(isinstance(k, str) for k in keep)):
        raise ConfigError(f"predictions.keep={keep!r} must be a list of column names, e.g. [rid]")
    probability = _bool(out.get("probability", True), "predictions.probability")
    log = JobLog("score", progress)
    spark = _session(cfg, spark, log)
    bundles, tree = _models_and_tree(spark, cfg, {"model": str(cfg["model"]["path"])}, {"model": "model.path"}, log)
    df, _, lineage = read_input(spark, cfg["table"], "table")
    log.reads("table", lineage)
    predictions = predict_table(bundles["model"]["model"], df, tree, keep=keep, probability=probability)
    info = log.stage("score and write predictions", lambda: write_predictions(
        predictions, str(out["path"]), mode=str(out.get("mode", "overwrite")), format=str(out.get("format", "delta"))))
    log.writes("predictions", info["path"], info.get("version"), rows=info["rows"], columns=predictions.columns)
    return log.finish({"tree": _tree_summary(tree), "table": lineage, "predictions": {**info, "columns": predictions.columns}},
                      _out_dir(cfg))


# ---------------------------------------------------------------------------------------------
# clean

FIX_KEYS = ("remove", "targets", "seen")


def read_fixes(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A reviewed fixes file (YAML or JSON): ``remove`` (row ids to delete), ``targets``
    (``{row id: new label}``) and ``seen`` (row ids reviewed and found fine).

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
    ...     _ = f.write("remove: [17, 42]\\ntargets: {'7': '>50K'}\\n")
    >>> read_fixes(f.name)
    {'remove': [17, 42], 'targets': {7: '>50K'}, 'seen': []}
    """
    if not Path(path).is_file():
        raise ConfigError(f"fixes.file={str(path)!r} does not exist; write the reviewed fixes there (remove: [ids], "
                          "targets: {id: label}, seen: [ids]) or set fixes.file: null")
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"fixes.file={str(path)!r} must hold a mapping with {list(FIX_KEYS)}")
    unknown = sorted(set(data) - set(FIX_KEYS))
    if unknown:
        raise ConfigError(f"fixes.file={str(path)!r} has unknown key(s) {unknown}; use {list(FIX_KEYS)}")
    remove, seen = data.get("remove") or [], data.get("seen") or []
    targets = data.get("targets") or {}
    if not isinstance(remove, list) or not isinstance(seen, list) or not isinstance(targets, Mapping):
        raise ConfigError(f"fixes.file={str(path)!r}: remove and seen must be lists of row ids, targets a mapping "
                          "{row id: new label}")
    both = set(map(_row_key, remove)) & set(map(_row_key, targets))
    if both:
        raise ConfigError(f"fixes.file={str(path)!r}: row ids {sorted(both, key=str)[:5]} are both removed and relabeled; "
                          "keep one fix per row")
    return {"remove": [_row_key(i) for i in remove], "targets": {_row_key(k): v for k, v in targets.items()},
            "seen": [_row_key(i) for i in seen]}


def _row_key(value: Any) -> Any:
    """Row ids from YAML/JSON: integers stay integers (JSON keys are strings: '17' -> 17)."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


def _as_class(tree: CoresetTree, label: Any, key: str) -> Any:
    if label in tree.classes:
        return label
    by_text = {str(c): c for c in tree.classes}
    if str(label) in by_text:
        return by_text[str(label)]
    raise ConfigError(f"{key}: {label!r} is not a class of this tree {[str(c) for c in tree.classes][:10]}; use one of them")


def clean(config: Mapping[str, Any], spark: SparkSession | None = None, progress: Progress | None = print
          ) -> dict[str, Any]:
    """Apply reviewed fixes and list the rows of the tree most likely mislabeled.

    With ``fixes.file``: its ``remove`` ids are deleted and its ``targets`` relabeled in the tree's
    source Delta table (``fixes.table``, default the table the tree records; one transaction each)
    and in the tree, the reviewed rows are marked seen (``fixes.mark_seen``), and the tree is saved.
    Then every row of a tree level (``tree.level``, default the leaf level) is scored out of fold
    (:meth:`~coreset_spark.coreset.CoresetTree.suspicious_rows`) and the top ``review.n`` (or
    ``review.per_class``) are written to ``<output.path>/suspicious_rows.csv``.

    >>> # clean({"tree": {"path": "output/jobs/adult/tree"}, "review": {"n": 20}})["suspicious"][0]["row_id"]
    """
    from coreset_spark.tuning import estimator_from_path

    cfg = check_config("clean", config)
    review = dict(cfg.get("review") or {})
    fixes_cfg = dict(cfg.get("fixes") or {})
    fixes = read_fixes(str(fixes_cfg["file"])) if fixes_cfg.get("file") else None
    mark = _bool(fixes_cfg.get("mark_seen", True), "fixes.mark_seen")
    n = review.get("n", 50)
    n = None if n is None else _int(n, "review.n", 1)
    per_class = review.get("per_class")
    if per_class is not None and not isinstance(per_class, Mapping):
        raise ConfigError(f"review.per_class={per_class!r} must be a mapping {{label: rows}}, e.g. {{'>50K': 20}}")
    folds = _int(review.get("folds", 5), "review.folds", 2)
    estimator = estimator_from_path(review["estimator"], review.get("params")) if review.get("estimator") else None
    level = cfg["tree"].get("level")
    out_dir = _out_dir(cfg)
    log = JobLog("clean", progress)
    spark = _session(cfg, spark, log)
    tree = _load_tree(spark, cfg["tree"], log)
    path = str(cfg["tree"]["path"])
    applied: dict[str, Any] = {}
    if fixes is not None and any(fixes.values()):
        table = fixes_cfg.get("table")
        source = tree.source or {}
        if not table and source.get("format") != "delta":
            raise ConfigError(f"fixes are written to the tree's source Delta table, but this tree records "
                              f"{describe(source) if source else 'no source'}; set fixes.table to the Delta table the "
                              "tree was built from, or build the tree from a Delta table (input.format: delta)")
        table_path = str(table or source["path"])
        log.reads("fixes", {"format": "yaml", "path": str(fixes_cfg["file"])},
                  remove=len(fixes["remove"]), relabel=len(fixes["targets"]), seen=len(fixes["seen"]))
        if fixes["remove"]:
            tree = log.stage(f"remove {len(fixes['remove'])} rows (table and tree)", lambda: tree.remove_rows(
                fixes["remove"], table=table_path, progress=progress))
        if fixes["targets"]:
            targets = {k: _as_class(tree, v, f"fixes.file targets[{k!r}]") for k, v in fixes["targets"].items()}
            tree = log.stage(f"relabel {len(targets)} rows (table and tree)", lambda: tree.update_targets(
                targets, table=table_path, progress=progress))
        if fixes["remove"] or fixes["targets"]:
            log.writes("source table", table_path, int(tree.source["version"]), removed=len(fixes["remove"]),
                       relabeled=len(fixes["targets"]))
        reviewed = [i for i in [*fixes["targets"], *fixes["seen"]] if isinstance(i, int)]
        if mark and reviewed:
            tree = tree.mark_seen(reviewed)
        version = log.stage("save tree", lambda: tree.save(path, format=_store_format(tree)))
        log.writes("tree", path, version)
        applied = {"table": table_path, "table_version": tree.source.get("version"), "tree_version": version,
                   "removed": fixes["remove"], "relabeled": {str(k): str(v) for k, v in fixes["targets"].items()},
                   "marked_seen": reviewed if mark else []}
    if per_class is not None:
        per_class = {_as_class(tree, k, f"review.per_class[{k!r}]"): _int(v, f"review.per_class[{k!r}]", 0)
                     for k, v in per_class.items()}
    the_level = tree.plan.levels if level is None else _int(level, "tree.level", 0)
    frame = log.stage(f"score the rows of level {the_level} out of fold ({folds} folds)", lambda: tree.suspicious_rows(
        n=n, per_class=per_class, level=the_level, estimator=estimator, folds=folds,
        include_seen=_bool(review.get("include_seen", False), "review.include_seen")))
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "suspicious_rows.csv"
    frame.to_csv(csv_path, index=False, quoting=csv.QUOTE_NONNUMERIC)
    log.writes("suspicious rows", str(csv_path), rows=len(frame))
    for row in frame.head(10).itertuples():
        log.note(f"  row {row.row_id}: label {row.label!r}, model says {row.predicted!r} "
                 f"(p(label) {row.p_label:.3f}), score {row.score:.2f}")
    return log.finish({"tree": _tree_summary(tree), "level": the_level, "fixes": applied or None,
                       "suspicious": frame.to_dict(orient="records"), "suspicious_file": str(csv_path)}, out_dir)


# ---------------------------------------------------------------------------------------------
# Entry points shared by the CLI, the jobs and the notebooks

COMMANDS: dict[str, Callable[..., dict[str, Any]]] = {
    "build": build, "update": update, "tune": tune, "evaluate": evaluate, "score": score, "clean": clean,
}


def apply_overrides(config: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to a configuration;
    ``section=<YAML mapping or list>`` replaces a whole section.

    >>> apply_overrides({"coreset": {"size": 1}}, ["coreset.size=5", "input.where=pmod(rid, 10) < 6"])
    {'coreset': {'size': 5}, 'input': {'where': 'pmod(rid, 10) < 6'}}
    >>> apply_overrides({"input": {"dataset": "adult"}}, ["input={format: delta, path: /data/events}"])
    {'input': {'format': 'delta', 'path': '/data/events'}}
    """
    for item in overrides:
        item = item.strip()
        path, _, text = item.partition("=")
        value = yaml.safe_load(text) if _ else None
        if not _ or not path.strip() or ("." not in path and not isinstance(value, (dict, list))):
            raise ConfigError(f"override {item!r} must look like section.key=value, e.g. coreset.size=5000 (or "
                              "section=<YAML mapping or list>, e.g. 'input={format: delta, path: /data/events}')")
        *sections, key = path.strip().split(".")
        node = config
        for section in sections:
            child = node.get(section)
            if child is None:
                child = node[section] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {section!r} is not a section of keys (it holds {child!r}); "
                                  "replace it whole with section=<YAML value>")
            node = child
        node[key] = value
    return config


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """A YAML configuration with ``section.key=value`` overrides applied.

    >>> load_config("conf/build.yaml", ["coreset.size=500"])["coreset"]["size"]  # doctest: +SKIP
    500
    """
    return apply_overrides(load_yaml(path), overrides)


def notebook_parameters(defaults: Mapping[str, str], dbutils: Any = None) -> dict[str, str]:
    """A notebook's parameters: Databricks text widgets (``dbutils.widgets.text`` / ``get``) when
    ``dbutils`` is given, else the environment variables ``CORESET_SPARK_WIDGET_<NAME>``, else the defaults.

    >>> notebook_parameters({"config": "../conf/build.yaml"})["config"]
    '../conf/build.yaml'
    """
    if dbutils is not None:
        for name, default in defaults.items():
            dbutils.widgets.text(name, default)
        return {name: str(dbutils.widgets.get(name)) for name in defaults}
    return {name: os.environ.get(f"CORESET_SPARK_WIDGET_{name.upper()}", default) for name, default in defaults.items()}


def notebook_config(parameters: Mapping[str, str]) -> dict[str, Any]:
    """The configuration a notebook runs: the YAML file ``parameters["config"]`` with the
    ``parameters["overrides"]`` (``section.key=value`` separated by ``;``) applied.

    >>> # notebook_config({"config": "../conf/build.yaml", "overrides": "coreset.size=500; tree.path=/tmp/t"})
    """
    overrides = [item for item in str(parameters.get("overrides") or "").split(";") if item.strip()]
    return load_config(parameters["config"], overrides)


__all__ = ["COMMANDS", "JobLog", "apply_overrides", "build", "check_config", "clean", "data_spec", "describe",
           "evaluate", "load_config", "load_model", "notebook_config", "notebook_parameters", "read_fixes",
           "read_input", "save_model", "score", "tune", "update"]
