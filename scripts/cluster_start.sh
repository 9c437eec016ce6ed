#!/usr/bin/env bash
# Start a standalone Spark cluster on this machine (`make cluster-start`): a master on
# spark://127.0.0.1:7077 (UI :8080) and two workers of 1 core and 1536 MB each (UIs :8081, :8082),
# from the pip-installed pyspark's spark-class. PIDs, logs and work folders go to output/cluster/run/.
# Options (see python -m coreset_spark.cluster --help): --master-port, --master-ui-port,
# --worker-ui-port, --workers, --worker-cores, --worker-memory, --state-dir.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${VENV:-.venv}/bin/python" -m coreset_spark.cluster start "$@"
