"""Decision trees, random forests and gradient boosting: a heuristic sampler. Pure NumPy + scikit-learn.

**There is no coreset with guarantees for tree models on tabular data**; this family is an honest
heuristic, measured by the quality benchmark rather than proved:

* a shallow *pilot* decision tree is fitted (weighted) on a uniform pilot sample on the driver;
* every row's stratum is (class, pilot leaf) for classification, the pilot leaf for regression:
  each stratum keeps at least one row in every node and its weight exactly (the per-leaf floor),
  and each class keeps at least ``min_per_class`` rows in expectation in every node, spread over
  its pilot leaves by their weight (the per-class floor; a floor of ``min_per_class`` per
  stratum would fill a small node with the rare (class, leaf) strata);
* a row's importance is the gradient magnitude of the pilot model's loss at that row,
  ``sqrt(g^2 + lambda h^2)`` as CatBoost's MVS uses per boosting iteration (log loss: g = p - e_y,
  h = p (1 - p); squared loss: g = residual, h = 1), so rows the pilot gets wrong, near the
  decision boundaries, are sampled more; the uniform floor mixes in the rest.

Row-counting hyper-parameters of the tree learners must become weight-based on a coreset; see
:func:`coreset_spark.driver.weight_based_params`.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(400, 2)); y = (x[:, 0] > 0).astype(float)
>>> state = make_state(x, y, np.ones(400), task="classification", n_classes=2, depth=2, seed=0)
>>> n_strata(state), int(strata(state, y.astype(int), x).max()) < n_strata(state)
(4, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

STRATIFIED = True
PASSES = ("pilot",)
CURVATURE = 1.0  # lambda in sqrt(g^2 + lambda h^2)


@dataclass(frozen=True)
class State:
    """The pilot tree, the map from its leaf node ids to 0..L-1, the task and class count."""

    model: Any
    leaf_index: np.ndarray  # node id -> leaf number (-1 for internal nodes)
    n_leaves: int
    task: str
    n_classes: int
    residual_scale: float = 1.0


def make_state(x: np.ndarray, target: np.ndarray, weight: np.ndarray, task: str, n_classes: int,
               depth: int, seed: int) -> State:
    """Fit the pilot tree (weighted, deterministic for a seed) on the pilot sample."""
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    share = 0.01  # a pilot leaf holds at least 1% of the pilot weight: no tiny strata
    if task == "regression":
        model: Any = DecisionTreeRegressor(max_depth=depth, min_weight_fraction_leaf=share, random_state=seed % 2**32)
        model.fit(x, target, sample_weight=weight)
        residual = target - model.predict(x)
        scale = float(np.sqrt(np.average(residual * residual, weights=weight))) or 1.0
    else:
        model = DecisionTreeClassifier(max_depth=depth, min_weight_fraction_leaf=share, random_state=seed % 2**32)
        model.fit(x, np.asarray(target, dtype=np.int64), sample_weight=weight)
        scale = 1.0
    tree = model.tree_
    leaves = np.flatnonzero(tree.children_left == -1)
    index = np.full(tree.node_count, -1, dtype=np.int64)
    index[leaves] = np.arange(len(leaves))
    return State(model, index, len(leaves), task, n_classes, scale)


def n_strata(state: State) -> int:
    """Number of strata: classes times pilot leaves (pilot leaves for regression)."""
    return state.n_leaves * (state.n_classes if state.task == "classification" else 1)


def strata(state: State, classes: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Stratum of each row: class * L + pilot leaf (pilot leaf for regression)."""
    leaf = state.leaf_index[state.model.apply(x)] if len(x) else np.zeros(0, np.int64)
    if state.task == "classification":
        return np.asarray(classes, dtype=np.int64) * state.n_leaves + leaf
    return leaf


def importance(state: State, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Gradient magnitude of the pilot model's loss per row."""
    if not len(x):
        return np.zeros(0)
    if state.task == "regression":
        residual = (np.asarray(target, dtype=np.float64) - state.model.predict(x)) / state.residual_scale
        return np.sqrt(residual * residual + CURVATURE)
    proba = np.zeros((len(x), state.n_classes))
    proba[:, np.asarray(state.model.classes_, dtype=np.int64)] = state.model.predict_proba(x)
    onehot = np.zeros_like(proba)
    onehot[np.arange(len(x)), np.asarray(target, dtype=np.int64)] = 1.0
    g = proba - onehot
    h = proba * (1.0 - proba)
    return np.sqrt(np.einsum("ij,ij->i", g, g) + CURVATURE * np.einsum("ij,ij->i", h, h))
