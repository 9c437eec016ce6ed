"""Edit a leaf of a coreset tree in place: rows leave it, rows join it. Pure NumPy/Arrow, no Spark.

A leaf is a Poisson sample of its input rows: row ``i`` is in it when its uniform number
``u_i`` (a hash of seed, level and row id) is below its inclusion probability ``pi_i``, or when it
is the row of its stratum with the smallest ``u`` (kept for sure); its weight is ``w_i / pi_i``
calibrated so that each stratum's weights sum to the stratum's input weight. Because every row
is included independently, a leaf can follow a change of its input exactly:

* a row that leaves (removed, or its old version when its label or features change) is dropped
  from the sample if it was in it, and its weight leaves its stratum's total;
* a row that joins (the new version of a changed row) is included when ``u < pi`` with ``pi``
  computed as the build would, from the tree's frozen sampling context;
* the leaf is then recalibrated to the new stratum totals.

The result is what a fresh build with the same sampling context would give, with two
exceptions that keep it a valid (unbiased, calibrated) sample but not the identical one: the
per-stratum floor of existing rows is not recomputed for the new stratum totals, and when the
row kept for sure leaves, its stratum keeps only its other sampled rows (if it has none left but
still has input weight, :func:`edit_leaf` reports it and the caller rebuilds that leaf from its
input). The nodes above a changed leaf are then re-reduced from their children
(:func:`coreset_spark.tree.reduce_node`), so only the changed leaves and their paths to the root
are recomputed.

>>> import numpy as np
>>> from coreset_spark.sampling import calibrate_weights
>>> strata = LeafStrata.from_columns([0], [3], [3.0], [3.0], [0.1], [7])
>>> strata.remove(np.array([0]), np.array([1.0]), np.array([1.0]), np.array([8])).weight.tolist()
[2.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from coreset_spark.sampling import calibrate_weights, row_uniforms
from coreset_spark.tree import COLUMNS, CORESET_SCHEMA, TOTALS_SCHEMA, Rows, Sampler, coreset_table, features_matrix


@dataclass(frozen=True)
class LeafStrata:
    """Per stratum of one leaf: input rows, input weight, sum of weight x importance, and the row
    kept for sure (its uniform number and key; ``inf`` when that row has left)."""

    stratum: np.ndarray
    rows: np.ndarray
    weight: np.ndarray
    weighted_importance: np.ndarray
    first_u: np.ndarray
    first_key: np.ndarray

    @staticmethod
    def from_columns(stratum: list[int], rows: list[int], weight: list[float], weighted_importance: list[float],
                     first_u: list[float], first_key: list[int]) -> LeafStrata:
        """From plain lists (one entry per stratum)."""
        return LeafStrata(np.asarray(stratum, np.int64), np.asarray(rows, np.int64), np.asarray(weight, np.float64),
                          np.asarray(weighted_importance, np.float64), np.asarray(first_u, np.float64),
                          np.asarray(first_key, np.int64))

    @staticmethod
    def of_leaf(strata: pa.Table, leaf: int) -> LeafStrata:
        """The strata of ``leaf`` from a TOTALS_SCHEMA table of many leaves."""
        mask = strata.column("node").to_numpy() == leaf
        t = strata.filter(pa.array(mask))
        return LeafStrata(*(np.asarray(t.column(c).to_numpy(), dtype=d) for c, d in (
            ("stratum", np.int64), ("rows", np.int64), ("weight", np.float64), ("weighted_importance", np.float64),
            ("first_u", np.float64), ("first_key", np.int64))))

    def to_table(self, leaf: int) -> pa.Table:
        """As TOTALS_SCHEMA rows of ``leaf`` (strata without rows are dropped)."""
        keep = self.rows > 0
        return pa.table({
            "node": np.full(int(keep.sum()), leaf, np.int64), "stratum": self.stratum[keep], "rows": self.rows[keep],
            "weight": self.weight[keep], "weighted_importance": self.weighted_importance[keep],
            "first_u": self.first_u[keep], "first_key": self.first_key[keep],
        }, schema=TOTALS_SCHEMA)

    def _index(self, strata: np.ndarray) -> tuple[LeafStrata, np.ndarray]:
        """Self with any missing strata added (empty), and the position of each of ``strata``."""
        missing = np.setdiff1d(np.unique(strata), self.stratum)
        out = self
        if len(missing):
            k = len(missing)
            out = LeafStrata(np.r_[self.stratum, missing], np.r_[self.rows, np.zeros(k, np.int64)],
                             np.r_[self.weight, np.zeros(k)], np.r_[self.weighted_importance, np.zeros(k)],
                             np.r_[self.first_u, np.full(k, np.inf)], np.r_[self.first_key, np.zeros(k, np.int64)])
        order = {int(c): i for i, c in enumerate(out.stratum)}
        return out, np.array([order[int(c)] for c in strata], dtype=np.int64)

    def remove(self, strata: np.ndarray, weight: np.ndarray, importance: np.ndarray, keys: np.ndarray) -> LeafStrata:
        """The strata after rows (their stratum, input weight, importance, key) left the leaf."""
        out, pos = self._index(np.asarray(strata, np.int64))
        rows, w, wi = out.rows.copy(), out.weight.copy(), out.weighted_importance.copy()
        first_u = out.first_u.copy()
        np.add.at(rows, pos, -1)
        np.add.at(w, pos, -np.asarray(weight, np.float64))
        np.add.at(wi, pos, -np.asarray(weight, np.float64) * np.asarray(importance, np.float64))
        lost = np.isin(out.first_key, np.asarray(keys, np.int64))
        first_u[lost] = np.inf
        w = np.where(rows > 0, np.maximum(w, 0.0), 0.0)
        return LeafStrata(out.stratum, rows, w, np.where(rows > 0, wi, 0.0), first_u, out.first_key)

    def add(self, strata: np.ndarray, weight: np.ndarray, importance: np.ndarray, keys: np.ndarray,
            u: np.ndarray) -> LeafStrata:
        """The strata after rows joined the leaf; a joining row with a smaller ``(u, key)`` than its
        stratum's row kept for sure takes that place."""
        out, pos = self._index(np.asarray(strata, np.int64))
        rows, w, wi = out.rows.copy(), out.weight.copy(), out.weighted_importance.copy()
        first_u, first_key = out.first_u.copy(), out.first_key.copy()
        np.add.at(rows, pos, 1)
        np.add.at(w, pos, np.asarray(weight, np.float64))
        np.add.at(wi, pos, np.asarray(weight, np.float64) * np.asarray(importance, np.float64))
        for p, uu, key, ww in zip(pos, u, keys, weight):
            if ww > 0 and (first_u[p] == np.inf or (uu, key) < (first_u[p], first_key[p])):
                first_u[p], first_key[p] = uu, key
        return LeafStrata(out.stratum, rows, w, wi, first_u, first_key)


