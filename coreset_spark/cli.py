"""The ``coreset-spark`` command.

    coreset-spark run      --config conf/demo.yaml      the main job: build, save, train, tune, compare
    coreset-spark build    --config conf/build.yaml     build a coreset tree of a table and save it (Delta)
    coreset-spark update   --config conf/update.yaml    add new rows to a saved tree (incremental)
    coreset-spark tune     --config conf/tune.yaml      search models on the tree, validate, save the best
    coreset-spark evaluate --config conf/evaluate.yaml  metrics of saved models on a table (Spark)
    coreset-spark score    --config conf/score.yaml     write predictions for a table (Delta)
    coreset-spark clean    --config conf/clean.yaml     apply label fixes, list suspicious rows

Every command takes ``--set section.key=value`` (repeatable; the value is read as YAML) to override
one setting of its file, e.g. ``--set coreset.size=5000``. See ``coreset_spark.commands``.

Exit codes: 0 done, 2 bad configuration or input (the message names the key or column, the value
and the fix), 1 anything else.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from coreset_spark.commands import apply_overrides
from coreset_spark.config import ConfigError, DataError, load_yaml

HELP = {
    "run": "the main job: build, save, train, tune, compare (conf/demo.yaml)",
    "build": "build a coreset tree of a table and save it as Delta (conf/build.yaml)",
    "update": "add new rows to a saved tree and save the changed nodes (conf/update.yaml)",
    "tune": "search models on a tree level, validate finalists on a hold-out table, save the best (conf/tune.yaml)",
    "evaluate": "metrics of saved models on a table, computed in Spark (conf/evaluate.yaml)",
    "score": "predictions of a saved model for a table, written as Delta (conf/score.yaml)",
    "clean": "apply reviewed label fixes, list the rows most likely mislabeled (conf/clean.yaml)",
}

__all__ = ["HELP", "apply_overrides", "main", "parser"]


def parser() -> argparse.ArgumentParser:
    """The argument parser: one subcommand per job, each with ``--config`` and ``--set``."""
    parser = argparse.ArgumentParser(prog="coreset-spark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in HELP.items():
        command = sub.add_parser(name, help=text, description=text)
        command.add_argument("--config", required=True, help="YAML job configuration (see conf/)")
        command.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                             help="override one setting; repeatable")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script (and of ``jobs/*.py``); returns the exit code.

    >>> main(["build", "--config", "conf/build.yaml", "--set", "coreset.sise=5"])  # doctest: +SKIP
    2
    """
    args = parser().parse_args(argv)
    try:
        config = apply_overrides(load_yaml(args.config), args.set)
        if args.command == "run":
            from coreset_spark.job import run_main_job

            run_main_job(config)
        else:
            from coreset_spark.commands import COMMANDS

            COMMANDS[args.command](config)
    except (ConfigError, DataError) as exc:
        print(f"coreset-spark {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001 - anything else: the traceback, and exit code 1
        traceback.print_exc()
        print(f"coreset-spark {args.command}: failed (see the traceback above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
