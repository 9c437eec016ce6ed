"""Importance sampling of weighted rows: pure NumPy, no Spark.

The recipe (see the README's *How the coreset is built*):

* inclusion probability ``pi_i = min(1, m * q_i)`` with
  ``q_i = (1 - alpha) * w_i s_i / S + alpha * w_i / W`` (importance ``s_i``, input weight ``w_i``,
  global totals ``S = sum w s`` and ``W = sum w``), raised per stratum (class) so that every stratum
  keeps at least ``min_per_stratum`` rows in expectation;
* Poisson sampling with a uniform number per row that is a hash of (seed, level, row id), so the
  choice of a row never depends on how the table is partitioned or which task attempt runs;
* new weight ``w_i / pi_i``, then calibrated per stratum so the weights of a node sum exactly to the
  input weight the node stands for (rows with ``pi_i = 1`` keep their weight);
* within a node, the row with the smallest uniform number of each stratum is always kept, so a
  stratum never vanishes from a node.

>>> import numpy as np
>>> keys = np.arange(1000, dtype=np.int64)
>>> w = np.ones(1000); s = np.ones(1000); strata = np.zeros(1000, dtype=np.int64)
>>> sel = select_rows(keys, w, s, strata, size=100, seed=1, level=0,
...                   total_importance=1000.0, total_weight=1000.0, alpha=0.2,
...                   stratum_weight=np.full(1000, 1000.0), min_per_stratum=1)
>>> new_w = calibrate_weights(w[sel.index], sel.probability, strata[sel.index], {0: 1000.0})
>>> round(float(new_w.sum()), 6)
1000.0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def row_uniforms(row_keys: np.ndarray, seed: int, level: int) -> np.ndarray:
    """Uniform numbers in [0, 1) that depend only on (row key, seed, level).

    >>> a = row_uniforms(np.array([1, 2, 3]), seed=5, level=0)
    >>> bool(np.all(a == row_uniforms(np.array([1, 2, 3]), seed=5, level=0)))
    True
    """
    keys = np.asarray(row_keys, dtype=np.int64).view(np.uint64)
    salt = _splitmix64(np.array([(seed * 1_000_003 + level) % 2**64], dtype=np.uint64))[0]
    bits = _splitmix64(keys ^ salt)
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def leaf_of(row_keys: np.ndarray, n_leaves: int) -> np.ndarray:
    """The leaf node of each row: a hash of its key, never of its partition.

    >>> leaf_of(np.array([10, 11, 12]), 1).tolist()
    [0, 0, 0]
    """
    keys = np.asarray(row_keys, dtype=np.int64).view(np.uint64)
    return (_splitmix64(keys ^ np.uint64(0x5BD1E995)) % np.uint64(n_leaves)).astype(np.int64)


def stable_round(values: np.ndarray | float, bits: int = 24) -> np.ndarray:
    """Round to ``bits`` significant bits.

    Global sums computed by Spark differ in their last bits with the partitioning (summation order);
    rounding them before use makes every later step identical for any partitioning (up to the rare
    sum that lies within 1e-16 of a rounding boundary). Integers below ``2**bits`` are unchanged.

    >>> float(stable_round(1.0 + 1e-15))
    1.0
    """
    arr = np.asarray(values, dtype=np.float64)
    mantissa, exponent = np.frexp(arr)
    return np.ldexp(np.round(np.ldexp(mantissa, bits)), exponent - bits)


def stable_round_on(values: np.ndarray | float, scale: np.ndarray | float, bits: int = 24) -> np.ndarray:
    """Round to a grid of about ``scale * 2**-bits``: for sums that cancel to near zero (off-diagonal
    Gram entries, means of centred columns), where relative rounding cannot absorb the noise.

    The step is a power of two, so a ``scale`` that itself carries summation noise still gives the
    same grid (unless it sits right at a power of two).

    >>> float(stable_round_on(1e-13, 1.0))
    0.0
    >>> float(stable_round_on(0.30000001, 1.0, bits=8))
    0.296875
    """
    scale = np.abs(np.asarray(scale, dtype=np.float64))
    _, exponent = np.frexp(np.where(scale > 0, scale, 1.0))
    step = np.ldexp(1.0, exponent - bits)
    return np.round(np.asarray(values, dtype=np.float64) / step) * step


def stable_gram(g: np.ndarray, bits: int = 24) -> np.ndarray:
    """Round a Gram matrix: the diagonal relatively, entry (j, k) on the grid of sqrt(G_jj G_kk).

    >>> stable_gram(np.array([[4.0, 1e-14], [1e-14, 1.0]])).tolist()
    [[4.0, 0.0], [0.0, 1.0]]
    """
    g = (np.asarray(g, dtype=np.float64) + np.asarray(g, dtype=np.float64).T) / 2.0
    diagonal = stable_round(np.maximum(np.diag(g), 0.0), bits)
    out = stable_round_on(g, np.sqrt(np.outer(diagonal, diagonal)), bits)
    np.fill_diagonal(out, diagonal)
    return out


@dataclass(frozen=True)
class Selection:
    """Rows chosen from a node: their positions and inclusion probabilities."""

    index: np.ndarray
    probability: np.ndarray


def inclusion_probabilities(
    weight: np.ndarray,
    importance: np.ndarray,
    strata: np.ndarray,
    *,
    size: float,
    total_importance: float,
    total_weight: float,
    alpha: float,
    stratum_weight: np.ndarray,
    min_per_stratum: int,
) -> np.ndarray:
    """``pi_i = max(min(1, size * q_i), min(1, min_per_stratum * w_i / W_c))``.

    ``stratum_weight`` holds, per row, the total input weight W_c of the row's stratum in its node.

    >>> p = inclusion_probabilities(np.ones(4), np.array([1., 1., 1., 5.]), np.zeros(4, int),
    ...     size=2, total_importance=8., total_weight=4., alpha=0.0,
    ...     stratum_weight=np.full(4, 4.0), min_per_stratum=1)
    >>> p.tolist()
    [0.25, 0.25, 0.25, 1.0]
    """
    w = np.asarray(weight, dtype=np.float64)
    q = alpha * w / total_weight
    if total_importance > 0:
        q = q + (1.0 - alpha) * w * np.asarray(importance, dtype=np.float64) / total_importance
    else:
        q = q + (1.0 - alpha) * w / total_weight
    pi = np.minimum(1.0, size * q)
    if min_per_stratum > 0 and len(w):
        stratum_total = np.asarray(stratum_weight, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            floor = np.where(stratum_total > 0, np.minimum(1.0, min_per_stratum * w / stratum_total), 1.0)
        pi = np.maximum(pi, floor)
    # Zero-weight rows stand for nothing: never sample them.
    return np.where(w > 0, pi, 0.0)


def select_rows(
    row_keys: np.ndarray,
    weight: np.ndarray,
    importance: np.ndarray,
    strata: np.ndarray,
    *,
    size: float,
    seed: int,
    level: int,
    total_importance: float,
    total_weight: float,
    alpha: float,
    stratum_weight: np.ndarray,
    min_per_stratum: int,
    keep_keys: np.ndarray | None = None,
) -> Selection:
    """Poisson-sample rows; rows whose key is in ``keep_keys`` are always kept.

    ``keep_keys`` carries, per node and stratum, the key with the smallest uniform number (see
    :func:`first_keys`), so that each stratum keeps a row in every node.
    """
    pi = inclusion_probabilities(
        weight, importance, strata, size=size, total_importance=total_importance,
        total_weight=total_weight, alpha=alpha, stratum_weight=stratum_weight,
        min_per_stratum=min_per_stratum,
    )
    u = row_uniforms(row_keys, seed, level)
    chosen = u < pi
    if keep_keys is not None and len(keep_keys):
        chosen |= np.isin(np.asarray(row_keys, dtype=np.int64), keep_keys) & (np.asarray(weight) > 0)
    index = np.flatnonzero(chosen)
    return Selection(index=index, probability=pi[index])


def first_keys(row_keys: np.ndarray, strata: np.ndarray, weight: np.ndarray, seed: int, level: int) -> np.ndarray:
    """Per stratum, the key of the positive-weight row with the smallest uniform number.

    >>> first_keys(np.array([1, 2, 3]), np.array([0, 0, 1]), np.ones(3), 0, 0).size
    2
    """
    keys = np.asarray(row_keys, dtype=np.int64)
    live = np.asarray(weight) > 0
    if not live.any():
        return np.empty(0, dtype=np.int64)
    keys, strata = keys[live], np.asarray(strata)[live]
    u = row_uniforms(keys, seed, level)
    order = np.lexsort((keys, u, strata))
    first = np.ones(len(order), dtype=bool)
    first[1:] = strata[order][1:] != strata[order][:-1]
    return keys[order][first]


def calibrate_weights(
    weight: np.ndarray,
    probability: np.ndarray,
    strata: np.ndarray,
    stratum_target: Mapping[int, float],
) -> np.ndarray:
    """Weights ``w / pi`` of selected rows, scaled per stratum to sum to ``stratum_target``.

    Rows with ``pi = 1`` keep their weight; the others share the rest of the stratum's weight in
    proportion to ``w / pi`` (a ratio estimator: unbiased to first order, exact in total). When no
    row with ``pi < 1`` was selected but weight remains, the kept rows share it.

    >>> calibrate_weights(np.ones(3), np.array([1.0, 0.5, 0.5]), np.zeros(3, int), {0: 5.0}).tolist()
    [1.0, 2.0, 2.0]
    """
    w = np.asarray(weight, dtype=np.float64)
    p = np.asarray(probability, dtype=np.float64)
    strata = np.asarray(strata)
    out = w / np.where(p > 0, p, 1.0)
    for stratum in np.unique(strata):
        in_stratum = strata == stratum
        target = float(stratum_target.get(int(stratum), 0.0))
        fixed = in_stratum & (p >= 1.0)
        sampled = in_stratum & (p < 1.0)
        rest = target - float(w[fixed].sum())
        sampled_sum = float(out[sampled].sum())
        if sampled_sum > 0:
            out[sampled] *= max(rest, 0.0) / sampled_sum
            if rest < 0:  # can only come from rounding; keep the stratum exact
                out[fixed] *= target / float(w[fixed].sum())
        elif float(out[in_stratum].sum()) > 0:
            out[in_stratum] *= target / float(out[in_stratum].sum())
    return out
