#!/usr/bin/env bash
# Stop the cluster that scripts/cluster_start.sh started (`make cluster-stop`), by the PIDs it recorded
# in output/cluster/run/ (each daemon's own process group, workers first); nothing else is touched.
# Pass the same --state-dir as to cluster_start.sh if you changed it.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${VENV:-.venv}/bin/python" -m coreset_spark.cluster stop "$@"
