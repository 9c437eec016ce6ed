"""Run by test_task_retry.py in its own Spark (local[2,3]: a failed task is retried up to 3 times).

Builds the same coreset twice: once undisturbed, once with every input task failing on its first
attempt (a pass-through mapInArrow that raises once per partition, remembered in marker files).
Prints one JSON line comparing the two.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from pyspark import TaskContext
from pyspark.sql import functions as F

from coreset_spark import CoresetParams, DataSpec, SparkSettings, build_tree, datasets, get_spark
from coreset_spark.spark.frame import with_row_ids


def main(markers: str) -> None:
    spark = get_spark(SparkSettings(master="local[2,3]", conf={
        "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "64"}))
    spark.sparkContext.setLogLevel("OFF")
    df, _ = datasets.load(spark, "kddcup99")
    df = df.where(F.pmod(F.xxhash64(*df.columns), F.lit(60)) == 0)
    df = with_row_ids(df, "rid").repartition(4).cache()
    spec = DataSpec(target="is_attack", row_id="rid")
    params = CoresetParams(size=200, seed=9, fanin=4)

    def fail_first_attempt(batches):  # type: ignore[no-untyped-def]
        context = TaskContext.get()
        marker = Path(markers) / f"stage{context.stageId()}-part{context.partitionId()}"
        if context.attemptNumber() == 0 and not marker.exists():
            marker.touch()
            raise RuntimeError("injected failure on a first task attempt")
        yield from batches

    flaky = df.mapInArrow(fail_first_attempt, df.schema)
    calm = build_tree(df, spec, params)
    retried = build_tree(flaky, spec, params)
    same = all(calm.level_frame(k).toArrow().sort_by("row_id").equals(retried.level_frame(k).toArrow().sort_by("row_id"))
               for k in calm.level_sizes())
    print(json.dumps({"same": same, "failures": len(os.listdir(markers)), "levels": calm.level_sizes()}))
    sys.stdout.flush()
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1])
