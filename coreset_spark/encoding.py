"""Feature encoding from global statistics: standardised numerics and one-hot categoricals.

The statistics come from one Spark aggregation pass (:mod:`coreset_spark.spark.stats`); the
encoder itself is plain data plus NumPy/Arrow code, so executors and the driver encode identically.

Missing values (policy ``impute_mean``): a null or NaN numeric value becomes the column mean
(0 after standardisation); a null categorical value becomes the level ``__missing__``. Categorical
levels rarer than ``rare_level_fraction`` of the rows, beyond ``max_levels``, or unseen at build time
map to ``__other__``. Constant numeric columns are centred to 0 (their scale is taken as 1).

>>> import pyarrow as pa
>>> stats = TableStats(n_rows=4, weight_total=4.0, target_counts={"a": 2, "b": 2},
...     numeric={"x": NumericStats(4, 4.0, 2.0, 1.0, 1.0, 3.0)}, categorical={"c": {"u": 3, "v": 1}},
...     null_target=0)
>>> enc = Encoder.fit(stats, numeric=["x"], categorical=["c"], rare_level_fraction=0.0, max_levels=10)
>>> enc.feature_names
['x', 'c=u', 'c=v', 'c=__other__']
>>> enc.transform(pa.table({"x": [1.0, 3.0], "c": ["u", "zzz"]})).tolist()
[[-1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 1.0]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

OTHER = "__other__"
MISSING = "__missing__"


@dataclass(frozen=True)
class NumericStats:
    """Non-null count, weight of the non-null rows, mean, standard deviation, min, max."""

    count: int
    weight: float
    mean: float
    std: float
    min: float
    max: float


@dataclass(frozen=True)
class TableStats:
    """What one aggregation pass learns about a table (weights included where given)."""

    n_rows: int
    weight_total: float
    target_counts: Mapping[Any, float]
    numeric: Mapping[str, NumericStats]
    categorical: Mapping[str, Mapping[Any, int]]
    null_target: int = 0
    excluded_rows: int = 0
    null_features: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Encoder:
    """Maps raw columns to a float64 matrix; all state is plain, picklable data."""

    numeric: tuple[str, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    categorical: tuple[str, ...]
    levels: tuple[tuple[str, ...], ...]

    @staticmethod
    def fit(
        stats: TableStats,
        numeric: Sequence[str],
        categorical: Sequence[str],
        rare_level_fraction: float,
        max_levels: int,
    ) -> Encoder:
        """Build the encoder from global statistics."""
        means, scales = [], []
        for name in numeric:
            s = stats.numeric[name]
            means.append(float(s.mean))
            scales.append(float(s.std) if s.std > 0 and np.isfinite(s.std) else 1.0)
        levels = []
        threshold = rare_level_fraction * stats.n_rows
        for name in categorical:
            counts = stats.categorical[name]
            frequent = sorted(((c, str(v)) for v, c in counts.items() if c >= threshold and c > 0),
                              key=lambda item: (-item[0], item[1]))
            kept = sorted(level for _, level in frequent[:max_levels] if level != OTHER)
            levels.append(tuple(kept))
        return Encoder(tuple(numeric), tuple(means), tuple(scales), tuple(categorical), tuple(levels))

    @property
    def feature_names(self) -> list[str]:
        """Names of the encoded columns, in order."""
        names = list(self.numeric)
        for name, kept in zip(self.categorical, self.levels):
            names.extend(f"{name}={level}" for level in kept)
            names.append(f"{name}={OTHER}")
        return names

    @property
    def width(self) -> int:
        """Number of encoded columns."""
        return len(self.numeric) + sum(len(k) + 1 for k in self.levels)

    @property
    def input_columns(self) -> list[str]:
        """Raw columns the encoder reads."""
        return list(self.numeric) + list(self.categorical)

    def transform(self, table: pa.Table | pa.RecordBatch) -> np.ndarray:
        """Encode an Arrow table or batch into a (rows, width) float64 matrix."""
        n = table.num_rows
        out = np.zeros((n, self.width), dtype=np.float64)
        for j, (name, mean, scale) in enumerate(zip(self.numeric, self.means, self.scales)):
            column = table.column(name)
            values = np.asarray(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
            values = np.where(np.isnan(values), mean, values)
            out[:, j] = (values - mean) / scale
        offset = len(self.numeric)
        for name, kept in zip(self.categorical, self.levels):
            column = table.column(name)
            if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
                column = pc.cast(column, pa.string())
            column = pc.fill_null(column, MISSING)
            index = pc.index_in(column, value_set=pa.array(list(kept), type=column.type))
            codes = np.asarray(pc.fill_null(index, len(kept)).to_numpy(zero_copy_only=False), dtype=np.int64)
            out[np.arange(n), offset + codes] = 1.0
            offset += len(kept) + 1
        return out

    def with_safe_names(self) -> tuple[Encoder, list[str]]:
        """The same encoder reading columns ``_c0, _c1, ...``, and the original names in that order.

        pyspark's ``mapInArrow`` resolves input columns by name, which breaks on names with dots;
        frames passed to it carry these safe aliases instead.
        """
        names = self.input_columns
        safe = {name: f"_c{i}" for i, name in enumerate(names)}
        renamed = replace(self, numeric=tuple(safe[c] for c in self.numeric),
                          categorical=tuple(safe[c] for c in self.categorical))
        return renamed, names

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (saved with the coreset's lineage)."""
        return {"numeric": list(self.numeric), "means": list(self.means), "scales": list(self.scales),
                "categorical": list(self.categorical), "levels": [list(k) for k in self.levels]}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Encoder:
        """Inverse of :meth:`to_dict`."""
        return Encoder(tuple(data["numeric"]), tuple(data["means"]), tuple(data["scales"]),
                       tuple(data["categorical"]), tuple(tuple(k) for k in data["levels"]))


def with_intercept(x: np.ndarray) -> np.ndarray:
    """Append a column of ones (the intercept) to a feature matrix.

    >>> with_intercept(np.zeros((2, 1))).tolist()
    [[0.0, 1.0], [0.0, 1.0]]
    """
    return np.hstack([x, np.ones((x.shape[0], 1))])
