"""A killed executor JVM gives the same coreset: local-cluster[2,1,1024] (two executor JVMs) in a
separate process, one executor SIGKILLed by PID while the leaves are sampled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_killed_executor_gives_the_identical_coreset(data_dir):
    env = {**os.environ, "CORESET_SPARK_DATA_DIR": str(data_dir), "PYSPARK_PYTHON": sys.executable}
    env.setdefault("CORESET_SPARK_JARS_DIR", str(Path(__file__).resolve().parents[1] / ".jars"))
    script = Path(__file__).with_name("cluster_fault_job.py")
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(result["executors_before"]) == 2, result
    assert result["killed"] and result["killed_pid_gone"] and result["killed_during_build"], result
    # The worker replaced the dead executor: an executor id that did not exist before the kill.
    assert set(result["executors_after"]) - set(result["executors_before"]), result
    assert result["same"], result
