"""Logistic regression (binary and multiclass): square-root leverage importance. Pure NumPy.

For binary labels y in {-1, +1} the label-folded rows z_i = y_i x_i have the Gram
Z^T W Z = X^T W X (y_i^2 = 1), so the leverage of z_i equals the leverage of x_i: one Gram of the
encoded features with an intercept column serves both the binary case (Munteanu, Schwiegelshohn,
Sohler, Woodruff, NeurIPS 2018) and the label-independent multiclass score (Mai, Musco, Rao,
NeurIPS 2021), where the per-class floor of :mod:`coreset_spark.sampling` keeps rare classes.

A rank-deficient Gram (one-hot blocks next to the intercept, constant columns) is handled with a
pseudo-inverse: directions with eigenvalue below ``rcond * max`` are ignored.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = np.hstack([rng.normal(size=(200, 2)), np.ones((200, 1))])
>>> basis = LeverageBasis.from_gram(gram(x, np.ones(200)))
>>> round(float(leverage(x, basis).sum()), 6)  # leverages sum to the rank
3.0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STRATIFIED = True  # the per-class floor applies to this family
PASSES = ("gram",)


def gram(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The weighted Gram matrix X^T diag(w) X."""
    return (x * np.asarray(weight, dtype=np.float64)[:, None]).T @ x


@dataclass(frozen=True)
class LeverageBasis:
    """A (d, r) matrix B with leverage_i = ||x_i B||^2 for the Gram it came from."""

    matrix: np.ndarray

    @staticmethod
    def from_gram(g: np.ndarray, rcond: float = 1e-10) -> LeverageBasis:
        """Pseudo-inverse square root of a symmetric positive semi-definite Gram."""
        g = (np.asarray(g, dtype=np.float64) + np.asarray(g, dtype=np.float64).T) / 2.0
        values, vectors = np.linalg.eigh(g)
        top = float(values.max()) if values.size else 0.0
        keep = values > rcond * max(top, 0.0)
        if not keep.any():
            return LeverageBasis(np.zeros((g.shape[0], 0)))
        return LeverageBasis(vectors[:, keep] / np.sqrt(values[keep]))


def leverage(x: np.ndarray, basis: LeverageBasis) -> np.ndarray:
    """Leverage scores of the rows of x (with intercept column) against the global Gram."""
    # einsum without BLAS: each row's result is computed the same way whatever the batch size,
    # so a row's importance never depends on how the table was split into batches.
    projected = np.einsum("ij,jk->ik", x, basis.matrix, optimize=False)
    return np.einsum("ij,ij->i", projected, projected)


def make_state(gram_xt: np.ndarray) -> LeverageBasis:
    """The leverage basis from the build's Gram of [X, 1, t] (the target column is not used)."""
    return LeverageBasis.from_gram(np.asarray(gram_xt)[:-1, :-1])


def importance(basis: LeverageBasis, x: np.ndarray, target: np.ndarray | None = None) -> np.ndarray:
    """Square-root leverage of [x, 1]: the sensitivity bound used for logistic regression."""
    return np.sqrt(np.maximum(leverage(np.hstack([x, np.ones((x.shape[0], 1))]), basis), 0.0))
