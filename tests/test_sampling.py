"""The samplers and the tree without Spark: invariants, floors, unbiasedness, edge cases."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from coreset_spark import logistic
from coreset_spark.encoding import Encoder
from coreset_spark.sampling import calibrate_weights, row_uniforms, select_rows, stable_round
from coreset_spark.tree import Sampler, TreePlan, build_in_memory, features_matrix


def table(n: int, classes: np.ndarray | None = None, seed: int = 0, weight: np.ndarray | None = None) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.standard_t(df=2, size=(n, 3))  # heavy tails, like real counts
    if classes is None:
        classes = (x[:, 0] + rng.normal(size=n) > 0).astype(np.int64)
    return pa.table({"_row_id": np.arange(n, dtype=np.int64) * 7919 + 13, "_class": classes,
                     "_weight": np.ones(n) if weight is None else weight,
                     "a": x[:, 0], "b": x[:, 1], "c": x[:, 2]})


ENCODER = Encoder(("a", "b", "c"), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), (), ())


def build(t: pa.Table, family: str = "logistic", size: int = 200, seed: int = 0, levels: int = 2, fanin: int = 4,
          n_strata: int = 2, min_per_class: int = 10) -> dict[int, pa.Table]:
    sampler = Sampler.create(family, ENCODER, TreePlan(size, fanin, levels), n_strata, seed,
                             alpha=0.1, min_per_class=min_per_class)
    return build_in_memory(t, sampler)


@pytest.mark.parametrize("family", ["logistic", "uniform"])
def test_weights_sum_to_rows_overall_and_per_class(family: str) -> None:
    t = table(5000)
    y = t.column("_class").to_numpy()
    for level, rows in build(t, family).items():
        w = rows.column("weight").to_numpy()
        assert w.sum() == pytest.approx(5000, rel=1e-12), level
        assert (w > 0).all()
        if family == "logistic":
            target = rows.column("target").to_numpy()
            for c in (0, 1):
                assert w[target == c].sum() == pytest.approx((y == c).sum(), rel=1e-12)


def test_input_weights_are_carried_not_reset() -> None:
    weight = np.random.default_rng(3).integers(1, 6, size=3000).astype(float)
    rows = build(table(3000, weight=weight))[0]
    assert rows.column("weight").to_numpy().sum() == pytest.approx(weight.sum(), rel=1e-12)


def test_root_size_is_near_target_and_levels_grow() -> None:
    levels = build(table(20000), size=300, levels=2, fanin=4)
    sizes = {k: v.num_rows for k, v in levels.items()}
    assert 0.8 * 300 <= sizes[0] <= 1.35 * 300
    assert sizes[0] < sizes[1] < sizes[2]


def test_rare_class_is_kept_whole_and_every_class_survives() -> None:
    n = 6000
    classes = np.zeros(n, dtype=np.int64)
    classes[:3] = 2  # three rows of a rare class
    classes[3:60] = 1
    rows = build(table(n, classes=classes), size=50, n_strata=3, min_per_class=5)[0]
    target = rows.column("target").to_numpy()
    assert (target == 2).sum() == 3  # all of them, with their own weight
    assert rows.column("weight").to_numpy()[target == 2] == pytest.approx([1.0, 1.0, 1.0])
    assert (target == 1).sum() >= 1


def test_uniform_floor_bounds_weights() -> None:
    rows = build(table(10000), size=500, levels=1)[0]
    assert rows.column("weight").to_numpy().max() < 10000 / (0.1 * 500) * 1.5


def test_weighted_loss_is_unbiased_over_seeds() -> None:
    t = table(3000, seed=5)
    x = np.column_stack([t.column(c).to_numpy() for c in "abc"])
    y = t.column("_class").to_numpy()
    beta = np.array([1.0, -0.5, 0.25])

    def loss(xx: np.ndarray, yy: np.ndarray, w: np.ndarray) -> float:
        margin = (2 * yy - 1) * (xx @ beta)
        return float((w * np.logaddexp(0, -margin)).sum())

    full = loss(x, y, np.ones(len(y)))
    estimates = []
    for seed in range(200):
        rows = build(t, size=150, seed=seed, levels=1)[0]
        estimates.append(loss(features_matrix(rows, 3), rows.column("target").to_numpy(),
                              rows.column("weight").to_numpy()))
    estimates = np.array(estimates)
    assert abs(estimates.mean() / full - 1) < 0.02
    assert estimates.std() / full < 0.2


def test_same_seed_same_coreset_other_seed_other() -> None:
    t = table(4000)
    a, b, c = build(t, seed=1)[0], build(t, seed=1)[0], build(t, seed=2)[0]
    assert a.equals(b)
    assert not np.array_equal(a.column("row_id").to_numpy(), c.column("row_id").to_numpy())


def test_batch_order_does_not_change_the_coreset() -> None:
    t = table(4000)
    shuffled = t.take(np.random.default_rng(0).permutation(t.num_rows))
    assert build(t)[0].equals(build(shuffled)[0])


def test_empty_input_and_one_row() -> None:
    empty = build(table(0))
    assert all(level.num_rows == 0 for level in empty.values())
    one = build(table(1, classes=np.array([1])))
    for level in one.values():
        assert level.num_rows == 1
        assert level.column("weight").to_numpy()[0] == 1.0


def test_calibration_keeps_certain_rows_and_hits_target() -> None:
    w = calibrate_weights(np.array([2.0, 1.0, 1.0]), np.array([1.0, 0.25, 0.5]), np.zeros(3, int), {0: 10.0})
    assert w[0] == 2.0 and w.sum() == pytest.approx(10.0)
    assert w[1] / w[2] == pytest.approx(2.0)


def test_selection_uses_hash_uniforms() -> None:
    keys = np.arange(1000, dtype=np.int64)
    u = row_uniforms(keys, 3, 1)
    assert 0.0 <= u.min() and u.max() < 1.0 and abs(u.mean() - 0.5) < 0.05
    sel = select_rows(keys, np.ones(1000), np.ones(1000), np.zeros(1000, int), size=100, seed=3, level=1,
                      total_importance=1000.0, total_weight=1000.0, alpha=0.1,
                      stratum_weight=np.full(1000, 1000.0), min_per_stratum=1)
    assert np.array_equal(sel.index, np.flatnonzero(u < 0.1))


def test_leverage_of_rank_deficient_gram() -> None:
    rng = np.random.default_rng(1)
    onehot = np.eye(3)[rng.integers(0, 3, 500)]
    x = np.hstack([rng.normal(size=(500, 2)), onehot, np.ones((500, 1))])  # one-hot block + intercept
    basis = logistic.LeverageBasis.from_gram(logistic.gram(x, np.ones(500)))
    lev = logistic.leverage(x, basis)
    assert lev.sum() == pytest.approx(5.0, rel=1e-6)  # rank 5, not 6
    assert lev.max() <= 1.0 + 1e-9


def test_stable_round_absorbs_summation_order() -> None:
    values = np.random.default_rng(0).normal(size=10000)
    a, b = values.sum(), values[::-1].sum()
    assert stable_round(a) == stable_round(b)
