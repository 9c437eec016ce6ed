"""Driver-side fitting and tuning on a weighted coreset with scikit-learn.

Weights go to every fit and every score: the search uses scikit-learn's metadata routing, so
``sample_weight`` reaches the estimator (inside a Pipeline too) and the scorer of each fold.

>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(200, 3)); y = (x[:, 0] > 0).astype(int); w = rng.uniform(1, 5, 200)
>>> search = grid_search(LogisticRegression(), {"C": [0.1, 1.0]}, x, y, w, cv=3)
>>> sorted(search.best_params_)
['C']
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import sklearn
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import get_scorer
from sklearn.model_selection import GridSearchCV, StratifiedKFold


def fit_weighted(estimator: Any, x: np.ndarray, y: np.ndarray, weight: np.ndarray | None) -> tuple[Any, list[str]]:
    """Fit a clone of ``estimator`` with ``sample_weight``; return it and any convergence warnings."""
    model = clone(estimator)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        if weight is None:
            model.fit(x, y)
        else:
            model.fit(x, y, sample_weight=weight)
    messages = [str(w.message).splitlines()[0] for w in caught if issubclass(w.category, ConvergenceWarning)]
    return model, messages


def grid_search(
    estimator: Any,
    param_grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Sequence[Any]]],
    x: np.ndarray,
    y: np.ndarray,
    weight: np.ndarray,
    scoring: str = "neg_log_loss",
    cv: int = 3,
    seed: int = 0,
    n_jobs: int | None = None,
) -> GridSearchCV:
    """Weighted grid search with stratified, shuffled folds; weights routed to fit and score."""
    with sklearn.config_context(enable_metadata_routing=True):
        routed = clone(estimator)
        if hasattr(routed, "set_fit_request"):
            routed.set_fit_request(sample_weight=True)
        elif hasattr(routed, "steps"):  # a Pipeline: route to its last step
            routed.steps[-1][1].set_fit_request(sample_weight=True)
        scorer = get_scorer(scoring).set_score_request(sample_weight=True)
        search = GridSearchCV(routed, param_grid, scoring=scorer, refit=True, n_jobs=n_jobs,
                              cv=StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(x, y, sample_weight=weight)
    if np.all(np.isnan(search.cv_results_["mean_test_score"])):
        counts = dict(zip(*np.unique(y, return_counts=True)))
        raise ValueError(f"every cross-validation score is NaN (scoring={scoring!r}, cv={cv}); class row counts in "
                         f"the coreset are {counts}: a class with fewer rows than folds breaks '{scoring}'. Use fewer "
                         "folds, a larger coreset level, or scoring='accuracy'")
    return search
