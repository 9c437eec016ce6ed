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

import inspect
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import sklearn
from sklearn.base import clone, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import get_scorer
from sklearn.model_selection import GridSearchCV


def _request_weights(model: Any) -> None:
    """Ask every step that can take ``sample_weight`` for it (call inside metadata routing)."""
    steps = [step for _, step in model.steps] if hasattr(model, "steps") else [model]
    for step in steps:
        if step in (None, "passthrough"):
            continue
        if hasattr(step, "steps"):
            _request_weights(step)
        elif hasattr(step, "set_fit_request") and "sample_weight" in inspect.signature(step.fit).parameters:
            step.set_fit_request(sample_weight=True)


def fit_weighted(estimator: Any, x: np.ndarray, y: np.ndarray, weight: np.ndarray | None) -> tuple[Any, list[str]]:
    """Fit a clone of ``estimator`` with ``sample_weight``; return it and any convergence warnings.

    A Pipeline gets the weights through scikit-learn's metadata routing: every step whose ``fit``
    takes ``sample_weight`` (a ``StandardScaler`` as well as the final model) receives them.

    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn.linear_model import LogisticRegression
    >>> x = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0, 0, 1, 1])
    >>> model, _ = fit_weighted(make_pipeline(StandardScaler(), LogisticRegression()), x, y, np.array([1, 1, 1, 5.0]))
    >>> round(float(model[0].mean_[0]), 3)  # the weighted mean: the scaler saw the weights
    2.25
    """
    model = clone(estimator)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        if weight is None:
            model.fit(x, y)
        elif hasattr(model, "steps"):
            with sklearn.config_context(enable_metadata_routing=True):
                _request_weights(model)
                model.fit(x, y, sample_weight=weight)
        else:
            model.fit(x, y, sample_weight=weight)
    messages = [str(w.message).splitlines()[0] for w in caught if issubclass(w.category, ConvergenceWarning)]
    return model, messages


