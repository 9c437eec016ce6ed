"""The coreset tree: leaves sampled from the data, nodes merged and reduced up to the root.

Pure Arrow/NumPy functions; :mod:`coreset_spark.spark.build` wires them into Spark, and
:func:`build_in_memory` runs the very same functions on one Arrow table (tests compare the two).

Levels are numbered from the root: level 0 is the root (about ``size`` rows), level ``k`` has
``fanin**k`` nodes and about ``size * fanin**k`` rows, the leaves are level ``plan.levels``. A row's
leaf is a hash of its row id; node ``j`` at level ``k >= 2`` has parent ``j // fanin`` at level
``k - 1`` and every level-1 node has the root (node 0) as its parent.

Rows added later by an incremental build form a *batch* ``b`` with leaves of their own, numbered
from ``b * fanin**L`` (see :class:`LeafMap`); their ancestors at level ``k`` are numbered from
``b * fanin**k``, so a batch hangs below the root as a subtree of its own and adding it recomputes
only that subtree and the root (:mod:`coreset_spark.incremental`).

Input batches carry the columns ``_row_id`` (int64), ``_class`` (int64 class index), ``_weight``
(float64) and the encoder's raw input columns.

>>> import numpy as np, pyarrow as pa
>>> from coreset_spark.encoding import Encoder
>>> enc = Encoder(("x",), (0.0,), (1.0,), (), ())
>>> n = 2000
>>> table = pa.table({"_row_id": np.arange(n), "_class": np.arange(n) % 2,
...                   "_weight": np.ones(n), "x": np.linspace(-1, 1, n)})
>>> sampler = Sampler.create("uniform", enc, TreePlan(size=50, fanin=4, levels=2), n_strata=2, seed=0)
>>> levels = build_in_memory(table, sampler)
>>> [round(float(levels[k].column("weight").to_numpy().sum())) for k in (0, 1, 2)]
[2000, 2000, 2000]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

from coreset_spark import kmeans, linear, logistic, pca, trees, uniform
from coreset_spark.config import CoresetParams
from coreset_spark.encoding import Encoder
from coreset_spark.sampling import (
    calibrate_weights,
    first_keys,
    inclusion_probabilities,
    leaf_of,
    row_uniforms,
    stable_gram,
    stable_round,
)

COLUMNS = ("level", "node", "row_id", "target", "stratum", "weight", "input_weight", "probability", "importance",
           "features")
# weight: the row's weight in this node (sums to the rows the node stands for); input_weight: its weight
# before this node's sampling (the input weight at a leaf, the child's weight above), kept so that a node
# can be edited (rows removed or added) and recalibrated without its input.
CORESET_SCHEMA = pa.schema([
    ("level", pa.int64()), ("node", pa.int64()), ("row_id", pa.int64()), ("target", pa.float64()),
    ("stratum", pa.int64()), ("weight", pa.float64()), ("input_weight", pa.float64()), ("probability", pa.float64()),
    ("importance", pa.float64()), ("features", pa.list_(pa.float64())),
])
CORESET_DDL = ("level long, node long, row_id long, target double, stratum long, weight double, "
               "input_weight double, probability double, importance double, features array<double>")
TOTALS_SCHEMA = pa.schema([
    ("node", pa.int64()), ("stratum", pa.int64()), ("rows", pa.int64()), ("weight", pa.float64()),
    ("weighted_importance", pa.float64()), ("first_u", pa.float64()), ("first_key", pa.int64()),
])
PILOT_LEVEL = 1 << 20  # the pilot sample's hash salt: no tree level uses it
HOLDOUT_LEVEL = (1 << 20) + 1  # the hold-out (validation) sample's hash salt
TOTALS_DDL = ("node long, stratum long, rows long, weight double, weighted_importance double, "
              "first_u double, first_key long")


@dataclass(frozen=True)
class TreePlan:
    """Shape of the tree: root size, fan-in and the number of levels below the root.

    >>> TreePlan.choose(n_rows=345_000, size=2000, fanin=8, leaf_fraction=0.5).levels
    2
    """

    size: int
    fanin: int
    levels: int

    @staticmethod
    def choose(n_rows: int, size: int, fanin: int, leaf_fraction: float, levels: int = 0) -> TreePlan:
        """Pick the number of levels so the leaf level holds at most ``leaf_fraction`` of the rows."""
        if levels <= 0:
            ratio = leaf_fraction * n_rows / max(size, 1)
            levels = max(1, int(math.floor(math.log(ratio) / math.log(fanin) + 1e-9))) if ratio > fanin else 1
            while fanin ** levels > 1 << 20:  # keep the per-leaf bookkeeping small
                levels -= 1
        return TreePlan(size=size, fanin=fanin, levels=levels)

    @property
    def n_leaves(self) -> int:
        """Number of leaf nodes."""
        return int(self.fanin ** self.levels)

    def level_size(self, level: int) -> float:
        """Expected total rows of a level (before floors)."""
        return float(self.size * self.fanin ** level)

    def parent_of(self, nodes: np.ndarray, parent_level: int) -> np.ndarray:
        """Parent node ids (at ``parent_level``) of nodes one level below.

        >>> plan = TreePlan(10, 4, 2)
        >>> plan.parent_of(np.array([0, 5, 17]), 1).tolist(), plan.parent_of(np.array([9]), 0).tolist()
        ([0, 1, 4], [0])
        """
        nodes = np.asarray(nodes, dtype=np.int64)
        return np.zeros_like(nodes) if parent_level == 0 else nodes // self.fanin

    def batch_range(self, batch: int, level: int) -> tuple[int, int]:
        """The node ids ``[start, stop)`` batch ``batch`` may use at ``level`` (level >= 1).

        >>> TreePlan(10, 4, 2).batch_range(1, 2), TreePlan(10, 4, 2).batch_range(1, 1)
        ((16, 32), (4, 8))
        """
        span = self.fanin ** level
        return batch * span, (batch + 1) * span


@dataclass(frozen=True)
class LeafMap:
    """Which leaf each row of a batch goes to: ``base + hash(row id) % count``.

    Batch 0 (the first build) has all ``fanin**L`` leaves from 0; batch ``b`` of an incremental
    build has ``count`` leaves from ``b * fanin**L``, as many as its share of the rows warrants.

    >>> bool(np.all(LeafMap(batch=2, base=32, count=3).leaves(np.arange(100)) // 32 == 1))
    True
    """

    batch: int
    base: int
    count: int

    def leaves(self, keys: np.ndarray) -> np.ndarray:
        """Leaf node id of each row key."""
        return self.base + leaf_of(keys, self.count)

    @property
    def ids(self) -> np.ndarray:
        """Every leaf id of the batch."""
        return np.arange(self.base, self.base + self.count, dtype=np.int64)

    @staticmethod
    def for_batch(plan: TreePlan, batch: int, batch_weight: float, first_weight: float) -> LeafMap:
        """Leaves of a batch: about as many per row as the first build had (at least one)."""
        if batch == 0:
            return LeafMap(0, 0, plan.n_leaves)
        share = batch_weight / first_weight if first_weight > 0 else 1.0
        count = int(min(plan.n_leaves, max(1, round(plan.n_leaves * share))))
        return LeafMap(batch, batch * plan.n_leaves, count)


@dataclass(frozen=True)
class Sampler:
    """Everything a task needs to score and sample rows; plain, picklable data.

    ``state`` is the family's global context (a leverage basis, a mean, pilot centres, a pilot
    tree), filled in by the passes the family names in ``passes``: ``gram`` (the Gram of
    [X, 1, t] over all rows), ``pilot`` (a uniform sample on the driver) and ``sums`` (family
    partial sums over all rows).
    """

    family: str
    encoder: Encoder
    plan: TreePlan
    n_strata: int
    seed: int
    alpha: float = 0.2
    min_per_class: int = 10
    task: str = "classification"
    params: CoresetParams = field(default_factory=CoresetParams)
    n_classes: int = 1
    state: Any = None
    total_importance: float = 0.0
    total_weight: float = 0.0
    leaves: LeafMap | None = None
    holdout: float = 0.0

    @property
    def leaf_map(self) -> LeafMap:
        """The leaves rows are sampled into (batch 0's unless an incremental build set another)."""
        return self.leaves or LeafMap(0, 0, self.plan.n_leaves)

    @staticmethod
    def create(family: str, encoder: Encoder, plan: TreePlan, n_strata: int, seed: int,
               alpha: float | None = None, min_per_class: int = 10, task: str = "classification",
               params: CoresetParams | None = None) -> Sampler:
        """A sampler before the global statistics are known (``n_strata``: the number of classes).

        ``alpha`` (the uniform floor) defaults to ``params.alpha``, the family's default.
        """
        module = family_module(family)
        strata = n_strata if module.STRATIFIED and task == "classification" else 1
        params = params or CoresetParams(family=family, seed=seed)
        alpha = params.alpha if alpha is None else float(alpha)
        return Sampler(family, encoder, plan, strata, seed, alpha, min_per_class, task, params, max(n_strata, 1),
                       holdout=params.holdout_fraction)

    @property
    def passes(self) -> tuple[str, ...]:
        """The global passes this family needs before sampling, in order."""
        if self.family == "kmeans":
            return tuple(kmeans.passes(self.params.kmeans_mode))
        return tuple(family_module(self.family).PASSES)

    @property
    def needs_gram(self) -> bool:
        """Whether importance needs the global Gram matrix."""
        return "gram" in self.passes

    def with_gram(self, g: np.ndarray) -> Sampler:
        """Attach the global Gram of [X, 1, t] (rounded so any partitioning gives the same result)."""
        g = stable_gram(g)
        if self.family == "logistic":
            state: Any = logistic.make_state(g)
        elif self.family == "linear":
            state = linear.make_state(g, self.params.ridge)
        elif self.family == "pca":
            state = pca.make_state(g)
        elif self.family == "kmeans":
            state = kmeans.lightweight_state(g)
        else:
            raise RuntimeError(f"family {self.family!r} does not use a Gram")
        return replace(self, state=state)

    def with_pilot(self, x: np.ndarray, target: np.ndarray, weight: np.ndarray) -> Sampler:
        """Fit the family's pilot on the pilot sample (rows sorted by row id)."""
        if self.family == "tree":
            state = trees.make_state(x, target, weight, self.task, self.n_classes, self.params.pilot_depth, self.seed)
            return replace(self, state=state, n_strata=trees.n_strata(state))
        if self.family == "kmeans":
            return replace(self, state=kmeans.sensitivity_state(
                kmeans.pilot_centres(x, weight, self.params.clusters, self.seed)))
        raise RuntimeError(f"family {self.family!r} does not use a pilot sample")

    def partial_sums(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """The family's additive sums over some rows (the ``sums`` pass)."""
        return kmeans.partial_sums(self.state, x, weight)

    def with_sums(self, sums: np.ndarray) -> Sampler:
        """Attach the global sums of the ``sums`` pass."""
        return replace(self, state=kmeans.with_sums(self.state, sums))

    def with_totals(self, total_importance: float, total_weight: float) -> Sampler:
        """Attach the global totals S = sum w s and W = sum w."""
        return replace(self, total_importance=float(stable_round(total_importance)),
                       total_weight=float(stable_round(total_weight)))

    def importance(self, x: np.ndarray, target: np.ndarray | None = None) -> np.ndarray:
        """Per-row importance s_i of encoded rows (``target``: class index or regression value)."""
        if self.family != "uniform" and self.state is None:
            raise RuntimeError(f"the {self.family} sampler needs its global passes {self.passes} first")
        t = np.zeros(x.shape[0]) if target is None else np.asarray(target, dtype=np.float64)
        return np.asarray(family_module(self.family).importance(self.state, x, t), dtype=np.float64)

    def strata(self, classes: np.ndarray, x: np.ndarray | None = None) -> np.ndarray:
        """Stratum of each row: its class (and pilot leaf for trees) when stratified, else 0."""
        if self.family == "tree":
            assert x is not None, "the tree family's strata need the features"
            return trees.strata(self.state, classes, x)
        return np.asarray(classes, dtype=np.int64) if self.n_strata > 1 else np.zeros(len(classes), np.int64)

    def floor_groups(self) -> np.ndarray:
        """The group of each stratum that ``min_per_class`` applies to (its class).

        Strata are classes for every stratified family but ``tree``, whose strata are (class,
        pilot leaf): the floor still counts rows per class in a node, spread over the class's
        pilot leaves by their weight, so many small pilot regions do not swell a small node.

        >>> Sampler.create("logistic", None, TreePlan(10, 2, 1), 3, 0).floor_groups().tolist()
        [0, 1, 2]
        """
        if self.family == "tree" and self.state is not None:
            if self.task != "classification":
                return np.zeros(self.n_strata, np.int64)
            return np.arange(self.n_strata, dtype=np.int64) // max(int(self.state.n_leaves), 1)
        return np.arange(self.n_strata, dtype=np.int64)

    def floor_totals(self, stratum_totals: np.ndarray) -> np.ndarray:
        """Replace each stratum's total (last axis) by the total of its floor group."""
        totals = np.asarray(stratum_totals, dtype=np.float64)
        groups = self.floor_groups()
        if totals.shape[-1] != len(groups) or len(np.unique(groups)) == len(groups):
            return totals
        one_hot = np.zeros((len(groups), int(groups.max()) + 1))
        one_hot[np.arange(len(groups)), groups] = 1.0
        return (totals @ one_hot)[..., groups]

    def probabilities(self, weight: np.ndarray, importance: np.ndarray, strata: np.ndarray,
                      floor_weight: np.ndarray, level: int) -> np.ndarray:
        """Inclusion probabilities at a level (``floor_weight``: per row, its floor group's input weight in the node)."""
        return inclusion_probabilities(
            weight, importance, strata, size=self.plan.level_size(level),
            total_importance=self.total_importance, total_weight=self.total_weight, alpha=self.alpha,
            stratum_weight=floor_weight, min_per_stratum=self.min_per_class,
        )

    def floor_weight_of(self, strata: np.ndarray, totals: Mapping[int, float]) -> np.ndarray:
        """Per row, the input weight of its floor group, from per-stratum totals of one node."""
        vector = np.zeros(self.n_strata)
        for c, t in totals.items():
            if 0 <= int(c) < self.n_strata:
                vector[int(c)] = t
        return self.floor_totals(vector)[np.asarray(strata, dtype=np.int64)]


def family_module(family: str) -> Any:
    """The pure module holding a family's importance function."""
    modules = {"logistic": logistic, "linear": linear, "kmeans": kmeans, "tree": trees, "pca": pca,
               "uniform": uniform}
    return modules[family]


@dataclass
class BuildContext:
    """What the global passes learned, kept so a saved tree can be updated without its input.

    ``gram`` (the Gram of [X, 1, t]), ``sums`` (k-means cluster sums) and ``pilot`` (the pilot
    sample) are the inputs the family's state is recomputed from (deterministically);
    ``leaf_strata`` holds per (leaf, stratum) the rows, input weight, weighted importance and the
    row kept for sure (TOTALS_SCHEMA), for every batch; ``totals`` the leaf-level totals (S, W)
    the probabilities were normalised by; ``level_totals[k]`` the totals level ``k``'s merge used.
    """

    leaf_strata: pa.Table
    totals: tuple[float, float]
    level_totals: dict[int, tuple[float, float]] = field(default_factory=dict)
    gram: np.ndarray | None = None
    sums: np.ndarray | None = None
    pilot: pa.Table | None = None


def restore_sampler(sampler: Sampler, context: BuildContext) -> Sampler:
    """A sampler before its passes (``Sampler.create``) given the state those passes had built."""
    for name in sampler.passes:
        if name == "gram":
            assert context.gram is not None, "the saved tree lacks its Gram matrix"
            sampler = sampler.with_gram(context.gram)
        elif name == "pilot":
            assert context.pilot is not None, "the saved tree lacks its pilot sample"
            sampler = with_pilot_table(sampler, context.pilot)
        elif name == "sums":
            assert context.sums is not None, "the saved tree lacks its family sums"
            sampler = sampler.with_sums(context.sums)
    return sampler.with_totals(*context.totals)


@dataclass(frozen=True)
class Rows:
    """One batch of input rows, encoded."""

    keys: np.ndarray
    classes: np.ndarray
    weight: np.ndarray
    x: np.ndarray
    target: np.ndarray


def holdout_mask(keys: np.ndarray, seed: int, fraction: float) -> np.ndarray:
    """Rows set aside as the hold-out (validation) sample: a hash of (seed, row id) below ``fraction``.

    >>> int(holdout_mask(np.arange(10_000), 0, 0.05).sum())
    497
    """
    if fraction <= 0:
        return np.zeros(len(keys), dtype=bool)
    return row_uniforms(keys, seed, HOLDOUT_LEVEL) < fraction


def training_batch(batch: pa.RecordBatch | pa.Table, sampler: Sampler) -> pa.RecordBatch | pa.Table:
    """The rows of a batch that the tree samples from (the hold-out rows removed)."""
    if sampler.holdout <= 0 or not batch.num_rows:
        return batch
    keys = np.asarray(batch.column("_row_id").to_numpy(zero_copy_only=False), dtype=np.int64)
    return batch.filter(pa.array(~holdout_mask(keys, sampler.seed, sampler.holdout)))


def encode_batch(batch: pa.RecordBatch | pa.Table, encoder: Encoder) -> Rows:
    """Read the bookkeeping columns and encode the features of one batch.

    ``_target`` (a regression value) is optional; without it the target is the class index.
    """
    classes = np.asarray(batch.column("_class").to_numpy(zero_copy_only=False), dtype=np.int64)
    names = batch.schema.names
    target = (np.asarray(batch.column("_target").to_numpy(zero_copy_only=False), dtype=np.float64)
              if "_target" in names else classes.astype(np.float64))
    return Rows(
        keys=np.asarray(batch.column("_row_id").to_numpy(zero_copy_only=False), dtype=np.int64),
        classes=classes,
        weight=np.asarray(batch.column("_weight").to_numpy(zero_copy_only=False), dtype=np.float64),
        x=encoder.transform(batch),
        target=target,
    )


def gram_of_batches(batches: Iterable[pa.RecordBatch], sampler: Sampler) -> np.ndarray:
    """Sum of the weighted Gram of [x, 1, t] over batches (bounded memory: (d + 2) x (d + 2))."""
    d = sampler.encoder.width + 2
    total = np.zeros((d, d))
    for batch in batches:
        batch = training_batch(batch, sampler)
        if batch.num_rows:
            rows = encode_batch(batch, sampler.encoder)
            total += logistic.gram(linear.augmented(rows.x, rows.target), rows.weight)
    return total


def sums_of_batches(batches: Iterable[pa.RecordBatch], sampler: Sampler) -> np.ndarray | None:
    """Sum of the family's partial sums over batches (``None`` when there were no rows)."""
    total = None
    for batch in batches:
        batch = training_batch(batch, sampler)
        if batch.num_rows:
            rows = encode_batch(batch, sampler.encoder)
            part = sampler.partial_sums(rows.x, rows.weight)
            total = part if total is None else total + part
    return total


def pilot_of_batch(batch: pa.RecordBatch | pa.Table, sampler: Sampler, fraction: float) -> pa.Table:
    """The rows of a batch in the uniform pilot sample (a hash of seed and row id below ``fraction``)."""
    rows = encode_batch(training_batch(batch, sampler), sampler.encoder)
    u = row_uniforms(rows.keys, sampler.seed, PILOT_LEVEL)
    i = np.flatnonzero((u < fraction) & (rows.weight > 0))
    return coreset_table(-1, np.zeros(len(i), np.int64), rows.keys[i], rows.target[i], rows.classes[i],
                         rows.weight[i] / fraction, np.full(len(i), fraction), np.zeros(len(i)), rows.x[i],
                         input_weight=rows.weight[i])


def holdout_of_batch(batch: pa.RecordBatch | pa.Table, sampler: Sampler) -> pa.Table:
    """The hold-out rows of a batch (level -1, node = their leaf, weight = input weight)."""
    keys = np.asarray(batch.column("_row_id").to_numpy(zero_copy_only=False), dtype=np.int64)
    held = batch.filter(pa.array(holdout_mask(keys, sampler.seed, sampler.holdout)))
    rows = encode_batch(held, sampler.encoder)
    n = len(rows.keys)
    return coreset_table(-1, sampler.leaf_map.leaves(rows.keys), rows.keys, rows.target, rows.classes,
                         rows.weight, np.ones(n), np.zeros(n), rows.x)


def with_pilot_table(sampler: Sampler, table: pa.Table) -> Sampler:
    """Fit the sampler's pilot on the collected pilot rows (sorted by row id: order-independent)."""
    table = _sorted(table)
    if not table.num_rows:
        raise ValueError("the pilot sample is empty: the table has no rows with positive weight")
    return sampler.with_pilot(features_matrix(table, sampler.encoder.width),
                              table.column("target").to_numpy(), table.column("weight").to_numpy())


def totals_of_batch(batch: pa.RecordBatch | pa.Table, sampler: Sampler) -> pa.Table:
    """Per (leaf, stratum): rows, weight, weighted importance and the row with the smallest uniform."""
    rows = encode_batch(training_batch(batch, sampler), sampler.encoder)
    s = sampler.importance(rows.x, rows.target)
    strata = sampler.strata(rows.classes, rows.x)
    leaf = sampler.leaf_map.leaves(rows.keys)
    u = np.where(rows.weight > 0, row_uniforms(rows.keys, sampler.seed, sampler.plan.levels), 2.0)
    group = leaf * sampler.n_strata + strata
    order = np.lexsort((rows.keys, u, group))
    g_sorted = group[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]]) if len(order) else np.empty(0, int)
    groups = g_sorted[starts]
    count = np.add.reduceat(np.ones(len(order), np.int64), starts) if len(order) else np.empty(0, np.int64)
    weight = np.add.reduceat(rows.weight[order], starts) if len(order) else np.empty(0)
    weighted = np.add.reduceat((rows.weight * s)[order], starts) if len(order) else np.empty(0)
    return pa.table({
        "node": groups // sampler.n_strata, "stratum": groups % sampler.n_strata, "rows": count,
        "weight": weight, "weighted_importance": weighted, "first_u": u[order][starts],
        "first_key": rows.keys[order][starts],
    }, schema=TOTALS_SCHEMA)


def _features_array(x: np.ndarray) -> pa.ListArray:
    n, d = x.shape
    offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32) if n else np.zeros(1, np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(x).reshape(-1), pa.float64()))