@dataclass(frozen=True)
class LeafEdit:
    """Rows leaving one leaf (their current version) and rows joining it (the new versions)."""

    removed: Rows
    added: Rows


def _select(rows: Rows, mask: np.ndarray) -> Rows:
    return Rows(rows.keys[mask], rows.classes[mask], rows.weight[mask], rows.x[mask], rows.target[mask])


def split_by_leaf(rows: Rows, leaves: np.ndarray) -> dict[int, Rows]:
    """The rows of each leaf."""
    return {int(leaf): _select(rows, leaves == leaf) for leaf in np.unique(leaves)}


def empty_rows(width: int) -> Rows:
    """No rows (``width`` encoded columns)."""
    return Rows(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, width)), np.zeros(0))


def edit_leaf(leaf_rows: pa.Table, strata: LeafStrata, edit: LeafEdit, sampler: Sampler, leaf: int
              ) -> tuple[pa.Table, LeafStrata, list[int]]:
    """Apply ``edit`` to one leaf's sampled rows; return the new rows, the new strata, and the
    strata left with input weight but no sampled row (the caller rebuilds the leaf from its input).

    ``sampler`` is the tree's (frozen context); ``leaf_rows`` are the leaf's rows in CORESET_SCHEMA.
    """
    level = sampler.plan.levels
    removed, added = edit.removed, edit.added
    r_strata = sampler.strata(removed.classes, removed.x)
    r_importance = sampler.importance(removed.x, removed.target)
    strata = strata.remove(r_strata, removed.weight, r_importance, removed.keys)
    a_strata = sampler.strata(added.classes, added.x)
    a_importance = sampler.importance(added.x, added.target)
    a_u = row_uniforms(added.keys, sampler.seed, level)
    old_first = dict(zip(strata.stratum.tolist(), strata.first_key.tolist()))
    strata = strata.add(a_strata, added.weight, a_importance, added.keys, a_u)

    keys = leaf_rows.column("row_id").to_numpy()
    keep = ~np.isin(keys, removed.keys)
    # A row that was kept for sure and lost that place stays only if it was sampled on its own (u < pi).
    new_first = dict(zip(strata.stratum.tolist(), strata.first_key.tolist()))
    displaced = [k for c, k in old_first.items() if new_first.get(c) != k]
    if displaced:
        u_old = row_uniforms(keys, sampler.seed, level)
        keep &= ~(np.isin(keys, displaced) & (u_old >= leaf_rows.column("probability").to_numpy()))
    kept = leaf_rows.filter(pa.array(keep))

    totals = {int(c): float(w) for c, w in zip(strata.stratum, strata.weight)}
    pi = sampler.probabilities(added.weight, a_importance, a_strata, sampler.floor_weight_of(a_strata, totals), level)
    chosen = ((a_u < pi) | np.isin(added.keys, strata.first_key)) & (added.weight > 0)
    i = np.flatnonzero(chosen)
    joined = coreset_table(level, np.full(len(i), leaf), added.keys[i], added.target[i], a_strata[i],
                           added.weight[i], pi[i], a_importance[i], added.x[i], input_weight=added.weight[i])
    rows = pa.concat_tables([kept.cast(CORESET_SCHEMA), joined]) if joined.num_rows else kept.cast(CORESET_SCHEMA)
    rows = rows.sort_by([("row_id", "ascending")])
    row_strata = rows.column("stratum").to_numpy()
    present = set(np.unique(row_strata).tolist())
    orphaned = [int(c) for c, w in zip(strata.stratum, strata.weight) if w > 0 and int(c) not in present]
    targets = {int(c): float(w) for c, w in zip(strata.stratum, strata.weight)}
    weight = calibrate_weights(rows.column("input_weight").to_numpy(), rows.column("probability").to_numpy(),
                               row_strata, targets)
    rows = rows.set_column(COLUMNS.index("weight"), "weight", pa.array(weight, pa.float64()))
    return rows, strata, orphaned


def rows_of_table(table: pa.Table, width: int) -> Rows:
    """Coreset-schema rows as encoded :class:`Rows` (class index = target for classification)."""
    target = table.column("target").to_numpy()
    return Rows(table.column("row_id").to_numpy().astype(np.int64), np.round(target).astype(np.int64),
                table.column("input_weight").to_numpy().astype(np.float64), features_matrix(table, width),
                target.astype(np.float64))
