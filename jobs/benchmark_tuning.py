"""Benchmark: tuning on a coreset against the full data and against Spark MLlib's CrossValidator.

    python jobs/benchmark_tuning.py --config conf/benchmark_tuning.yaml [--only flights] [--skip mllib]

Writes benchmark_tuning.json and benchmark_tuning.md to the config's output.path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coreset_spark.config import load_yaml
from coreset_spark.job import spark_settings
from coreset_spark.spark.session import get_spark
from coreset_spark.tuning_benchmark import run_tuning_benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="conf/benchmark_tuning.yaml")
    parser.add_argument("--out", default=None, help="output folder (default: the config's output.path)")
    parser.add_argument("--only", action="append", default=[], help="run only this dataset entry (repeatable)")
    parser.add_argument("--skip", action="append", default=[], choices=["mllib", "distributed"],
                        help="leave out the MLlib comparison or the local-cluster search (repeatable)")
    args = parser.parse_args(argv)
    config = load_yaml(args.config)
    if args.only:
        config["datasets"] = {k: v for k, v in config["datasets"].items() if k in args.only}
    for part in args.skip:
        for entry in config["datasets"].values():
            entry[part] = None
    spark = get_spark(spark_settings(config.get("spark")))
    spark.sparkContext.setLogLevel("ERROR")
    out = Path(args.out or config.get("output", {}).get("path", "output/benchmarks"))
    run_tuning_benchmark(spark, config, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