def weighted_folds(y: np.ndarray, weight: np.ndarray, n_splits: int = 3, seed: int = 0,
                   stratify: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cross-validation folds that respect weights: (train indices, test indices) per fold.

    Plain k-fold counts rows, so on a coreset a few heavy rows can land in one fold and decide its
    score. Here the rows of each class (all rows with ``stratify=False``), heaviest first, are dealt
    in rounds of ``n_splits``, each round to the folds in a random order: every fold gets one row
    of each weight rank, so fold weights per class differ by at most about one row's weight and
    fold sizes by at most one row per class. Deterministic in ``seed``. Pass the list as ``cv=`` to
    any scikit-learn search.

    >>> y = np.array([0] * 6 + [1] * 6); w = np.array([100.0, 1, 1, 1, 1, 100, 5, 5, 5, 5, 5, 5])
    >>> folds = weighted_folds(y, w, n_splits=2)
    >>> [float(w[test].sum()) for _, test in folds]
    [117.0, 117.0]
    """
    y = np.asarray(y)
    weight = np.asarray(weight, dtype=np.float64)
    if n_splits < 2:
        raise ValueError(f"n_splits={n_splits!r} must be at least 2 (cross-validation needs two folds)")
    if len(y) < n_splits:
        raise ValueError(f"{len(y)} rows cannot make {n_splits} folds; use fewer folds or a larger coreset level")
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    groups = [np.flatnonzero(y == g) for g in np.unique(y)] if stratify else [np.arange(len(y))]
    offset = 0
    for idx in groups:
        order = idx[np.lexsort((rng.random(len(idx)), -weight[idx]))]  # heaviest first; ties at random
        for start in range(0, len(order), n_splits):
            chunk = order[start:start + n_splits]
            # a short last round goes to the folds that are behind in rows, starting after the last group's
            fold[chunk] = (rng.permutation(n_splits)[:len(chunk)] if len(chunk) == n_splits
                           else (offset + np.arange(len(chunk))) % n_splits)
        offset += len(order) % n_splits
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(n_splits)]


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
    """scikit-learn's ``GridSearchCV`` with weights routed to fit and score and weight-balanced
    stratified folds (:func:`weighted_folds`). For grid, random and Optuna search over several
    estimator families, on the driver or across a cluster, see :func:`coreset_spark.tuning.tune`."""
    folds = weighted_folds(y, weight, cv, seed, stratify=is_classifier(estimator))
    with sklearn.config_context(enable_metadata_routing=True):
        routed = clone(estimator)
        _request_weights(routed)
        scorer = get_scorer(scoring).set_score_request(sample_weight=True)
        search = GridSearchCV(routed, param_grid, scoring=scorer, refit=True, n_jobs=n_jobs, cv=folds)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(x, y, sample_weight=weight)
    if np.all(np.isnan(search.cv_results_["mean_test_score"])):
        counts = dict(zip(*np.unique(y, return_counts=True)))
        raise ValueError(f"every cross-validation score is NaN (scoring={scoring!r}, cv={cv}); class row counts in "
                         f"the coreset are {counts}: a class with fewer rows than folds breaks '{scoring}'. Use fewer "
                         "folds, a larger coreset level, or scoring='accuracy'")
    return search


# Weight scale. Coreset weights sum to the rows they stand for (n), so a model's objective summed
# over rows, C * sum_i w_i loss_i + penalty (LogisticRegression, Ridge, SVMs), is the full-data
# objective and C / alpha transfer unchanged. Two kinds of solver need care:
#   * sag / saga (LogisticRegression, Ridge) take steps scaled by the largest weight and stall with
#     count-like weights (scikit-learn issue 21305): the weights are divided by their mean and C
#     multiplied (alpha divided) by it, which leaves the objective, hence the optimum, unchanged;
#   * SGDClassifier / SGDRegressor average the per-row losses (alpha applies per row): the weights
#     are divided by their mean so the data term is a weighted mean, as on the full data.
# lbfgs, newton-cg, newton-cholesky, liblinear, the tree models, gradient boosting (their
# min_child_weight sums weighted hessians, which then match the full data's) and the MLP (a
# weighted mean loss) need nothing.
def weight_scale_rules(estimator: Any, weight: np.ndarray) -> tuple[Any, np.ndarray, list[str]]:
    """A clone of ``estimator`` and weights rescaled for solvers that mishandle large weights,
    with the same optimum as the unscaled fit; and a note per change.

    >>> from sklearn.linear_model import LogisticRegression
    >>> model, w, notes = weight_scale_rules(LogisticRegression(C=1.0, solver="saga"), np.array([100.0, 300.0]))
    >>> model.C, w.tolist()
    (200.0, [0.5, 1.5])
    """
    model = clone(estimator)
    target = model.steps[-1][1] if hasattr(model, "steps") else model
    name = type(target).__name__
    params = target.get_params(deep=False)
    mean = float(np.mean(weight)) if len(weight) else 1.0
    if mean <= 0 or mean == 1.0:
        return model, weight, []
    solver = params.get("solver")
    notes: list[str] = []
    if name in ("LogisticRegression", "LogisticRegressionCV") and solver in ("sag", "saga") and "C" in params:
        target.set_params(C=float(params["C"]) * mean)
        notes.append(f"{name}(solver={solver!r}): weights / {mean:.4g}, C x {mean:.4g} (same optimum); {solver} "
                     "is slow on coresets (large-norm rows), coreset_spark.elastic_net.ElasticNetLogisticRegression "
                     "fits the same L1 / elastic-net objective with L-BFGS-B")
    elif name in ("Ridge", "RidgeClassifier") and solver in ("sag", "saga"):
        target.set_params(alpha=float(params["alpha"]) / mean)
        notes.append(f"{name}(solver={solver!r}): weights / {mean:.4g}, alpha / {mean:.4g} (same optimum)")
    elif name.startswith("SGD"):
        notes.append(f"{name}: weights / {mean:.4g} (SGD averages per-row losses)")
    else:
        return model, weight, []
    return model, np.asarray(weight, dtype=np.float64) / mean, notes


def fit_on_coreset(estimator: Any, x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> tuple[Any, list[str]]:
    """Fit ``estimator`` on a coreset the right way: row-counting hyper-parameters translated
    (:func:`weight_based_params`), weights rescaled for solvers that need it
    (:func:`weight_scale_rules`), weights routed to every step. Returns the model and the notes.

    >>> from sklearn.tree import DecisionTreeClassifier
    >>> x = np.arange(20.0).reshape(-1, 1); y = (x[:, 0] > 9).astype(int)
    >>> model, notes = fit_on_coreset(DecisionTreeClassifier(min_samples_leaf=5), x, y, np.full(20, 50.0))
    >>> notes[0]
    'min_samples_leaf=5 rows -> min_weight_fraction_leaf=0.005'
    """
    weight = np.asarray(weight, dtype=np.float64)
    model, notes = weight_based_params(estimator, len(y), float(weight.sum()))
    model, weight, scale_notes = weight_scale_rules(model, weight)
    fitted, warned = fit_weighted(model, x, y, weight)
    return fitted, notes + scale_notes + warned


# Row-counting hyper-parameters and their weight-based translations. On a coreset a row stands
# for ``weight`` rows, so a rule that counts rows (a leaf needs 20 rows) would count coreset rows,
# not the rows they stand for. The rules (``represented`` = sum of weights = rows of the full data,
# ``rows`` = rows of the coreset; in a Pipeline, the final step; nothing is translated when the
# weights sum to no more than the rows, as each row then stands for at most one):
#   scikit-learn trees and forests: min_samples_leaf=k (k >= 1 rows) -> min_weight_fraction_leaf =
#       k / represented, min_samples_leaf = 1 (a leaf must hold k rows' worth of weight); a
#       fraction f of the rows -> min_weight_fraction_leaf = f; both capped at scikit-learn's 0.5;
#       min_samples_split (rows or a fraction) -> flagged (no weight-based twin): kept, with a note;
#       max_samples=k rows (forests) -> max_samples = k / represented (a fraction).
#   Gradient boosting (GradientBoosting and HistGradientBoosting min_samples_leaf=k, LightGBM
#   min_child_samples=k or its aliases):
#       kept, k coreset rows, with a note. A boosting leaf's value is a ratio of the sums of the
#       gradients and hessians of its rows: its noise is set by how many sampled rows it holds,
#       not by how many rows they stand for, so a leaf needs k rows of the coreset as it needs k
#       rows of the full data. (The proportional share, k * rows / represented, used before, let
#       leaves of one coreset row fit that row's noise: on a 40,004-row flights coreset the CV then
#       preferred learning rate 0.1, whose fit on all 2.1 million rows scored 0.7247 test ROC AUC,
#       against 0.7399 for learning rate 0.2, which the CV prefers with k = 20 coreset rows.)
#       LightGBM's min_child_weight is left as is (it sums the hessian, which the weights already
#       scale); reg_lambda = 0 (its default) is flagged: with weighted rows and few rows per leaf,
#       multiclass leaf values diverge (see the note).
#   XGBoost: min_child_weight already sums weighted hessians: unchanged.
ROW_COUNT_RULES = {
    "min_samples_leaf": "weight fraction (scikit-learn trees and forests) or kept as coreset rows (gradient "
                        "boosting: GradientBoosting, HistGradientBoosting)",
    "min_samples_split": "flagged: no weight-based equivalent",
    "max_samples": "fraction of the represented rows",
    "min_child_samples": "kept as coreset rows (LightGBM, and its aliases min_data_in_leaf, min_data_per_leaf, "
                         "min_data)",
}

# LightGBM's aliases, in the order LightGBM lets them override the scikit-learn argument.
_LIGHTGBM_LEAF_ROWS = ("min_data_in_leaf", "min_data_per_leaf", "min_data", "min_child_samples")
_LIGHTGBM_L2 = ("lambda_l2", "lambda", "l2_regularization", "reg_lambda")


def _final_step(model: Any) -> Any:
    """The estimator at the end of a (possibly nested) Pipeline; the model itself otherwise."""
    while hasattr(model, "steps"):
        model = model.steps[-1][1]
    return model


def _whole_number(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def weight_based_params(estimator: Any, rows: int, represented: float) -> tuple[Any, list[str]]:
    """A clone of ``estimator`` whose row-counting hyper-parameters are translated for a coreset.

    ``rows`` is the coreset's row count, ``represented`` the sum of its weights (the rows they stand
    for). In a Pipeline the final step is translated. Returns the clone and one note per translated,
    kept or flagged parameter; ``estimator`` itself is not changed.

    >>> from sklearn.tree import DecisionTreeClassifier
    >>> model, notes = weight_based_params(DecisionTreeClassifier(min_samples_leaf=50), 1000, 100000.0)
    >>> model.min_samples_leaf, model.min_weight_fraction_leaf
    (1, 0.0005)
    """
    if not (isinstance(represented, (int, float, np.integer, np.floating)) and np.isfinite(represented)
            and represented > 0):
        raise ValueError(f"the weights sum to {represented!r}: coreset weights must sum to a finite number > 0 "
                         "(the rows they stand for); check sample_weight for NaN, infinite or negative values")
    model = clone(estimator)
    target = _final_step(model)
    params = target.get_params(deep=False)
    name = type(target).__name__
    notes: list[str] = []
    scaled = represented > rows  # otherwise each row stands for at most one row: row counts hold as they are

    def kept(key: str, value: Any) -> None:
        if scaled and _whole_number(value) and value > 1:
            notes.append(f"{key}={value} kept: {value} coreset rows per leaf ({rows} rows standing for "
                         f"{represented:.0f}; a leaf value needs that many sampled rows)")

    if name.startswith(("HistGradientBoosting", "GradientBoosting")):
        kept("min_samples_leaf", params.get("min_samples_leaf"))
    elif name.startswith("LGBM"):
        key = next((k for k in _LIGHTGBM_LEAF_ROWS if params.get(k) is not None), "min_child_samples")
        kept(key, params.get(key))
        if not any(params.get(k) for k in _LIGHTGBM_L2):
            notes.append("reg_lambda=0 (LightGBM's default): with unequal weights and few rows per leaf a leaf "
                         "value -G/H can blow up on well-separated classes; set reg_lambda >= 1")
    elif "min_weight_fraction_leaf" in params and scaled:  # scikit-learn trees and forests
        leaf = params.get("min_samples_leaf")
        before = float(params.get("min_weight_fraction_leaf") or 0.0)
        if (_whole_number(leaf) and leaf > 1) or (isinstance(leaf, float) and 0.0 < leaf < 1.0):
            # k rows of the full data are k / represented of its weight; a fraction f of the rows is f of it
            wanted = leaf / represented if _whole_number(leaf) else float(leaf)
            fraction = min(max(before, wanted), 0.5)
            target.set_params(min_samples_leaf=1, min_weight_fraction_leaf=fraction)
            cap = " (capped at 0.5, scikit-learn's largest)" if max(before, wanted) > 0.5 else ""
            kept_before = f" (the larger, given min_weight_fraction_leaf={before:.3g})" if before > wanted else ""
            notes.append(f"min_samples_leaf={leaf} rows -> min_weight_fraction_leaf={fraction:.3g}{cap}{kept_before}")
        split = params.get("min_samples_split")
        if (_whole_number(split) and split > 2) or isinstance(split, float):
            notes.append(f"min_samples_split={split} counts coreset rows (no weight-based equivalent); "
                         "prefer min_weight_fraction_leaf")
        samples = params.get("max_samples")
        if _whole_number(samples) and samples > 0:
            target.set_params(max_samples=min(1.0, samples / represented))
            notes.append(f"max_samples={samples} rows -> fraction {min(1.0, samples / represented):.3g}")
    return model, notes
