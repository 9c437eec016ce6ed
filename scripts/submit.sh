#!/usr/bin/env bash
# spark-submit a job with the packaged library (run `make package` first):
#   scripts/submit.sh spark://127.0.0.1:7077 jobs/main_job.py run --config conf/demo.yaml \
#       --set spark.master=spark://127.0.0.1:7077 --set output.path=$PWD/output/cluster/standalone
# ships dist/coreset_spark.zip (--py-files), dist/coreset_env.tar.gz#environment (--archives; executors
# run ./environment/bin/python) and the Delta jars of $CORESET_SPARK_JARS_DIR (--jars); the driver runs
# .venv's Python (client mode). A local[...] master skips the packed environment.
# SUBMIT_DRY_RUN=1 prints the spark-submit command instead.
set -euo pipefail
cd "$(dirname "$0")/.."
MASTER=${1:?usage: scripts/submit.sh MASTER APP [ARGS...]}
shift
exec "${VENV:-.venv}/bin/python" -m coreset_spark.submit spark-submit --master "$MASTER" \
    ${SUBMIT_DRY_RUN:+--dry-run} "$@"
