"""k-means: the lightweight coreset (default) and sensitivity sampling (accurate mode). Pure NumPy.

``lightweight`` (Bachem, Lucic, Krause, KDD 2018): q_i = 1/2 w_i / W + 1/2 w_i d(x_i, mu)^2 / D,
i.e. importance ``d(x_i, mu)^2 + D / W`` from the global mean (one aggregation pass, shared with
:mod:`coreset_spark.pca`). It guarantees an additive error and is cheap.

``sensitivity``: k-means++ on a uniform pilot sample (on the driver) gives centres A; one more pass
sums, per cluster of A, the weight W_c and the cost; the importance is
``d(x_i, A)^2 / cost(A) + 1 / W_{c(i)}``, the sensitivity bound (Feldman and Langberg; the variant
Schwiegelshohn and Sheikh-Omar, ESA 2022, found most accurate and robust in practice).

On the driver, fit scikit-learn's ``KMeans`` with ``sample_weight``; :func:`cost` measures the
weighted k-means cost of centres on any rows.

>>> import numpy as np
>>> x = np.array([[0.0], [0.0], [10.0]])
>>> state = sensitivity_state(np.array([[0.0], [10.0]]), cluster_weight=np.array([2.0, 1.0]), total_cost=1.0)
>>> importance(state, x).round(3).tolist()
[0.5, 0.5, 1.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coreset_spark.pca import MeanState, mean_state, squared_distances
from coreset_spark.sampling import stable_round

STRATIFIED = False


def passes(mode: str) -> tuple[str, ...]:
    """The global passes a mode needs before sampling."""
    return ("gram",) if mode == "lightweight" else ("pilot", "sums")


@dataclass(frozen=True)
class SensitivityState:
    """Centres A of a pilot solution, and (after the sums pass) cluster weights and total cost."""

    centres: np.ndarray
    cluster_weight: np.ndarray
    total_cost: float


def lightweight_state(gram: np.ndarray) -> MeanState:
    """The lightweight coreset's state: the global mean and mean squared distance."""
    return mean_state(gram)


def sensitivity_state(centres: np.ndarray, cluster_weight: np.ndarray | None = None,
                      total_cost: float = 0.0) -> SensitivityState:
    """Sensitivity state; weights and cost are filled in by :func:`with_sums`."""
    k = centres.shape[0]
    return SensitivityState(np.asarray(centres, dtype=np.float64),
                            np.zeros(k) if cluster_weight is None else np.asarray(cluster_weight, dtype=np.float64),
                            float(total_cost))


def pilot_centres(x: np.ndarray, weight: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Weighted k-means++ then Lloyd on the pilot sample (deterministic for a seed).

    Centres are rounded to 24 significant bits so the later passes see the same numbers
    whatever the summation order inside the solver.
    """
    from sklearn.cluster import KMeans

    k = min(k, len(x))
    model = KMeans(n_clusters=k, init="k-means++", n_init=3, random_state=seed % 2**32, max_iter=100)
    model.fit(x, sample_weight=weight)
    return np.asarray(stable_round(model.cluster_centers_), dtype=np.float64)


def nearest(x: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centre and the squared distance to it, per row."""
    if not len(x):
        return np.zeros(0, np.int64), np.zeros(0)
    distances = np.stack([squared_distances(x, c) for c in centres], axis=1)
    index = np.argmin(distances, axis=1)
    return index, distances[np.arange(len(x)), index]


def partial_sums(state: SensitivityState, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per cluster of the pilot centres: [weight..., cost...] of these rows (added across tasks)."""
    k = state.centres.shape[0]
    index, d2 = nearest(x, state.centres)
    return np.concatenate([np.bincount(index, weights=weight, minlength=k),
                           np.bincount(index, weights=weight * d2, minlength=k)])


def with_sums(state: SensitivityState, sums: np.ndarray) -> SensitivityState:
    """Attach the global cluster weights and total cost (rounded: partition-independent)."""
    k = state.centres.shape[0]
    sums = stable_round(np.asarray(sums, dtype=np.float64), 40)
    return sensitivity_state(state.centres, sums[:k], float(sums[k:].sum()))


def importance(state: MeanState | SensitivityState, x: np.ndarray, target: np.ndarray | None = None) -> np.ndarray:
    """Lightweight or sensitivity importance of each row."""
    if isinstance(state, MeanState):
        return squared_distances(x, state.mean) + state.offset
    index, d2 = nearest(x, state.centres)
    cost = state.total_cost if state.total_cost > 0 else 1.0
    cluster = state.cluster_weight[index]
    return d2 / cost + 1.0 / np.where(cluster > 0, cluster, 1.0)


def cost(x: np.ndarray, weight: np.ndarray | None, centres: np.ndarray) -> float:
    """Weighted k-means cost: sum of w_i times the squared distance to the nearest centre.

    >>> import numpy as np
    >>> cost(np.array([[0.0], [3.0]]), None, np.array([[1.0]]))
    5.0
    """
    _, d2 = nearest(x, np.asarray(centres, dtype=np.float64))
    w = np.ones(len(x)) if weight is None else np.asarray(weight, dtype=np.float64)
    return float((w * d2).sum())
