"""The search's Spark fan-out uses DataFrame operations only, so it runs through Spark Connect
(as on Databricks serverless): a real local Connect server in a separate process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_search_runs_through_spark_connect():
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    script = Path(__file__).with_name("connect_search.py")
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["session"] == "pyspark.sql.connect.session"
    assert result["best"] == result["local_best"] and result["same_scores"], result
