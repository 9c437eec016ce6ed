"""Train and tune on a saved coreset tree, validate the finalists on a hold-out table, save the best model:
`coreset-spark tune` as a spark-submit entry point.

    PYSPARK_PYTHON=.venv/bin/python spark-submit --jars "$(ls .jars/*.jar | paste -sd, -)" \
        jobs/tune.py --config conf/tune.yaml [--set section.key=value ...]

The work is :func:`coreset_spark.commands.tune`; exit codes 0 done, 2 bad config or input, 1 anything else.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from coreset_spark.cli import main as cli


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``--config`` and ``--set`` and run the tune job; returns the exit code."""
    return cli(["tune", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
