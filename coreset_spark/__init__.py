"""coreset_spark: weighted coresets of huge Spark tables for fast, faithful scikit-learn training.

>>> from coreset_spark import CoresetParams
>>> CoresetParams(size=500).family
'logistic'

The names below are imported on first use: a Spark executor's Python worker that only samples
(``coreset_spark.tree`` and the family modules: NumPy and Arrow) does not pay for scikit-learn,
SciPy and pandas at start-up (about 1.8 s per worker process).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "ConfigError": "coreset_spark.config", "CoresetParams": "coreset_spark.config", "DataError": "coreset_spark.config",
    "DataSpec": "coreset_spark.config", "SparkSettings": "coreset_spark.config",
    "Coreset": "coreset_spark.coreset", "CoresetTree": "coreset_spark.coreset",
    "read_saved_level": "coreset_spark.coreset", "saved_lineage": "coreset_spark.coreset",
    "fit_weighted": "coreset_spark.driver", "grid_search": "coreset_spark.driver",
    "build_tree": "coreset_spark.spark.build", "evaluate_many": "coreset_spark.spark.evaluate",
    "with_row_ids": "coreset_spark.spark.frame", "get_spark": "coreset_spark.spark.session",
}

__all__ = [
    "ConfigError", "Coreset", "CoresetParams", "CoresetTree", "DataError", "DataSpec", "SparkSettings",
    "build_tree", "evaluate_many", "fit_weighted", "get_spark", "grid_search", "read_saved_level",
    "saved_lineage", "with_row_ids",
]

if TYPE_CHECKING:
    from coreset_spark.config import ConfigError, CoresetParams, DataError, DataSpec, SparkSettings
    from coreset_spark.coreset import Coreset, CoresetTree, read_saved_level, saved_lineage
    from coreset_spark.driver import fit_weighted, grid_search
    from coreset_spark.spark.build import build_tree
    from coreset_spark.spark.evaluate import evaluate_many
    from coreset_spark.spark.frame import with_row_ids
    from coreset_spark.spark.session import get_spark


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'coreset_spark' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
