"""Weighted elastic-net logistic regression that converges on coresets, as a scikit-learn estimator.

scikit-learn fits an L1 or elastic-net logistic regression only with ``saga``, a stochastic solver
whose step is set by the largest squared row norm. A coreset keeps exactly the rows with large
norms (they are the important ones) and gives them unequal weights, so ``saga`` crawls: on a
5,821-row KDD Cup 99 coreset one 3-fold configuration took 15 to 16 s and stopped at its
iteration limit, where an L2 fit with ``lbfgs`` took 0.05 s.

:class:`ElasticNetLogisticRegression` minimises scikit-learn's objective for the same parameters,

    C * sum_i w_i log_loss_i + l1_ratio * ||beta||_1 + (1 - l1_ratio) / 2 * ||beta||^2

(``w``: the sample weights; the intercept is not penalised), with L-BFGS-B on the split
coefficients ``beta = beta_plus - beta_minus`` (both >= 0, so the L1 term is linear and the problem
smooth): a quasi-Newton method, insensitive to the row norms that stall ``saga``, and exact zeros
where the L1 part sets a coefficient to zero. Binary targets; for several classes wrap it in
``OneVsRestClassifier``. Pure NumPy and SciPy; deterministic.

>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(500, 5)); y = (x[:, 0] - x[:, 1] + 0.5 * rng.normal(size=500) > 0).astype(int)
>>> model = ElasticNetLogisticRegression(C=0.01, l1_ratio=0.9).fit(x, y, sample_weight=np.full(500, 2.0))
>>> model.coef_.shape, bool(model.coef_[0, 0] > 0), bool(model.coef_[0, 1] < 0)
((1, 5), True, True)
>>> int((model.coef_[0, 2:] == 0).sum())   # the noise columns: exactly zero
3
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data


class ElasticNetLogisticRegression(ClassifierMixin, BaseEstimator):
    """Binary logistic regression with an elastic-net penalty, fitted by L-BFGS-B.

    Parameters
    ----------
    C : inverse regularisation strength (> 0), as in ``LogisticRegression``: the data term is
        ``C * sum_i w_i log_loss_i``, so with coreset weights (summing to the rows they stand for)
        a ``C`` means what it means on the full data.
    l1_ratio : the L1 share of the penalty, 0 (ridge) to 1 (lasso).
    fit_intercept : fit an unpenalised intercept.
    tol : stop when the largest projected gradient component is below ``tol`` times the objective
        at zero coefficients (a scale-free criterion).
    max_iter : L-BFGS-B iterations at most; a ``ConvergenceWarning`` says when they ran out.
    """

    def __init__(self, C: float = 1.0, l1_ratio: float = 0.5, fit_intercept: bool = True, tol: float = 1e-7,
                 max_iter: int = 2000) -> None:
        self.C = C
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter

    def _check_params(self) -> None:
        if not (isinstance(self.C, (int, float)) and np.isfinite(self.C) and self.C > 0):
            raise ValueError(f"C={self.C!r}: it must be a finite number > 0 (no penalty at all: use "
                             "LogisticRegression(C=np.inf) with solver='lbfgs')")
        if not (isinstance(self.l1_ratio, (int, float)) and 0.0 <= self.l1_ratio <= 1.0):
            raise ValueError(f"l1_ratio={self.l1_ratio!r}: it must be a number from 0 (L2) to 1 (L1)")

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> ElasticNetLogisticRegression:
        """Fit on ``X``, ``y`` with optional ``sample_weight`` (the coreset weights)."""
        self._check_params()
        x, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) != 2:
            raise ValueError(f"ElasticNetLogisticRegression is binary; y has {len(self.classes_)} classes "
                             f"({list(self.classes_)[:5]}): wrap it in sklearn.multiclass.OneVsRestClassifier")
        weight = _check_sample_weight(sample_weight, x, dtype=np.float64)
        target = (y == self.classes_[1]).astype(np.float64)
        n_features = x.shape[1]
        c, ratio = float(self.C), float(self.l1_ratio)
        cw = c * weight

        def objective(z: np.ndarray) -> tuple[float, np.ndarray]:
            plus, minus = z[:n_features], z[n_features:2 * n_features]
            beta = plus - minus
            eta = x @ beta + (z[-1] if self.fit_intercept else 0.0)
            data = float(cw @ (np.logaddexp(0.0, eta) - target * eta))
            residual = cw * (expit(eta) - target)
            g_beta = x.T @ residual + (1.0 - ratio) * beta
            value = data + ratio * float(plus.sum() + minus.sum()) + 0.5 * (1.0 - ratio) * float(beta @ beta)
            grad = np.concatenate([g_beta + ratio, ratio - g_beta, [residual.sum() if self.fit_intercept else 0.0]])
            return value, grad

        start = np.zeros(2 * n_features + 1)
        if self.fit_intercept:  # the intercept of the weighted base rate
            rate = float(np.clip(weight @ target / max(weight.sum(), 1e-300), 1e-12, 1 - 1e-12))
            start[-1] = np.log(rate / (1 - rate))
        scale = max(abs(objective(start)[0]), 1e-12)
        bounds = [(0.0, None)] * (2 * n_features) + [(None, None) if self.fit_intercept else (0.0, 0.0)]
        result = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds,
                          options={"maxiter": int(self.max_iter), "gtol": float(self.tol) * scale,
                                   "ftol": 1e-12, "maxcor": 20})
        if result.status == 1:
            warnings.warn(f"ElasticNetLogisticRegression: L-BFGS-B stopped at max_iter={self.max_iter} before "
                          "converging; raise max_iter", ConvergenceWarning, stacklevel=2)
        z = result.x
        self.coef_ = (z[:n_features] - z[n_features:2 * n_features]).reshape(1, -1)
        self.intercept_ = np.array([z[-1] if self.fit_intercept else 0.0])
        self.n_iter_ = np.array([int(result.nit)])
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """The linear score (log-odds of ``classes_[1]``)."""
        check_is_fitted(self)
        x = validate_data(self, X, dtype=np.float64, reset=False)
        return np.asarray(x @ self.coef_[0] + self.intercept_[0])

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities of ``classes_[0]`` and ``classes_[1]``."""
        p = expit(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        """The more probable class."""
        return np.asarray(self.classes_[(self.decision_function(X) > 0).astype(int)])
