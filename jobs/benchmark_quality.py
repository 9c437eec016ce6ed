"""Benchmark: every coreset family against uniform sampling and the full-data model.

    python jobs/benchmark_quality.py --config conf/benchmark_quality.yaml [--only kdd_logistic ...] [--seeds 5]

Writes quality.json, quality.md and quality_<experiment>.png to the config's output.path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coreset_spark.config import load_yaml
from coreset_spark.job import spark_settings
from coreset_spark.quality import run_quality_benchmark
from coreset_spark.spark.session import get_spark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="conf/benchmark_quality.yaml")
    parser.add_argument("--out", default=None, help="output folder (default: the config's output.path)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these experiments")
    parser.add_argument("--seeds", type=int, default=None, help="override the number of seeds")
    args = parser.parse_args(argv)
    config = load_yaml(args.config)
    if args.only:
        config["only"] = args.only
    if args.seeds:
        config.setdefault("defaults", {})["seeds"] = args.seeds
    spark = get_spark(spark_settings(config.get("spark")))
    spark.sparkContext.setLogLevel("ERROR")
    out = Path(args.out or config.get("output", {}).get("path", "output/benchmarks"))
    run_quality_benchmark(spark, config, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
