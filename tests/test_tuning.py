"""Tuning on the driver without Spark: weighted scores, weighted folds, routing, every family."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from coreset_spark.config import ConfigError
from coreset_spark.driver import fit_on_coreset, fit_weighted, weight_scale_rules, weighted_folds
from coreset_spark.tuning import Candidate, IntUniform, Uniform, tune, weighted_score


def _data(n: int = 240, seed: int = 0, classes: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    score = x[:, 0] + 0.5 * x[:, 1] + 0.7 * rng.normal(size=n)
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))
    w = rng.integers(1, 6, size=n).astype(np.float64)
    return x, y.astype(np.int64), w


@pytest.mark.parametrize("scoring", ["accuracy", "balanced_accuracy", "f1", "neg_log_loss", "roc_auc"])
@pytest.mark.parametrize("classes", [2, 3])
def test_weighted_score_equals_score_on_repeated_rows(scoring: str, classes: int) -> None:
    x, y, w = _data(classes=classes)
    model = LogisticRegression().fit(x[:120], y[:120])
    xs, ys, ws = x[120:], y[120:], w[120:]
    repeat = np.repeat(np.arange(len(ys)), ws.astype(int))
    weighted = weighted_score(scoring, model, xs, ys, ws, classes)
    repeated = weighted_score(scoring, model, xs[repeat], ys[repeat], np.ones(len(repeat)), classes)
    assert weighted == pytest.approx(repeated, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("scoring", ["neg_root_mean_squared_error", "r2"])
def test_weighted_regression_score_equals_repeated_rows(scoring: str) -> None:
    x, _, w = _data()
    t = x @ np.array([1.0, -2.0, 0.5, 0.0]) + np.random.default_rng(1).normal(size=len(x))
    model = Ridge().fit(x[:120], t[:120])
    repeat = np.repeat(np.arange(120, 240), w[120:].astype(int))
    assert weighted_score(scoring, model, x[120:], t[120:], w[120:]) == pytest.approx(
        weighted_score(scoring, model, x[repeat], t[repeat], np.ones(len(repeat))), rel=1e-9)


def test_pipeline_fit_routes_weights_to_every_step() -> None:
    x, y, w = _data()
    repeat = np.repeat(np.arange(len(y)), w.astype(int))
    pipe = make_pipeline(StandardScaler(), LogisticRegression(tol=1e-10, max_iter=5000))
    weighted, _ = fit_weighted(pipe, x, y, w)
    repeated, _ = fit_weighted(pipe, x[repeat], y[repeat], None)
    np.testing.assert_allclose(weighted[0].mean_, repeated[0].mean_, rtol=1e-10)
    np.testing.assert_allclose(weighted[0].scale_, repeated[0].scale_, rtol=1e-10)
    np.testing.assert_allclose(weighted[-1].coef_, repeated[-1].coef_, rtol=1e-4, atol=1e-6)


def test_search_through_a_pipeline_uses_weights() -> None:
    x, y, w = _data()
    result = tune([Candidate("pipe", make_pipeline(StandardScaler(), LogisticRegression()),
                             {"logisticregression__C": [0.1, 1.0]})], (x, y, w), scoring="neg_log_loss")
    assert len(result.trials) == 2 and np.isfinite(result.best.score)
    assert result.best_estimator_[0].mean_ == pytest.approx(np.average(x, axis=0, weights=w))


def test_weighted_folds_balance_weight_and_cover_every_row() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, size=500)
    w = np.where(rng.random(500) < 0.02, 1000.0, rng.uniform(1, 3, 500))  # a few very heavy rows
    folds = weighted_folds(y, w, n_splits=5, seed=1)
    tests = np.concatenate([t for _, t in folds])
    assert sorted(tests.tolist()) == list(range(500))
    for train, test in folds:
        assert len(np.intersect1d(train, test)) == 0
    for c in range(3):
        per_fold = [w[t][y[t] == c].sum() for _, t in folds]
        assert max(per_fold) - min(per_fold) <= w[y == c].max() + 1e-9  # at most about one row's weight apart
        heavy = [int(np.sum((w[t] == 1000.0) & (y[t] == c))) for _, t in folds]
        assert max(heavy) - min(heavy) <= 1  # heavy rows spread over the folds
    assert [t.tolist() for _, t in folds] == [t.tolist() for _, t in weighted_folds(y, w, 5, seed=1)]


def test_weighted_folds_errors() -> None:
    with pytest.raises(ValueError, match="n_splits"):
        weighted_folds(np.zeros(10), np.ones(10), n_splits=1)
    with pytest.raises(ValueError, match="3 rows cannot make 5 folds"):
        weighted_folds(np.zeros(3), np.ones(3), n_splits=5)


def test_weight_scale_rules_keep_the_optimum() -> None:
    x, y, w = _data()
    w = w * 1000.0  # count-like weights
    reference, _ = fit_weighted(LogisticRegression(C=0.5, tol=1e-10, max_iter=10000), x, y, w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, notes = fit_on_coreset(LogisticRegression(C=0.5, solver="saga", tol=1e-10, max_iter=20000), x, y, w)
    assert any("saga" in n for n in notes)
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-3, atol=1e-4)
    _, scaled, notes = weight_scale_rules(SGDClassifier(), w)
    assert scaled.mean() == pytest.approx(1.0) and notes
    same, unchanged, notes = weight_scale_rules(LogisticRegression(), w)
    assert unchanged is w and notes == []


def test_row_counting_parameters_translated_in_search() -> None:
    x, y, w = _data()
    result = tune([Candidate("tree", DecisionTreeClassifier(random_state=0), {"min_samples_leaf": [20]})],
                  (x, y, w * 10), scoring="accuracy")
    assert any("min_weight_fraction_leaf" in n for n in result.trials[0].notes)


def test_search_every_family() -> None:
    import lightgbm
    import xgboost

    from coreset_spark.neural import TorchMLPClassifier

    x, y, w = _data(300, classes=3)
    candidates = [
        Candidate("logistic", LogisticRegression(max_iter=2000), {"C": [0.1, 10.0]}),
        Candidate("tree", DecisionTreeClassifier(random_state=0), {"max_depth": [2, 4]}),
        Candidate("forest", RandomForestClassifier(n_estimators=20, random_state=0), {"max_depth": [3]}),
        Candidate("hist_gbm", HistGradientBoostingClassifier(max_iter=20, random_state=0), {"learning_rate": [0.1]}),
        Candidate("xgboost", xgboost.XGBClassifier(n_estimators=20, n_jobs=1, random_state=0), {"max_depth": [2]}),
        Candidate("lightgbm", lightgbm.LGBMClassifier(n_estimators=20, n_jobs=1, verbose=-1, random_state=0),
                  {"num_leaves": [7]}),
        Candidate("mlp", TorchMLPClassifier(hidden=(16,), epochs=20, random_state=0), {"l2": [1e-4], "init": ["xavier"]}),
    ]
    result = tune(candidates, (x, y, w), scoring="balanced_accuracy", cv=3)
    assert {t.candidate for t in result.trials} == {c.name for c in candidates}
    for trial in result.trials:
        assert len(trial.fold_scores) == 3 and all(np.isfinite(trial.fold_scores)), trial.notes
        assert trial.score > 0.5, trial.label()  # better than chance on 3 balanced classes
    assert result.best_estimator_ is not None


def test_random_and_optuna_search_are_seeded() -> None:
    x, y, w = _data()
    candidates = [Candidate("logistic", LogisticRegression(), {"C": Uniform(1e-3, 1e2, log=True)}),
                  Candidate("tree", DecisionTreeClassifier(random_state=0), {"max_depth": IntUniform(1, 6)})]
    first = tune(candidates, (x, y, w), method="random", n_iter=3, seed=5, scoring="roc_auc")
    again = tune(candidates, (x, y, w), method="random", n_iter=3, seed=5, scoring="roc_auc")
    assert len(first.trials) == 6 and [t.params for t in first.trials] == [t.params for t in again.trials]
    with pytest.raises(ConfigError, match="needs a list of values"):
        tune(candidates, (x, y, w), method="grid")
    study = tune(candidates, (x, y, w), method="optuna", n_iter=6, seed=2, scoring="roc_auc")
    repeat = tune(candidates, (x, y, w), method="optuna", n_iter=6, seed=2, scoring="roc_auc")
    assert len(study.trials) == 6 and [t.params for t in study.trials] == [t.params for t in repeat.trials]


def test_mlp_weights_are_scale_free_and_act_like_repeats() -> None:
    from coreset_spark.neural import TorchMLPClassifier, TorchMLPRegressor

    x, y, w = _data()
    a = TorchMLPClassifier(hidden=(8,), epochs=5, random_state=1).fit(x, y, sample_weight=w)
    b = TorchMLPClassifier(hidden=(8,), epochs=5, random_state=1).fit(x, y, sample_weight=w * 1e4)
    np.testing.assert_allclose(a.predict_proba(x), b.predict_proba(x), rtol=1e-4, atol=1e-6)
    heavy = np.where(y == 1, 50.0, 1.0)  # weighting class 1 up moves predictions towards it
    c = TorchMLPClassifier(hidden=(8,), epochs=20, random_state=1, init="xavier", l1=1e-4).fit(x, y, sample_weight=heavy)
    assert (c.predict(x) == 1).mean() > (TorchMLPClassifier(hidden=(8,), epochs=20, random_state=1).fit(x, y).predict(x)
                                         == 1).mean()
    t = x[:, 0] * 3.0 + 1.0
    r = TorchMLPRegressor(hidden=(16,), epochs=80, random_state=0, clip_norm=1.0).fit(x, t, sample_weight=w)
    assert np.sqrt(np.mean((r.predict(x) - t) ** 2)) < 0.5
    with pytest.raises(ValueError, match="init='glorot'"):
        TorchMLPClassifier(init="glorot").fit(x, y)


def test_bad_search_settings_are_named() -> None:
    x, y, w = _data()
    lr = [Candidate("logistic", LogisticRegression(), {"C": [1.0]})]
    with pytest.raises(ConfigError, match="method='bayes'"):
        tune(lr, (x, y, w), method="bayes")
    with pytest.raises(ConfigError, match="scoring='r2' does not apply to classification"):
        tune(lr, (x, y, w), scoring="r2")
    with pytest.raises(ConfigError, match="backend='spark' needs the Spark session"):
        tune(lr, (x, y, w), backend="spark")
    with pytest.raises(ConfigError, match="does not fit a classification coreset"):
        tune([Candidate("ridge", Ridge(), {"alpha": [1.0]})], (x, y, w))
    with pytest.raises(ConfigError, match="unique"):
        tune(lr + lr, (x, y, w))


def test_a_failing_configuration_is_reported_not_fatal() -> None:
    x, y, w = _data()
    result = tune([Candidate("logistic", LogisticRegression(), {"C": [-1.0, 1.0]})], (x, y, w), scoring="accuracy")
    bad = next(t for t in result.trials if t.params["C"] == -1.0)
    assert np.isnan(bad.score) and "InvalidParameterError" in bad.notes[0]
    assert result.best.params == {"C": 1.0}


@pytest.mark.parametrize("l1_ratio", [0.0, 0.5, 1.0])
def test_elastic_net_logistic_matches_saga_and_repeated_rows(l1_ratio: float) -> None:
    from coreset_spark.elastic_net import ElasticNetLogisticRegression

    x, y, w = _data(n=400, seed=3)
    x = np.column_stack([x, np.random.default_rng(9).normal(size=(400, 3))])  # three noise columns
    model = ElasticNetLogisticRegression(C=0.02, l1_ratio=l1_ratio).fit(x, y, sample_weight=w)
    saga = LogisticRegression(C=0.02, l1_ratio=l1_ratio, solver="saga", tol=1e-12, max_iter=200000)
    saga.fit(x, y, sample_weight=w)
    np.testing.assert_allclose(model.coef_, saga.coef_, atol=1e-5)
    np.testing.assert_allclose(model.intercept_, saga.intercept_, atol=1e-5)
    repeated = ElasticNetLogisticRegression(C=0.02, l1_ratio=l1_ratio).fit(np.repeat(x, w.astype(int), axis=0),
                                                                            np.repeat(y, w.astype(int)))
    np.testing.assert_allclose(model.coef_, repeated.coef_, atol=1e-7)
    if l1_ratio == 1.0:
        assert (model.coef_ == 0).sum() >= 1  # exact zeros from the bound constraints
    proba = model.predict_proba(x)
    assert proba.shape == (400, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert set(model.predict(x)) <= set(model.classes_)


def test_elastic_net_logistic_bad_input_is_named() -> None:
    from coreset_spark.elastic_net import ElasticNetLogisticRegression

    x, y, w = _data(classes=3)
    with pytest.raises(ValueError, match="3 classes.*OneVsRestClassifier"):
        ElasticNetLogisticRegression().fit(x, y)
    x, y, w = _data()
    with pytest.raises(ValueError, match="C=0.0"):
        ElasticNetLogisticRegression(C=0.0).fit(x, y)
    with pytest.raises(ValueError, match="l1_ratio=1.5"):
        ElasticNetLogisticRegression(l1_ratio=1.5).fit(x, y)
    for bad, named in [({"max_iter": 2.7}, "max_iter=2.7"), ({"tol": float("nan")}, "tol=nan"),
                       ({"fit_intercept": "no"}, "fit_intercept='no'")]:
        with pytest.raises(ValueError, match=named):
            ElasticNetLogisticRegression(**bad).fit(x, y)
    with pytest.raises(ValueError, match="only one class"):
        ElasticNetLogisticRegression().fit(x[:5], np.zeros(5))
    with pytest.raises(ValueError, match="Negative values.*sample_weight"):
        ElasticNetLogisticRegression().fit(x, y, sample_weight=np.where(np.arange(len(y)) < 5, -3.0, 1.0))
    with pytest.raises(NotFittedError):
        ElasticNetLogisticRegression().predict(x)
    # NumPy scalars are numbers (a grid built with np.arange)
    ElasticNetLogisticRegression(C=np.int64(2), l1_ratio=np.float32(0.5)).fit(x, y)
    result = tune([Candidate("enet", ElasticNetLogisticRegression(), {"C": [0.01, 1.0]})], (x, y, w),
                  scoring="roc_auc", cv=3)
    assert len(result.trials) == 2 and all(np.isfinite(t.score) for t in result.trials)


def test_elastic_net_logistic_converges_with_large_weights_on_separable_classes() -> None:
    """The gradient test is relative to the objective at the solution, not at the start (which
    is far larger with big weights on separable classes): the fit matches lbfgs's L2 optimum."""
    from coreset_spark.elastic_net import ElasticNetLogisticRegression

    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(-3, 1, (20, 2)), rng.normal(3, 1, (20, 2))]
    y = np.r_[np.zeros(20), np.ones(20)]
    w = np.full(40, 1e6)
    model = ElasticNetLogisticRegression(l1_ratio=0.0).fit(x, y, sample_weight=w)
    lbfgs = LogisticRegression(C=1.0, tol=1e-12, max_iter=10000).fit(x, y, sample_weight=w)
    np.testing.assert_allclose(model.coef_, lbfgs.coef_, rtol=1e-4)
