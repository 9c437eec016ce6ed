"""coreset_spark: weighted coresets of huge Spark tables for fast, faithful scikit-learn training.

>>> from coreset_spark import CoresetParams
>>> CoresetParams(size=500).family
'logistic'
"""

from coreset_spark.config import ConfigError, CoresetParams, DataError, DataSpec, SparkSettings
from coreset_spark.coreset import Coreset, CoresetTree, read_saved_level, saved_lineage
from coreset_spark.driver import fit_weighted, grid_search
from coreset_spark.spark.build import build_tree
from coreset_spark.spark.evaluate import evaluate_many
from coreset_spark.spark.frame import with_row_ids
from coreset_spark.spark.session import get_spark

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "Coreset", "CoresetParams", "CoresetTree", "DataError", "DataSpec", "SparkSettings",
    "build_tree", "evaluate_many", "fit_weighted", "get_spark", "grid_search", "read_saved_level",
    "saved_lineage", "with_row_ids",
]
