"""Linear and ridge regression: leverage scores of [X, 1, y]. Pure NumPy.

The leverage of row i of A = [X, 1, y] against the weighted Gram A^T W A bounds how much the
row can matter to any least-squares fit (its sensitivity); sampling by leverage gives a
subspace embedding of A, so the weighted squared loss of every coefficient vector is kept to
within (1 +- eps) with O(d log d / eps^2) rows. With a ridge penalty lambda the ridge leverage
a_i^T (A^T W A + lambda I_X)^-1 a_i is smaller and so is the coreset (the penalty is added on the
feature block only, never on the intercept or the target column).

The Gram comes from one aggregation pass (:func:`coreset_spark.tree.gram_of_batches`), so the
leverage is global, not per partition.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(500, 3)); t = x @ [1.0, 2.0, 0.0] + rng.normal(size=500)
>>> from coreset_spark.logistic import gram
>>> a = augmented(x, t)
>>> state = make_state(gram(a, np.ones(500)), ridge=0.0)
>>> round(float(importance(state, x, t).sum()), 6)   # leverages sum to the rank of [X, 1, y]
5.0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coreset_spark.logistic import LeverageBasis, leverage

STRATIFIED = False  # one stratum: the target is a number, not a class
PASSES = ("gram",)


def augmented(x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """[X, 1, y]: the rows whose leverage is the importance."""
    n = x.shape[0]
    return np.hstack([x, np.ones((n, 1)), np.asarray(target, dtype=np.float64).reshape(n, 1)])


@dataclass(frozen=True)
class State:
    """The leverage basis of the (ridge-regularised) Gram of [X, 1, y]."""

    basis: LeverageBasis


def make_state(gram: np.ndarray, ridge: float = 0.0) -> State:
    """Ridge-regularised basis: ``ridge`` is added to the diagonal of the feature block."""
    g = np.array(gram, dtype=np.float64)
    d = g.shape[0] - 2
    g[np.arange(d), np.arange(d)] += float(ridge)
    return State(LeverageBasis.from_gram(g))


def importance(state: State, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(Ridge) leverage of each row of [X, 1, y]."""
    return np.maximum(leverage(augmented(x, target), state.basis), 0.0)


def squared_loss(coef: np.ndarray, intercept: float, x: np.ndarray, target: np.ndarray,
                 weight: np.ndarray | None = None) -> float:
    """The weighted sum of squared residuals of a linear model (the training objective without penalty).

    >>> squared_loss(np.array([1.0]), 0.0, np.array([[1.0], [2.0]]), np.array([1.0, 3.0]))
    1.0
    """
    r = np.asarray(target, dtype=np.float64) - (x @ coef + intercept)
    w = np.ones(len(r)) if weight is None else np.asarray(weight, dtype=np.float64)
    return float((w * r * r).sum())
