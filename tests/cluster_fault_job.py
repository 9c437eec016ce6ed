"""Run by test_cluster_faults.py in its own Spark: ``local-cluster[2,1,1024]``, two executor JVMs.

Builds the same coreset twice on a small real subset: once undisturbed, once with one executor JVM
SIGKILLed (found by PID: a CoarseGrainedExecutorBackend child of this driver's JVM with this app's
id) shortly after the leaf-sampling stage starts. Prints one JSON line comparing the two.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time

from pyspark.sql import functions as F

from coreset_spark import CoresetParams, DataSpec, SparkSettings, build_tree, datasets, get_spark
from coreset_spark.cluster import EXECUTOR_CLASS, executor_pids, parent_pid, process_cmdline, spark_home
from coreset_spark.cluster_check import compare_coresets
from coreset_spark.spark.frame import with_row_ids
from coreset_spark.tree import CORESET_SCHEMA


def driver_jvm() -> int:
    """This Python's JVM: its child java process (the local-cluster's workers launch executors from it)."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and parent_pid(int(entry)) == me and "java" in " ".join(process_cmdline(int(entry))[:1]):
            return int(entry)
    raise RuntimeError("no driver JVM found among this process's children")


def main() -> None:
    spark = get_spark(SparkSettings(master="local-cluster[2,1,1024]", app_name="coreset_spark-executor-kill", conf={
        "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2", "spark.executor.memory": "768m",
        "spark.ui.showConsoleProgress": "false"}))
    spark.sparkContext.setLogLevel("OFF")
    app_id, jvm = spark.sparkContext.applicationId, driver_jvm()
    df, _ = datasets.load(spark, "kddcup99")
    df = df.where(F.pmod(F.xxhash64(*df.columns), F.lit(40)) == 0)
    df = with_row_ids(df, "rid").repartition(2).cache()
    spec = DataSpec(target="is_attack", row_id="rid")
    params = CoresetParams(size=200, seed=11, fanin=4)

    def all_levels(tree):  # type: ignore[no-untyped-def]
        tables = [tree.level_frame(k).toArrow().cast(CORESET_SCHEMA) for k in sorted(tree.level_sizes())]
        import pyarrow as pa

        return pa.concat_tables(tables).sort_by([("level", "ascending"), ("row_id", "ascending")])

    calm = all_levels(build_tree(df, spec, params))
    before = executor_pids(app_id, parents=[jvm])
    kill: dict = {}

    def kill_one_executor() -> None:
        time.sleep(0.3)
        executor_id, pid = next(iter(executor_pids(app_id, parents=[jvm]).items()))
        assert EXECUTOR_CLASS in process_cmdline(pid)
        os.kill(pid, signal.SIGKILL)
        kill.update(executor_id=executor_id, pid=pid, at=time.perf_counter())

    def progress(line: str) -> None:
        if line.startswith("[coreset] sample leaves") and line.endswith("...") and not kill:
            threading.Thread(target=kill_one_executor, daemon=True).start()

    started = time.perf_counter()
    disturbed = build_tree(df, spec, params, progress)
    levels = disturbed.level_sizes()
    disturbed_table = all_levels(disturbed)
    build_end = time.perf_counter()
    after = executor_pids(app_id, parents=[jvm])
    comparison = compare_coresets(calm, disturbed_table)
    print(json.dumps({
        "same": comparison["same"], "different_columns": comparison["different_columns"], "rows": comparison["rows"],
        "levels": levels, "executors_before": before, "executors_after": after,
        "killed": {k: v for k, v in kill.items() if k != "at"}, "killed_pid_gone": not process_cmdline(kill.get("pid", 0)),
        "killed_during_build": bool(kill) and started < kill["at"] < build_end}))
    sys.stdout.flush()
    spark.stop()
    # local-cluster's workers keep each application's executor folders in $SPARK_HOME/work: drop ours.
    shutil.rmtree(spark_home() / "work" / app_id, ignore_errors=True)


if __name__ == "__main__":
    main()
