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


# Row-counting hyper-parameters and their weight-based translations. On a coreset a row stands
# for ``weight`` rows, so a rule that counts rows (a leaf needs 20 rows) would count coreset rows,
# not the rows they stand for. The rules (``represented`` = sum of weights = rows of the full data,
# ``rows`` = rows of the coreset):
#   scikit-learn trees and forests: min_samples_leaf=k (k >= 1 rows) -> min_weight_fraction_leaf =
#       k / represented, min_samples_leaf = 1 (a leaf must hold k rows' worth of weight);
#       min_samples_split=k -> flagged (no weight-based twin): kept, with a note;
#       max_samples=k rows (forests) -> max_samples = k / represented (a fraction).
#   HistGradientBoosting: min_samples_leaf=k -> max(1, round(k * rows / represented)) (a
#       proportional share of coreset rows; it has no weight-based minimum).
#   LightGBM: min_child_samples (min_data_in_leaf)=k -> max(1, round(k * rows / represented)), and
#       min_child_weight is left as is (it sums the hessian, which the weights already scale).
#   XGBoost: min_child_weight already sums weighted hessians: unchanged.
ROW_COUNT_RULES = {
    "min_samples_leaf": "weight fraction (scikit-learn trees) or proportional share (HistGradientBoosting)",
    "min_samples_split": "flagged: no weight-based equivalent",
    "max_samples": "fraction of the represented rows",
    "min_child_samples": "proportional share of coreset rows (LightGBM)",
}


def weight_based_params(estimator: Any, rows: int, represented: float) -> tuple[Any, list[str]]:
    """A clone of ``estimator`` whose row-counting hyper-parameters are translated for a coreset.

    Returns the clone and one note per translated or flagged parameter.

    >>> from sklearn.tree import DecisionTreeClassifier
    >>> model, notes = weight_based_params(DecisionTreeClassifier(min_samples_leaf=50), 1000, 100000.0)
    >>> model.min_samples_leaf, model.min_weight_fraction_leaf
    (1, 0.0005)
    """
    model = clone(estimator)
    params = model.get_params(deep=False)
    name = type(model).__name__
    notes: list[str] = []
    share = rows / represented if represented > 0 else 1.0

    def proportional(key: str) -> None:
        value = params.get(key)
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 1:
            new = max(1, int(round(value * share)))
            model.set_params(**{key: new})
            notes.append(f"{key}={value} rows -> {new} coreset rows ({rows} rows standing for {represented:.0f})")

    if name.startswith("HistGradientBoosting"):
        proportional("min_samples_leaf")
    elif name.startswith("LGBM"):
        proportional("min_child_samples")
    elif "min_weight_fraction_leaf" in params:  # scikit-learn trees and forests
        leaf = params.get("min_samples_leaf")
        if isinstance(leaf, (int, np.integer)) and leaf > 1:
            fraction = max(float(params.get("min_weight_fraction_leaf") or 0.0), leaf / represented)
            model.set_params(min_samples_leaf=1, min_weight_fraction_leaf=min(fraction, 0.5))
            notes.append(f"min_samples_leaf={leaf} rows -> min_weight_fraction_leaf={fraction:.3g}")
        split = params.get("min_samples_split")
        if isinstance(split, (int, np.integer)) and split > 2:
            notes.append(f"min_samples_split={split} counts coreset rows (no weight-based equivalent); "
                         "prefer min_weight_fraction_leaf")
        samples = params.get("max_samples")
        if isinstance(samples, (int, np.integer)) and samples > 0:
            model.set_params(max_samples=min(1.0, samples / represented))
            notes.append(f"max_samples={samples} rows -> fraction {min(1.0, samples / represented):.3g}")
    return model, notes