def features_matrix(table: pa.Table | pa.RecordBatch, width: int) -> np.ndarray:
    """The ``features`` list column as a (rows, width) matrix."""
    column = table.column("features")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], pa.list_(pa.float64()))
    flat = np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float64)
    return flat.reshape(-1, width) if width else np.zeros((table.num_rows, 0))


def coreset_table(level: int, node: np.ndarray, keys: np.ndarray, target: np.ndarray, strata: np.ndarray,
                  weight: np.ndarray, probability: np.ndarray, importance: np.ndarray, x: np.ndarray,
                  input_weight: np.ndarray | None = None) -> pa.Table:
    """Rows of a coreset level in the stored schema (``input_weight`` defaults to ``weight``)."""
    n = len(keys)
    return pa.table({
        "level": np.full(n, level, np.int64), "node": np.asarray(node, np.int64),
        "row_id": np.asarray(keys, np.int64), "target": np.asarray(target, np.float64),
        "stratum": np.asarray(strata, np.int64), "weight": np.asarray(weight, np.float64),
        "input_weight": np.asarray(weight if input_weight is None else input_weight, np.float64),
        "probability": np.asarray(probability, np.float64), "importance": np.asarray(importance, np.float64),
        "features": _features_array(x),
    }, schema=CORESET_SCHEMA)


