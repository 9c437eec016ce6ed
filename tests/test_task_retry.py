"""A retried task gives the same coreset: real task failures in a separate local[2,3] Spark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_retried_tasks_give_the_identical_coreset(data_dir, tmp_path):
    env = {**os.environ, "CORESET_SPARK_DATA_DIR": str(data_dir), "PYSPARK_PYTHON": sys.executable}
    env.setdefault("CORESET_SPARK_JARS_DIR", str(Path(__file__).resolve().parents[1] / ".jars"))
    script = Path(__file__).with_name("retry_job.py")
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["failures"] >= 4  # every input partition failed once, in each pass over the data
    assert result["same"], result
