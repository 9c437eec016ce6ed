"""Editing leaves without Spark: the edited leaf equals a leaf sampled afresh from the changed rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from coreset_spark.config import CoresetParams
from coreset_spark.encoding import Encoder
from coreset_spark.incremental import LeafEdit, LeafStrata, edit_leaf, empty_rows
from coreset_spark.tree import (
    LeafMap,
    Rows,
    Sampler,
    TreePlan,
    calibrate_leaf,
    encode_batch,
    leaf_totals,
    sample_leaf_batch,
    totals_of_batch,
)

ENCODER = Encoder(("a", "b"), (0.0, 0.0), (1.0, 1.0), (), ())


def rows_table(n: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.standard_t(df=3, size=(n, 2))
    classes = (x[:, 0] + rng.normal(size=n) > 0).astype(np.int64)
    return pa.table({"_row_id": rng.permutation(10 * n)[:n].astype(np.int64), "_class": classes,
                     "_weight": np.ones(n), "_target": classes.astype(float), "a": x[:, 0], "b": x[:, 1]})


def leaf_of_table(table: pa.Table, sampler: Sampler) -> tuple[pa.Table, pa.Table]:
    """The calibrated single leaf (plan with one leaf) and its strata, sampled with the sampler's frozen totals."""
    totals = totals_of_batch(table, sampler)
    leaf_weight, keep, _, _ = leaf_totals(totals, sampler)
    sampled = sample_leaf_batch(table, sampler, leaf_weight, keep)
    return calibrate_leaf(sampled, sampler, leaf_weight), totals


def frozen_sampler(table: pa.Table, family: str = "logistic") -> Sampler:
    plan = TreePlan(size=150, fanin=2, levels=1)
    sampler = Sampler.create(family, ENCODER, plan, 2, seed=4, alpha=0.2, min_per_class=1,
                             params=CoresetParams(family=family, seed=4))
    from coreset_spark.tree import gram_of_batches

    sampler = sampler.with_gram(gram_of_batches(table.to_batches(), sampler))
    totals = totals_of_batch(table, sampler)
    _, _, s, w = leaf_totals(totals, sampler)
    return replace_leaves(sampler.with_totals(s, w))


def replace_leaves(sampler: Sampler) -> Sampler:
    from dataclasses import replace

    return replace(sampler, leaves=LeafMap(0, 0, 1))  # one leaf: the whole table


def select(rows: Rows, mask: np.ndarray) -> Rows:
    return Rows(rows.keys[mask], rows.classes[mask], rows.weight[mask], rows.x[mask], rows.target[mask])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_removing_rows_gives_the_leaf_a_fresh_build_would(seed: int) -> None:
    table = rows_table(3000, seed)
    sampler = frozen_sampler(table)
    leaf, strata = leaf_of_table(table, sampler)
    rows = encode_batch(table, sampler.encoder)
    first_keys = set(strata.column("first_key").to_numpy().tolist())
    rng = np.random.default_rng(seed)
    gone = rng.random(len(rows.keys)) < 0.05
    gone &= ~np.isin(rows.keys, list(first_keys))  # the row kept for sure stays (see the module docstring)
    edited, new_strata, orphaned = edit_leaf(leaf, LeafStrata.of_leaf(strata, 0),
                                             LeafEdit(select(rows, gone), empty_rows(2)), sampler, 0)
    fresh, fresh_strata = leaf_of_table(table.filter(pa.array(~gone)), sampler)
    assert not orphaned
    assert edited.column("row_id").to_pylist() == fresh.column("row_id").to_pylist()
    np.testing.assert_allclose(edited.column("weight").to_numpy(), fresh.column("weight").to_numpy(), rtol=1e-9)
    for c in (0, 1):  # weights sum, per class, to the rows that remain
        y = edited.column("target").to_numpy()
        assert edited.column("weight").to_numpy()[y == c].sum() == pytest.approx(
            float(((rows.classes == c) & ~gone).sum()), rel=1e-9)
    assert not np.isin(edited.column("row_id").to_numpy(), rows.keys[gone]).any()
    assert new_strata.rows.sum() == (~gone).sum()


def test_changed_labels_move_rows_between_strata() -> None:
    table = rows_table(2000, 7)
    sampler = frozen_sampler(table)
    leaf, strata = leaf_of_table(table, sampler)
    rows = encode_batch(table, sampler.encoder)
    changed = np.zeros(len(rows.keys), dtype=bool)
    changed[:40] = True
    old = select(rows, changed)
    new = Rows(old.keys, 1 - old.classes, old.weight, old.x, (1 - old.classes).astype(float))
    edited, new_strata, _ = edit_leaf(leaf, LeafStrata.of_leaf(strata, 0), LeafEdit(old, new), sampler, 0)
    flipped = table.set_column(1, "_class", pa.array(np.where(changed, 1 - rows.classes, rows.classes)))
    flipped = flipped.set_column(3, "_target", pa.array(np.where(changed, 1 - rows.classes, rows.classes).astype(float)))
    fresh, _ = leaf_of_table(flipped, sampler)
    y_new = np.where(changed, 1 - rows.classes, rows.classes)
    target = dict(zip(edited.column("row_id").to_pylist(), edited.column("target").to_pylist()))
    for key, label in zip(rows.keys[changed], y_new[changed]):  # every changed row in the leaf carries its new label
        if key in target:
            assert target[key] == label
    w, t = edited.column("weight").to_numpy(), edited.column("target").to_numpy()
    for c in (0, 1):
        assert w[t == c].sum() == pytest.approx(float((y_new == c).sum()), rel=1e-9)
    # Apart from the rows kept for sure, the edited leaf holds the rows a fresh sample of the changed data holds.
    kept_for_sure = set(LeafStrata.of_leaf(strata, 0).first_key.tolist()) | set(new_strata.first_key.tolist())
    a = set(edited.column("row_id").to_pylist()) - kept_for_sure
    b = set(fresh.column("row_id").to_pylist()) - kept_for_sure
    assert a == b


def test_strata_bookkeeping() -> None:
    s = LeafStrata.from_columns([0, 1], [3, 2], [3.0, 2.0], [3.0, 2.0], [0.1, 0.2], [7, 9])
    s = s.remove(np.array([1]), np.array([1.0]), np.array([1.0]), np.array([9]))
    assert s.weight.tolist() == [3.0, 1.0] and np.isinf(s.first_u[1])
    s = s.add(np.array([1, 2]), np.array([1.0, 2.0]), np.array([0.5, 0.5]), np.array([11, 12]), np.array([0.3, 0.4]))
    assert s.stratum.tolist() == [0, 1, 2] and s.first_key.tolist() == [7, 11, 12]
    assert s.to_table(5).column("node").to_pylist() == [5, 5, 5]
