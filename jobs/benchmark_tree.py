"""Benchmark: keeping a coreset tree (incremental growth, changes by id, cleaning, interrupted saves).

    python jobs/benchmark_tree.py --config conf/benchmark_tree.yaml

Writes benchmark_tree.json and benchmark_tree.md to the config's output.path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coreset_spark.config import load_yaml
from coreset_spark.job import spark_settings
from coreset_spark.spark.session import get_spark
from coreset_spark.tree_benchmark import run_tree_benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="conf/benchmark_tree.yaml")
    parser.add_argument("--out", default=None, help="output folder (default: the config's output.path)")
    args = parser.parse_args(argv)
    config = load_yaml(args.config)
    spark = get_spark(spark_settings(config.get("spark")))
    spark.sparkContext.setLogLevel("ERROR")
    out = Path(args.out or config.get("output", {}).get("path", "output/benchmarks"))
    run_tree_benchmark(spark, config, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
