"""Score a table with a saved model and write the predictions (Delta): `coreset-spark score` as a spark-submit entry point.

    PYSPARK_PYTHON=.venv/bin/python spark-submit --jars "$(ls .jars/*.jar | paste -sd, -)" \
        jobs/score.py --config conf/score.yaml [--set section.key=value ...]

The work is :func:`coreset_spark.commands.score`; exit codes 0 done, 2 bad config or input, 1 anything else.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from coreset_spark.cli import main as cli


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``--config`` and ``--set`` and run the score job; returns the exit code."""
    return cli(["score", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
