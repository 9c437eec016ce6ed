"""Benchmark: logistic-regression coresets against uniform samples and the full data.

    python jobs/benchmark_logistic.py --config conf/benchmark_logistic.yaml [--out output/benchmarks]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coreset_spark.benchmark import run_benchmark
from coreset_spark.config import load_yaml
from coreset_spark.job import spark_settings
from coreset_spark.spark.session import get_spark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="conf/benchmark_logistic.yaml")
    parser.add_argument("--out", default=None, help="output folder (default: the config's output.path)")
    args = parser.parse_args(argv)
    config = load_yaml(args.config)
    spark = get_spark(spark_settings(config.get("spark")))
    spark.sparkContext.setLogLevel("ERROR")
    run_benchmark(spark, config, Path(args.out or config.get("output", {}).get("path", "output/benchmarks")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
