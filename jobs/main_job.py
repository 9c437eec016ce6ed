"""The main job as a spark-submit entry point (the same as `coreset-spark run`).

    PYSPARK_PYTHON=.venv/bin/python spark-submit --jars "$(ls .jars/*.jar | paste -sd, -)" \
        jobs/main_job.py run --config conf/demo.yaml
"""

from __future__ import annotations

import sys

from coreset_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
