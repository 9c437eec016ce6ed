"""JSON-ready forms of what a saved coreset tree must remember: pure Python, no Spark.

Class labels keep their type through JSON (a label ``1`` and a label ``"1"`` are different
classes), the table statistics and small Arrow tables (the node table) become plain lists.

>>> untag(tag(True)), untag(tag("a")), untag(tag(3)), untag(tag(2.5))
(True, 'a', 3, 2.5)
>>> stats = TableStats(3, 3.0, {"x": 2.0, "y": 1.0}, {"a": NumericStats(3, 3.0, 1.0, 0.5, 0.0, 2.0)}, {"c": {"u": 3}})
>>> stats_from_dict(stats_to_dict(stats)) == stats
True
"""

from __future__ import annotations

import datetime as _dt
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa

from coreset_spark.encoding import NumericStats, TableStats

FORMAT_VERSION = 1


def tag(value: Any) -> list[Any]:
    """A label as ``[type, value]`` so that JSON keeps its type."""
    if isinstance(value, bool) or isinstance(value, np.bool_):
        return ["bool", bool(value)]
    if isinstance(value, (int, np.integer)):
        return ["int", int(value)]
    if isinstance(value, (float, np.floating)):
        return ["float", float(value)]
    if isinstance(value, Decimal):
        return ["decimal", str(value)]
    if isinstance(value, _dt.datetime):
        return ["datetime", value.isoformat()]
    if isinstance(value, _dt.date):
        return ["date", value.isoformat()]
    return ["str", str(value)]


def untag(item: list[Any]) -> Any:
    """Inverse of :func:`tag`."""
    kind, value = item
    if kind == "bool":
        return bool(value)
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "decimal":
        return Decimal(value)
    if kind == "datetime":
        return _dt.datetime.fromisoformat(value)
    if kind == "date":
        return _dt.date.fromisoformat(value)
    return str(value)


def stats_to_dict(stats: TableStats) -> dict[str, Any]:
    """The statistics pass's result, JSON-ready."""
    return {
        "n_rows": stats.n_rows, "weight_total": stats.weight_total,
        "target_counts": [[tag(k), float(v)] for k, v in stats.target_counts.items()],
        "numeric": {k: list(v.__dict__.values()) for k, v in stats.numeric.items()},
        "categorical": {k: dict(v) for k, v in stats.categorical.items()},
        "null_target": stats.null_target, "excluded_rows": stats.excluded_rows,
        "null_features": dict(stats.null_features),
    }


def stats_from_dict(data: dict[str, Any]) -> TableStats:
    """Inverse of :func:`stats_to_dict`."""
    return TableStats(
        n_rows=int(data["n_rows"]), weight_total=float(data["weight_total"]),
        target_counts={untag(k): float(v) for k, v in data["target_counts"]},
        numeric={k: NumericStats(int(v[0]), float(v[1]), float(v[2]), float(v[3]), float(v[4]), float(v[5]))
                 for k, v in data["numeric"].items()},
        categorical={k: {str(level): int(c) for level, c in v.items()} for k, v in data["categorical"].items()},
        null_target=int(data.get("null_target", 0)), excluded_rows=int(data.get("excluded_rows", 0)),
        null_features={k: int(v) for k, v in dict(data.get("null_features") or {}).items()},
    )


def table_to_columns(table: pa.Table) -> dict[str, list[Any]]:
    """A small numeric Arrow table as ``{column: values}``.

    >>> table_to_columns(pa.table({"a": [1, 2]}))
    {'a': [1, 2]}
    """
    return {name: table.column(name).to_pylist() for name in table.column_names}


def columns_to_table(columns: dict[str, list[Any]], schema: pa.Schema) -> pa.Table:
    """Inverse of :func:`table_to_columns`, cast to ``schema``."""
    return pa.table({f.name: pa.array(columns.get(f.name, []), f.type) for f in schema}, schema=schema)


def matrix_to_list(values: np.ndarray | None) -> list[Any] | None:
    """A NumPy array as nested lists (``None`` stays ``None``); floats round-trip exactly through JSON."""
    return None if values is None else np.asarray(values, dtype=np.float64).tolist()


def list_to_matrix(values: list[Any] | None) -> np.ndarray | None:
    """Inverse of :func:`matrix_to_list`."""
    return None if values is None else np.asarray(values, dtype=np.float64)