def sample_leaf_batch(batch: pa.RecordBatch | pa.Table, sampler: Sampler, leaf_weight: np.ndarray,
                      keep_keys: np.ndarray) -> pa.Table:
    """Poisson-sample one input batch into its leaves (weights not yet calibrated).

    ``leaf_weight[leaf, stratum]`` is the input weight of each leaf and stratum; ``keep_keys`` the
    first row of each (leaf, stratum), always kept.
    """
    rows = encode_batch(training_batch(batch, sampler), sampler.encoder)
    s = sampler.importance(rows.x, rows.target)
    strata = sampler.strata(rows.classes, rows.x)
    leaf = sampler.leaf_map.leaves(rows.keys)
    level = sampler.plan.levels
    floor_weight = sampler.floor_totals(leaf_weight)[leaf - sampler.leaf_map.base, strata]
    pi = sampler.probabilities(rows.weight, s, strata, floor_weight, level)
    u = row_uniforms(rows.keys, sampler.seed, level)
    chosen = (u < pi) | (np.isin(rows.keys, keep_keys) & (rows.weight > 0))
    i = np.flatnonzero(chosen)
    return coreset_table(level, leaf[i], rows.keys[i], rows.target[i], strata[i], rows.weight[i],
                         pi[i], s[i], rows.x[i])


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([("row_id", "ascending")]) if table.num_rows else table


