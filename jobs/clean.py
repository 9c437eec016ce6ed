"""Apply reviewed label fixes and list the rows most likely mislabeled: `coreset-spark clean` as a spark-submit entry point.

    PYSPARK_PYTHON=.venv/bin/python spark-submit --jars "$(ls .jars/*.jar | paste -sd, -)" \
        jobs/clean.py --config conf/clean.yaml [--set section.key=value ...]

The work is :func:`coreset_spark.commands.clean`; exit codes 0 done, 2 bad config or input, 1 anything else.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from coreset_spark.cli import main as cli


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``--config`` and ``--set`` and run the clean job; returns the exit code."""
    return cli(["clean", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
