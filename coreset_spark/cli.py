"""The ``coreset-spark`` command.

    coreset-spark run --config conf/demo.yaml [--set coreset.size=5000 ...]

Exit codes: 0 done, 2 bad configuration or input (the message names the key or column and the fix),
1 anything else.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from coreset_spark.config import ConfigError, DataError, load_yaml


def apply_overrides(config: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML).

    >>> apply_overrides({"coreset": {"size": 1}}, ["coreset.size=5"])["coreset"]["size"]
    5
    """
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"--set {item!r} must look like section.key=value, e.g. coreset.size=5000")
        path, value = item.split("=", 1)
        *sections, key = path.split(".")
        node = config
        for section in sections:
            node = node.setdefault(section, {})
        node[key] = yaml.safe_load(value)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = argparse.ArgumentParser(prog="coreset-spark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the main job: build, save, train, tune, compare")
    run.add_argument("--config", required=True, help="YAML job configuration (see conf/)")
    run.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override one setting; repeatable")
    args = parser.parse_args(argv)
    try:
        config = apply_overrides(load_yaml(args.config), args.set)
        from coreset_spark.job import run_main_job

        run_main_job(config)
    except (ConfigError, DataError) as exc:
        print(f"coreset-spark: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