def calibrate_leaf(table: pa.Table, sampler: Sampler, leaf_weight: np.ndarray) -> pa.Table:
    """Turn a leaf's sampled rows into weighted rows summing to the leaf's input weight per stratum."""
    table = _sorted(table)
    if not table.num_rows:
        return table.cast(CORESET_SCHEMA)
    leaf = int(table.column("node")[0].as_py()) - sampler.leaf_map.base
    strata = table.column("stratum").to_numpy()
    targets = {c: float(leaf_weight[leaf, c]) for c in range(sampler.n_strata)}
    new_w = calibrate_weights(table.column("input_weight").to_numpy(), table.column("probability").to_numpy(),
                              strata, targets)
    return table.set_column(COLUMNS.index("weight"), "weight", pa.array(new_w, pa.float64()))


def reduce_node(table: pa.Table, sampler: Sampler, level: int) -> pa.Table:
    """Merge the children of one node (their rows) and re-sample them to the node's size at ``level``."""
    table = _sorted(table)
    if not table.num_rows:
        return table.cast(CORESET_SCHEMA)
    width = sampler.encoder.width
    node = int(sampler.plan.parent_of(table.column("node").to_numpy()[:1], level)[0])
    keys = table.column("row_id").to_numpy()
    strata = table.column("stratum").to_numpy()
    w = table.column("weight").to_numpy()
    s = table.column("importance").to_numpy()
    targets = {int(c): float(w[strata == c].sum()) for c in np.unique(strata)}
    pi = sampler.probabilities(w, s, strata, sampler.floor_weight_of(strata, targets), level)
    chosen = row_uniforms(keys, sampler.seed, level) < pi
    chosen |= np.isin(keys, first_keys(keys, strata, w, sampler.seed, level))
    i = np.flatnonzero(chosen)
    new_w = calibrate_weights(w[i], pi[i], strata[i], targets)
    return coreset_table(level, np.full(len(i), node), keys[i], table.column("target").to_numpy()[i],
                         strata[i], new_w, pi[i], s[i], features_matrix(table, width)[i], input_weight=w[i])


