"""PCA / truncated SVD: length-squared sampling of the centred rows. Pure NumPy.

The importance of a row is its squared distance to the weighted mean plus the mean of those
squared distances, ``||x_i - mu||^2 + D / W`` with ``D = sum_j w_j ||x_j - mu||^2``: half
length-squared sampling (Frieze, Kannan, Vempala; Drineas et al.), which keeps the rows that carry
the variance a low-rank approximation must explain, and half uniform. The mean and ``D`` come from
the global Gram of [X, 1] (its last row holds the sums of x, its diagonal the sums of x^2), so one
aggregation pass is all it needs. The same importance is the ``lightweight`` k-means coreset of
Bachem, Lucic and Krause (KDD 2018), see :mod:`coreset_spark.kmeans`.

On the driver :func:`weighted_pca` fits the components with the coreset's weights and
:func:`projection_cost` measures the weighted residual a set of components leaves.

>>> import numpy as np
>>> from coreset_spark.logistic import gram
>>> x = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 3.0]])
>>> state = mean_state(gram(np.hstack([x, np.ones((3, 1)), np.zeros((3, 1))]), np.ones(3)))  # [X, 1, t]
>>> state.mean.tolist(), round(state.offset, 6)
([1.0, 1.0], 2.666667)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STRATIFIED = False
PASSES = ("gram",)


@dataclass(frozen=True)
class MeanState:
    """The weighted mean of the encoded rows and the mean squared distance to it."""

    mean: np.ndarray
    offset: float


def mean_state(gram: np.ndarray) -> MeanState:
    """Mean and mean squared distance from the Gram of [X, 1, t] (the target column is ignored)."""
    g = np.asarray(gram, dtype=np.float64)
    d = _feature_count(g)
    total = float(g[d, d])
    if total <= 0:
        return MeanState(np.zeros(d), 1.0)
    mean = g[:d, d] / total
    spread = float(np.maximum(np.diag(g)[:d] / total - mean * mean, 0.0).sum())
    return MeanState(mean, spread if spread > 0 else 1.0)


def _feature_count(g: np.ndarray) -> int:
    # The Gram of the build is over [X, 1, t]; the intercept column is the one before last.
    return g.shape[0] - 2


def squared_distances(x: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Row-wise ||x_i - point||^2, computed without BLAS so a row's value never depends on its batch."""
    diff = x - point[None, :]
    return np.einsum("ij,ij->i", diff, diff)


def make_state(gram: np.ndarray) -> MeanState:
    """The state of the PCA family."""
    return mean_state(gram)


def importance(state: MeanState, x: np.ndarray, target: np.ndarray | None = None) -> np.ndarray:
    """``||x - mu||^2 + D / W`` per row."""
    return squared_distances(x, state.mean) + state.offset


def weighted_pca(x: np.ndarray, weight: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and the top ``components`` principal axes (rows of the returned matrix).

    >>> import numpy as np
    >>> x = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.1]])
    >>> mean, axes = weighted_pca(x, np.ones(3), 1)
    >>> np.abs(axes).round(3).tolist()
    [[1.0, 0.0]]
    """
    w = np.asarray(weight, dtype=np.float64)
    mean = (w[:, None] * x).sum(axis=0) / w.sum()
    centred = (x - mean) * np.sqrt(w)[:, None]
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return mean, vt[:components]


def projection_cost(x: np.ndarray, weight: np.ndarray | None, mean: np.ndarray, axes: np.ndarray) -> float:
    """Weighted squared distance of the rows to the affine subspace mean + span(axes).

    >>> import numpy as np
    >>> projection_cost(np.array([[0.0, 1.0]]), None, np.zeros(2), np.array([[1.0, 0.0]]))
    1.0
    """
    centred = x - mean
    residual = centred - (centred @ axes.T) @ axes
    w = np.ones(len(x)) if weight is None else np.asarray(weight, dtype=np.float64)
    return float((w * np.einsum("ij,ij->i", residual, residual)).sum())
