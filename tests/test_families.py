"""The model families without Spark: importance formulas, invariants, unbiasedness, floors,
and the translation of row-counting hyper-parameters."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from coreset_spark import kmeans, linear, logistic, pca, trees
from coreset_spark.config import ConfigError, CoresetParams, DataSpec, resolve_task
from coreset_spark.driver import weight_based_params
from coreset_spark.encoding import Encoder
from coreset_spark.tree import Sampler, TreePlan, build_in_memory, features_matrix

ENCODER = Encoder(("a", "b", "c"), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (), ())


def table(n: int, seed: int = 0, task: str = "classification") -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.standard_t(df=2, size=(n, 3))  # heavy tails, like real counts and delays
    y = x @ np.array([1.0, -2.0, 0.5]) + rng.normal(size=n)
    classes = (y > 0).astype(np.int64) if task == "classification" else np.zeros(n, np.int64)
    target = classes.astype(float) if task == "classification" else y
    return pa.table({"_row_id": np.arange(n, dtype=np.int64) * 7919 + 13, "_class": classes,
                     "_weight": np.ones(n), "_target": target, "a": x[:, 0], "b": x[:, 1], "c": x[:, 2]})


def build(t: pa.Table, family: str, task: str, size: int = 200, seed: int = 0, levels: int = 2,
          **options: object) -> dict[int, pa.Table]:
    n_classes = len(np.unique(t.column("_class").to_numpy())) if task == "classification" else 0
    params = CoresetParams(size=size, family=family, seed=seed, **options)  # type: ignore[arg-type]
    sampler = Sampler.create(family, ENCODER, TreePlan(size, 4, levels), n_classes, seed, alpha=0.1,
                             min_per_class=10, task=task, params=params)
    return build_in_memory(t, sampler)


FAMILIES = [("linear", "regression", {}), ("linear", "regression", {"ridge": 50.0}), ("pca", "clustering", {}),
            ("kmeans", "clustering", {}), ("kmeans", "clustering", {"kmeans_mode": "sensitivity", "clusters": 5,
                                                                     "pilot_rows": 500}),
            ("tree", "classification", {"pilot_rows": 1000}), ("tree", "regression", {"pilot_rows": 1000}),
            ("logistic", "classification", {})]


@pytest.mark.parametrize("family,task,options", FAMILIES)
def test_weights_sum_to_rows_at_every_level(family: str, task: str, options: dict) -> None:
    t = table(6000, task=task)
    levels = build(t, family, task, **options)
    classes = t.column("_class").to_numpy()
    for level, rows in levels.items():
        w = rows.column("weight").to_numpy()
        assert w.sum() == pytest.approx(6000, rel=1e-9), (family, level)
        assert np.all(w > 0)
        if task == "classification":
            y = rows.column("target").to_numpy().astype(int)
            for c in (0, 1):
                assert w[y == c].sum() == pytest.approx((classes == c).sum(), rel=1e-9)
    assert levels[0].num_rows < levels[1].num_rows < levels[2].num_rows
    assert levels[0].num_rows < 600  # about the root size, not the data
    if task == "regression":  # the stored target is the regression value of the row
        by_id = dict(zip(t.column("_row_id").to_pylist(), t.column("_target").to_pylist()))
        root = levels[0]
        assert all(by_id[k] == v for k, v in zip(root.column("row_id").to_pylist(), root.column("target").to_pylist()))


def test_linear_leverage_is_the_hat_matrix_diagonal_and_ridge_lowers_it() -> None:
    rng = np.random.default_rng(1)
    x, t = rng.normal(size=(300, 4)), rng.normal(size=300)
    a = linear.augmented(x, t)
    hat = np.diag(a @ np.linalg.inv(a.T @ a) @ a.T)
    g = logistic.gram(a, np.ones(300))
    plain = linear.importance(linear.make_state(g, 0.0), x, t)
    ridge = linear.importance(linear.make_state(g, 100.0), x, t)
    np.testing.assert_allclose(plain, hat, rtol=1e-8)
    assert np.all(ridge <= plain + 1e-12) and ridge.sum() < plain.sum() - 0.5


def test_pca_and_lightweight_kmeans_importance_is_distance_to_mean_plus_its_average() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 3)) * [1.0, 5.0, 0.1] + 3.0
    g = logistic.gram(linear.augmented(x, np.zeros(200)), np.ones(200))
    s = pca.importance(pca.make_state(g), x)
    d2 = ((x - x.mean(axis=0)) ** 2).sum(axis=1)
    np.testing.assert_allclose(s, d2 + d2.mean(), rtol=1e-8)
    np.testing.assert_allclose(kmeans.importance(kmeans.lightweight_state(g), x), s)


def test_kmeans_sensitivity_sums_add_across_parts() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1000, 2))
    state = kmeans.sensitivity_state(kmeans.pilot_centres(x[:300], np.ones(300), 4, seed=0))
    whole = kmeans.partial_sums(state, x, np.ones(1000))
    halves = kmeans.partial_sums(state, x[:400], np.ones(400)) + kmeans.partial_sums(state, x[400:], np.ones(600))
    np.testing.assert_allclose(whole, halves)
    final = kmeans.with_sums(state, whole)
    assert final.cluster_weight.sum() == pytest.approx(1000)
    assert final.total_cost == pytest.approx(kmeans.cost(x, None, final.centres), rel=1e-6)
    s = kmeans.importance(final, x)
    index, d2 = kmeans.nearest(x, final.centres)
    np.testing.assert_allclose(s, d2 / final.total_cost + 1.0 / final.cluster_weight[index])


def weighted_losses(family: str, model: str, task: str, seeds: int, **options: object) -> tuple[float, np.ndarray]:
    """Full-data loss of a fixed ``model`` and the estimates of it from ``family`` coresets over many seeds."""
    t = table(3000, seed=5, task=task)
    x = np.column_stack([t.column(c).to_numpy() for c in "abc"])
    target = t.column("_target").to_numpy()
    beta = np.array([0.8, -1.5, 0.2])
    centres = np.array([[0.0, 0.0, 0.0], [3.0, -3.0, 0.0], [-2.0, 2.0, 1.0]])

    def loss(xx: np.ndarray, tt: np.ndarray, w: np.ndarray) -> float:
        if model == "linear":
            return linear.squared_loss(beta, 0.1, xx, tt, w)
        if model == "kmeans":
            return kmeans.cost(xx, w, centres)
        margin = (2 * tt - 1) * (xx @ beta)
        return float((w * np.logaddexp(0.0, -margin)).sum())

    full = loss(x, target, np.ones(len(x)))
    estimates = []
    for seed in range(seeds):
        root = build(t, family, task, size=150, seed=seed, levels=1, **options)[0]
        estimates.append(loss(features_matrix(root, 3), root.column("target").to_numpy(),
                              root.column("weight").to_numpy()))
    return full, np.array(estimates)


@pytest.mark.parametrize("family,task,options", [("linear", "regression", {}), ("kmeans", "clustering", {}),
                                                 ("logistic", "classification", {})])
def test_weighted_loss_is_unbiased_and_beats_uniform(family: str, task: str, options: dict) -> None:
    full, estimates = weighted_losses(family, family, task, 120, **options)
    assert abs(estimates.mean() / full - 1) < 0.05, (estimates.mean(), full)
    _, uniform = weighted_losses("uniform", family, task, 120)
    # importance sampling: a smaller spread of the estimate than uniform sampling on heavy-tailed data
    assert np.std(estimates) < np.std(uniform)


def test_tree_family_strata_and_gradient_importance() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2000, 2))
    y = ((x[:, 0] > 0) ^ (rng.uniform(size=2000) < 0.1)).astype(np.int64)  # 10% label noise
    state = trees.make_state(x, y.astype(float), np.ones(2000), "classification", 2, depth=2, seed=0)
    strata = trees.strata(state, y, x)
    assert trees.n_strata(state) == 2 * state.n_leaves and strata.max() < trees.n_strata(state)
    s = trees.importance(state, x, y.astype(float))
    wrong = state.model.predict(x) != y
    assert s[wrong].mean() > 2 * s[~wrong].mean()  # rows the pilot gets wrong matter more
    # every (class, pilot leaf) stratum of the data keeps rows in the root
    t = pa.table({"_row_id": np.arange(2000, dtype=np.int64), "_class": y, "_weight": np.ones(2000),
                  "a": x[:, 0], "b": x[:, 1], "c": np.zeros(2000)})
    root = build(t, "tree", "classification", size=100, levels=1, pilot_rows=2000, pilot_depth=2)[0]
    seen = set(root.column("stratum").to_pylist())
    sampler_state = trees.make_state(np.column_stack([x, np.zeros(2000)]), y.astype(float), np.ones(2000),
                                     "classification", 2, depth=2, seed=0)
    assert seen == set(trees.strata(sampler_state, y, np.column_stack([x, np.zeros(2000)])).tolist())


def test_tree_family_floor_counts_rows_per_class_not_per_pilot_leaf() -> None:
    t = table(8000)
    levels = build(t, "tree", "classification", size=40, levels=1, pilot_rows=2000, pilot_depth=3)
    root = levels[0]
    strata = len(set(root.column("stratum").to_pylist()))
    assert strata >= 8  # 2 classes x several pilot leaves, each keeps a row
    # A floor of 10 rows per (class, pilot leaf) stratum would put over 100 rows in the root; per class
    # it leaves the root near its planned size plus one row per stratum.
    assert root.num_rows <= 40 + strata + 20
    y = root.column("target").to_numpy().astype(int)
    assert min((y == 0).sum(), (y == 1).sum()) >= 10
    assert root.column("weight").to_numpy().sum() == pytest.approx(8000, rel=1e-9)
    sampler = Sampler.create("logistic", ENCODER, TreePlan(10, 2, 1), 3, 0)
    assert sampler.floor_totals(np.array([[1.0, 2.0, 3.0]])).tolist() == [[1.0, 2.0, 3.0]]  # strata are classes


def test_family_determinism_in_memory() -> None:
    t = table(4000, task="clustering")
    a = build(t, "kmeans", "clustering", kmeans_mode="sensitivity", clusters=4, pilot_rows=800)
    b = build(t, "kmeans", "clustering", kmeans_mode="sensitivity", clusters=4, pilot_rows=800)
    for level in a:
        assert a[level].equals(b[level])


def test_task_resolution_and_errors() -> None:
    assert resolve_task(DataSpec(target="y"), CoresetParams(family="tree")) == "classification"
    assert resolve_task(DataSpec(target="y", task="regression"), CoresetParams(family="tree")) == "regression"
    assert resolve_task(DataSpec(target="y"), CoresetParams(family="linear")) == "regression"
    assert resolve_task(DataSpec(target=None), CoresetParams(family="pca")) == "clustering"
    with pytest.raises(ConfigError, match="data.task='classification' does not fit coreset.family='linear'"):
        resolve_task(DataSpec(target="y", task="classification"), CoresetParams(family="linear"))
    with pytest.raises(ConfigError, match="needs data.target"):
        resolve_task(DataSpec(target=None), CoresetParams(family="logistic"))
    with pytest.raises(ConfigError, match="coreset.kmeans_mode='fast' is unknown"):
        CoresetParams(kmeans_mode="fast")
    with pytest.raises(ConfigError, match="coreset.ridge=-1"):
        CoresetParams(ridge=-1.0)


def test_row_counting_hyper_parameters_are_translated() -> None:
    from lightgbm import LGBMClassifier
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from xgboost import XGBClassifier

    forest, notes = weight_based_params(RandomForestClassifier(min_samples_leaf=20, min_samples_split=40,
                                                               max_samples=5000), rows=2000, represented=200_000.0)
    assert forest.min_samples_leaf == 1 and forest.min_weight_fraction_leaf == pytest.approx(1e-4)
    assert forest.max_samples == pytest.approx(0.025)
    assert any("min_samples_split=40" in n for n in notes)
    # boosting: a leaf value needs k sampled rows, whatever they stand for (kept, with a note)
    hist, notes = weight_based_params(HistGradientBoostingClassifier(min_samples_leaf=20), 2000, 200_000.0)
    assert hist.min_samples_leaf == 20 and any("min_samples_leaf=20 kept" in n for n in notes)
    light, notes = weight_based_params(LGBMClassifier(min_child_samples=500), 2000, 200_000.0)
    assert light.min_child_samples == 500 and any("min_child_samples=500 kept" in n for n in notes)
    assert any("reg_lambda=0" in n for n in notes)  # flagged, not changed
    assert light.get_params()["reg_lambda"] == 0.0
    _, notes = weight_based_params(LGBMClassifier(reg_lambda=1.0), 2000, 200_000.0)
    assert not any("reg_lambda" in n for n in notes)
    xgb, notes = weight_based_params(XGBClassifier(min_child_weight=3.0), 2000, 200_000.0)
    assert xgb.min_child_weight == 3.0 and not notes  # already weight-based


def test_row_counting_rules_reach_pipelines_aliases_and_fractions() -> None:
    from lightgbm import LGBMClassifier
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    given = make_pipeline(StandardScaler(), DecisionTreeClassifier(min_samples_leaf=50))
    piped, notes = weight_based_params(given, rows=1000, represented=100_000.0)
    assert piped[-1].min_samples_leaf == 1 and piped[-1].min_weight_fraction_leaf == pytest.approx(5e-4)
    assert notes and given[-1].min_samples_leaf == 50  # the estimator passed in is not changed
    fraction, notes = weight_based_params(DecisionTreeClassifier(min_samples_leaf=0.05), 1000, 100_000.0)
    assert fraction.min_weight_fraction_leaf == pytest.approx(0.05) and fraction.min_samples_leaf == 1
    capped, notes = weight_based_params(DecisionTreeClassifier(min_samples_leaf=60_000), 1000, 100_000.0)
    assert capped.min_weight_fraction_leaf == 0.5 and "=0.5 (capped" in notes[0]
    boosted, notes = weight_based_params(GradientBoostingClassifier(min_samples_leaf=50), 1000, 100_000.0)
    assert boosted.min_samples_leaf == 50 and "kept" in notes[0]
    alias, notes = weight_based_params(LGBMClassifier(min_data_in_leaf=200, lambda_l2=5.0), 1000, 100_000.0)
    assert len(notes) == 1 and notes[0].startswith("min_data_in_leaf=200 kept")  # no reg_lambda flag
    # weights that stand for no more rows than there are: row counts mean what they say
    same, notes = weight_based_params(DecisionTreeClassifier(min_samples_leaf=5), 1000, 1000.0)
    assert same.min_samples_leaf == 5 and not notes
    for bad in (float("nan"), float("inf"), 0.0, -10.0):
        with pytest.raises(ValueError, match="weights sum to"):
            weight_based_params(DecisionTreeClassifier(min_samples_leaf=5), 1000, bad)