def leaf_totals(totals: pa.Table, sampler: Sampler) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Aggregate per-batch totals into (leaf_weight[leaf, stratum], keep_keys, S, W)."""
    shape = (sampler.leaf_map.count, sampler.n_strata)
    leaf_weight = np.zeros(shape)
    node = totals.column("node").to_numpy() - sampler.leaf_map.base
    stratum = totals.column("stratum").to_numpy()
    np.add.at(leaf_weight, (node, stratum), totals.column("weight").to_numpy())
    first_u = np.full(shape, np.inf)
    first_key = np.zeros(shape, np.int64)
    for n_, c, u, k in zip(node, stratum, totals.column("first_u").to_numpy(), totals.column("first_key").to_numpy()):
        if (u, k) < (first_u[n_, c], first_key[n_, c]) or first_u[n_, c] == np.inf:
            first_u[n_, c], first_key[n_, c] = u, k
    keep = first_key[first_u <= 1.0]
    return (stable_round(leaf_weight, 48), np.sort(keep),
            float(totals.column("weighted_importance").to_numpy().sum()), float(leaf_weight.sum()))


def pilot_fraction(sampler: Sampler, n_rows: int) -> float:
    """Share of the rows drawn into the pilot sample (about ``params.pilot_rows`` rows)."""
    return min(1.0, sampler.params.pilot_rows / max(n_rows, 1))


def build_in_memory(table: pa.Table, sampler: Sampler) -> dict[int, pa.Table]:
    """Run the whole tree on one Arrow table without Spark: {level: rows}. For tests and small data."""
    for name in sampler.passes:
        if name == "gram":
            sampler = sampler.with_gram(gram_of_batches(table.to_batches(), sampler))
        elif name == "pilot":
            fraction = pilot_fraction(sampler, table.num_rows)
            sampler = with_pilot_table(sampler, pilot_of_batch(table, sampler, fraction))
        elif name == "sums":
            sums = sums_of_batches(table.to_batches(), sampler)
            sampler = sampler.with_sums(sums if sums is not None else np.zeros(0))
    totals = totals_of_batch(table, sampler)
    leaf_weight, keep, s_total, w_total = leaf_totals(totals, sampler)
    sampler = sampler.with_totals(s_total, w_total)
    sampled = sample_leaf_batch(table, sampler, leaf_weight, keep)
    levels: dict[int, pa.Table] = {}
    leaves = [calibrate_leaf(_group(sampled, leaf), sampler, leaf_weight)
              for leaf in np.unique(sampled.column("node").to_numpy())]
    levels[sampler.plan.levels] = _concat(leaves)
    for level in range(sampler.plan.levels - 1, -1, -1):
        child = levels[level + 1]
        w = child.column("weight").to_numpy()
        level_sampler = sampler.with_totals(float((w * child.column("importance").to_numpy()).sum()), float(w.sum()))
        parents = sampler.plan.parent_of(child.column("node").to_numpy(), level)
        levels[level] = _concat([reduce_node(child.filter(pa.array(parents == p)), level_sampler, level)
                                 for p in np.unique(parents)])
    return levels


def _group(table: pa.Table, node: int) -> pa.Table:
    return table.filter(pa.array(table.column("node").to_numpy() == node))


def _concat(tables: Iterator[pa.Table] | list[pa.Table]) -> pa.Table:
    tables = list(tables)
    return pa.concat_tables(tables) if tables else CORESET_SCHEMA.empty_table()
