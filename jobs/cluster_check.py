"""The cluster check: the main job via spark-submit on a standalone cluster on this machine gives the
bitwise identical coreset as in local mode, survives a killed executor, and a job killed during its
Delta save leaves the previous coreset intact. Writes output/cluster/cluster_check.json and .md.

    make package && .venv/bin/python jobs/cluster_check.py      # or: make cluster-check

Starts the cluster (scripts/cluster_start.sh's) unless it is already running, and then stops it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coreset_spark.cluster import ClusterSpec
from coreset_spark.cluster_check import CheckSettings, run_cluster_check
from coreset_spark.config import ConfigError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="conf/demo.yaml", help="the main job's config")
    parser.add_argument("--out", type=Path, default=Path("output/cluster"))
    parser.add_argument("--local-master", default="local[2]")
    parser.add_argument("--kill-stage", default="sample leaves", help="build stage during which an executor dies")
    parser.add_argument("--kill-delay", type=float, default=2.0, help="seconds after that stage starts")
    parser.add_argument("--master-port", type=int, default=7077)
    parser.add_argument("--master-ui-port", type=int, default=8080)
    parser.add_argument("--worker-ui-port", type=int, default=8081)
    parser.add_argument("--state-dir", type=Path, help="the cluster's PID/log folder (default OUT/run)")
    args = parser.parse_args(argv)
    spec = ClusterSpec(master_port=args.master_port, master_ui_port=args.master_ui_port,
                       worker_ui_port=args.worker_ui_port, state_dir=args.state_dir or args.out / "run")
    settings = CheckSettings(config=args.config, out_dir=args.out, local_master=args.local_master,
                             kill_stage=args.kill_stage, kill_delay_s=args.kill_delay, cluster=spec)
    try:
        report = run_cluster_check(settings)
    except ConfigError as exc:
        print(f"cluster_check: error: {exc}", file=sys.stderr)
        return 2
    return 0 if all(report["verdict"].values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
