"""Run independent pieces of work as Spark tasks with DataFrame operations only.

``map_tasks(spark, tasks, work)`` makes a DataFrame of task numbers (``spark.range``), one
partition per task, and runs ``work(task) -> bytes`` on each with ``mapInArrow``; the results
come back in task order. No RDD API and no SparkContext: it runs on classic clusters, Spark
Connect and Databricks serverless alike. Whatever ``work`` needs travels in its closure (Spark
broadcasts a large one), so keep it to the small coreset, never a table.

>>> # map_tasks(spark, [0, 1, 2], lambda t: str(t * t).encode())   # [b'0', b'1', b'4']
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa

MAX_PARTITIONS = 1024


def map_tasks(spark: Any, tasks: Sequence[int], work: Callable[[int], bytes]) -> list[bytes]:
    """``[work(t) for t in tasks]``, each call a Spark task (at most 1,024 partitions)."""
    if not tasks:
        return []
    task_list = [int(t) for t in tasks]

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if not batch.num_rows:
                continue
            ids = batch.column(0).to_pylist()
            out = [work(task_list[i]) for i in ids]
            yield pa.RecordBatch.from_arrays([pa.array(ids, pa.int64()), pa.array(out, pa.binary())], ["i", "result"])

    frame = spark.range(0, len(task_list), 1, numPartitions=min(len(task_list), MAX_PARTITIONS))
    table = frame.mapInArrow(run, "i long, result binary").toArrow()
    by_index = dict(zip(table.column("i").to_pylist(), table.column("result").to_pylist()))
    missing = [i for i in range(len(task_list)) if i not in by_index]
    if missing:
        raise RuntimeError(f"Spark returned no result for task(s) {missing[:10]}")
    return [by_index[i] for i in range(len(task_list))]
