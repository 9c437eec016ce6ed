"""Find rows that are likely mislabeled or anomalous among a coreset's rows. Pure NumPy + scikit-learn.

Every sampled row of a tree level is scored by how badly a model that never saw it explains it:
the rows are split into ``folds`` by a hash of their id, a weighted model is fitted on the other
folds, and the row's score is its loss under that model, ``-log p(label | x)`` for classification
(a confidently contradicted label scores high) or ``|residual| / RMSE`` for regression. Rows with
the highest scores are the ones to review first; :func:`rank_rows` picks the top ``n`` overall or
per class and skips rows already reviewed.

A row's sampling importance is kept beside its score: it says how much the row counts in the
coreset (rows of rare regions and rare classes weigh more), so a fix there moves models most.

>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(400, 2)); y = (x[:, 0] > 0).astype(int); y[:5] = 1 - y[:5]   # 5 flipped labels
>>> proba = out_of_fold_proba(LogisticRegression(), x, y, np.ones(400), np.arange(400), 2, folds=4)
>>> top = rank_rows(mislabel_scores(proba, y), y, n=10)
>>> int(np.isin(np.arange(5), top).sum()) >= 4
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.base import clone

from coreset_spark.sampling import row_uniforms

FOLD_LEVEL = (1 << 20) + 2  # hash salt of the cleaning folds
EPS = 1e-15


def fold_of(keys: np.ndarray, seed: int, folds: int) -> np.ndarray:
    """The cross-fitting fold of each row: a hash of (seed, row id), independent of row order.

    >>> sorted(set(fold_of(np.arange(100), 0, 3).tolist()))
    [0, 1, 2]
    """
    return np.minimum((row_uniforms(keys, seed, FOLD_LEVEL) * folds).astype(np.int64), folds - 1)


def out_of_fold_proba(estimator: Any, x: np.ndarray, y: np.ndarray, weight: np.ndarray, keys: np.ndarray,
                      n_classes: int, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Class probabilities of every row from a weighted model fitted without the row's fold."""
    if folds < 2:
        raise ValueError(f"folds={folds!r} must be at least 2 (a row is scored by a model that did not see it)")
    fold = fold_of(keys, seed, folds)
    proba = np.zeros((len(y), n_classes))
    for f in range(folds):
        test, train = fold == f, fold != f
        if not test.any():
            continue
        model = clone(estimator)
        model.fit(x[train], y[train], sample_weight=weight[train])
        classes = np.asarray(model.classes_, dtype=np.int64)
        proba[np.ix_(test, classes)] = model.predict_proba(x[test])
    return proba


def out_of_fold_predictions(estimator: Any, x: np.ndarray, t: np.ndarray, weight: np.ndarray, keys: np.ndarray,
                            folds: int = 5, seed: int = 0) -> np.ndarray:
    """Regression predictions of every row from a weighted model fitted without the row's fold."""
    fold = fold_of(keys, seed, folds)
    out = np.zeros(len(t))
    for f in range(folds):
        test, train = fold == f, fold != f
        if test.any():
            model = clone(estimator)
            model.fit(x[train], t[train], sample_weight=weight[train])
            out[test] = model.predict(x[test])
    return out


def mislabel_scores(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``-log p(label)``: large when the model confidently predicts another class.

    >>> mislabel_scores(np.array([[0.9, 0.1], [0.9, 0.1]]), np.array([0, 1])).round(3).tolist()
    [0.105, 2.303]
    """
    p = proba[np.arange(len(y)), np.asarray(y, dtype=np.int64)]
    return -np.log(np.clip(p, EPS, 1.0))


def residual_scores(prediction: np.ndarray, t: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``|t - prediction| / RMSE`` (weighted RMSE): large for rows far from what the model expects."""
    r = np.asarray(t, dtype=np.float64) - prediction
    rmse = float(np.sqrt(np.average(r * r, weights=weight))) if len(r) else 1.0
    return np.abs(r) / (rmse if rmse > 0 else 1.0)


def rank_rows(scores: np.ndarray, labels: np.ndarray, n: int | None = None,
              per_class: Mapping[int, int] | None = None, exclude: np.ndarray | None = None) -> np.ndarray:
    """Positions of the rows to review, highest score first (ties by position).

    ``n`` rows overall, or ``per_class[c]`` rows of each class ``c`` named there; rows where
    ``exclude`` is true (already reviewed) are skipped.

    >>> rank_rows(np.array([0.1, 0.9, 0.5, 0.7]), np.array([0, 0, 1, 1]), per_class={1: 1}).tolist()
    [3]
    """
    scores = np.asarray(scores, dtype=np.float64)
    eligible = np.ones(len(scores), dtype=bool) if exclude is None else ~np.asarray(exclude, dtype=bool)
    order = np.lexsort((np.arange(len(scores)), -scores))
    order = order[eligible[order]]
    if per_class:
        labels = np.asarray(labels)
        picked = [order[labels[order] == c][: int(k)] for c, k in per_class.items()]
        chosen = np.concatenate(picked) if picked else np.empty(0, np.int64)
        return chosen[np.lexsort((chosen, -scores[chosen]))] if len(chosen) else chosen
    return order[: (len(order) if n is None else int(n))]
