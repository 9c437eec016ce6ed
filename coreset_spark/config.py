"""Configuration: frozen, validated dataclasses and the YAML files in ``conf/`` that fill them.

Every error names the setting, the value it got and what to do instead.

Example
-------
>>> spec = DataSpec(target="label", categorical=("protocol_type",))
>>> params = CoresetParams(size=2000, seed=7)
>>> params.fanin
16
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FAMILIES = ("logistic", "linear", "kmeans", "tree", "pca", "uniform")
# uniform_floor when none is given: 0.1, but 0.5 for the `tree` heuristic, whose gradient importance
# alone lost to a plain uniform sample on balanced data (Adult, LightGBM: README, Quality).
DEFAULT_UNIFORM_FLOOR = {"tree": 0.5}
TASKS = ("auto", "classification", "regression", "clustering")
KMEANS_MODES = ("lightweight", "sensitivity")
MISSING_POLICIES = ("impute_mean", "error")
MAX_LEAVES = 1 << 20
RESERVED_COLUMNS = ("_row_id", "_weight", "_class")


class ConfigError(ValueError):
    """A setting has a bad value; the message names the setting, the value and the fix."""


class DataError(ValueError):
    """The input data cannot be used as given; the message names the column, the value and the fix."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass(frozen=True)
class DataSpec:
    """Which columns of the table are what.

    Parameters
    ----------
    target : the label column (any type for classification, numeric for regression); may be
        ``None`` for clustering and PCA, which use no target.
    features : feature columns; empty means every column except target, row id and weight.
    categorical : columns one-hot encoded (string and boolean features are categorical anyway).
    row_id : optional column that identifies a row; without it a row's id is a 64-bit hash
        of all its values (identical rows then share an id).
    weight : optional non-negative input weight column (a row standing for several rows).
    missing : ``impute_mean`` (numeric nulls/NaN become the column mean, i.e. 0 after
        standardisation, and are counted in the report; categorical nulls become their own
        level ``__missing__``) or ``error`` (any null feature value is an error).
    drop_null_target : exclude rows whose target is null (the count is reported) instead of
        failing.
    rare_level_fraction : categorical levels seen in fewer than this fraction of rows are
        folded into one ``__other__`` level (levels unseen at build time map there too).
    max_levels : at most this many levels per categorical column are kept (most frequent first).
    task : ``classification`` (target = class labels), ``regression`` (numeric target),
        ``clustering`` (no target used) or ``auto``: the task of the coreset family
        (``linear`` regresses, ``kmeans`` and ``pca`` cluster, ``logistic`` classifies; ``tree`` and
        ``uniform`` classify unless ``regression`` is set here).

    >>> DataSpec(target="y", features=("a", "b")).features
    ('a', 'b')
    """

    target: str | None
    features: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    row_id: str | None = None
    weight: str | None = None
    missing: str = "impute_mean"
    drop_null_target: bool = False
    rare_level_fraction: float = 0.001
    max_levels: int = 100
    task: str = "auto"

    def __post_init__(self) -> None:
        _require(self.target is None or (isinstance(self.target, str) and bool(self.target)),
                 f"data.target must name the label column (or be null for clustering), got {self.target!r}")
        _require(self.task in TASKS, f"data.task={self.task!r} is unknown; use one of {TASKS}")
        _require(self.target is not None or self.task in ("auto", "clustering"),
                 f"data.task={self.task!r} needs a target column; set data.target")
        for name in ("features", "categorical"):  # one column given as a plain string is a list of one
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
            _require(len(set(getattr(self, name))) == len(getattr(self, name)),
                     f"data.{name} lists a column twice: {list(getattr(self, name))}; name each column once")
        _require(self.missing in MISSING_POLICIES,
                 f"data.missing={self.missing!r} is not a policy; use one of {MISSING_POLICIES}")
        _require(0.0 <= self.rare_level_fraction < 1.0,
                 f"data.rare_level_fraction={self.rare_level_fraction!r} must be in [0, 1)")
        _require(self.max_levels >= 1, f"data.max_levels={self.max_levels!r} must be at least 1")
        for name in ("row_id", "weight"):
            value = getattr(self, name)
            _require(value is None or value != self.target,
                     f"data.{name}={value!r} is also the target; name a different column")
        _require(self.target not in self.features,
                 f"data.features includes the target {self.target!r}; remove it from features")
        _require(self.target not in self.categorical,
                 f"data.categorical includes the target {self.target!r}; list only feature columns there "
                 "(any target type is treated as class labels)")


@dataclass(frozen=True)
class CoresetParams:
    """How the coreset tree is built.

    Parameters
    ----------
    size : target number of rows of the root coreset (level 0).
    family : the model family the coreset serves, which decides each row's importance:
        ``logistic`` (square-root leverage, class floors; binary and multiclass), ``linear``
        (leverage of [X, y]; ridge leverage when ``ridge`` > 0), ``kmeans`` (distance to the mean,
        or sensitivity against a k-means++ solution), ``tree`` (decision trees, random forests,
        gradient boosting: class x pilot-tree-leaf strata plus the gradient of a pilot model; a
        heuristic without guarantees), ``pca`` (squared distance to the mean, i.e. length-squared
        sampling of the centred rows) or ``uniform`` (the baseline: every row equally likely, no
        stratification).
    seed : base seed; every random choice is a hash of (seed, level, row id).
    fanin : children per tree node.
    levels : number of merge levels below the root; 0 chooses it from the row count so the
        leaf level holds about ``leaf_fraction`` of the rows at most.
    uniform_floor : alpha in q_i = (1 - alpha) s_i / S + alpha w_i / W; ``None`` (default) is
        the family's: 0.5 for ``tree``, 0.1 for every other family.
    min_per_class : every class in every node keeps in expectation at least this many rows
        (all of them when it has fewer), and always at least one.
    leaf_fraction : upper bound on the leaf level's expected share of the rows when
        ``levels`` is chosen automatically.
    max_driver_rows : guard on rows collected to the driver by ``get_coreset``.
    ridge : ``linear`` only: the ridge penalty lambda (on the scale of the weighted loss summed
        over rows, as scikit-learn's ``Ridge(alpha)``); 0 gives plain leverage.
    clusters : ``kmeans`` only: k, the number of clusters the coreset is built for (sensitivity mode).
    kmeans_mode : ``lightweight`` (default: one pass, distance to the global mean; Bachem et al.
        2018) or ``sensitivity`` (k-means++ on a pilot sample, then sensitivity against it).
    pilot_rows : rows of the uniform pilot sample collected to the driver for the ``kmeans``
        sensitivity mode and the ``tree`` family's pilot model.
    pilot_depth : ``tree`` only: depth of the pilot decision tree whose leaves are strata.
    class_weight : classification only: ``None``, ``balanced`` (n / (k n_c)) or a mapping
        {label: factor}, as in scikit-learn. The build multiplies each row's input weight by its
        class's factor, so importances and the sample follow the class-weighted loss; the coreset's
        weights then sum, per class, to factor x rows. ``get_coreset(level, remove_class_weight=True)``
        divides the factor back out (weights sum to the rows again), for a model fitted with its
        own ``class_weight``.
    holdout_fraction : share of the rows (a hash of seed and row id) set aside as a uniform hold-out
        sample, kept per leaf beside the tree and left out of it, for validating models trained
        on the coreset (``tree.get_validation()``); 0 (default) keeps none.

    >>> CoresetParams(size=1000, fanin=4).size
    1000
    """

    size: int = 2000
    family: str = "logistic"
    seed: int = 0
    fanin: int = 16
    levels: int = 0
    uniform_floor: float | None = None
    min_per_class: int = 10
    leaf_fraction: float = 0.5
    max_driver_rows: int = 2_000_000
    ridge: float = 0.0
    clusters: int = 20
    kmeans_mode: str = "lightweight"
    pilot_rows: int = 20_000
    pilot_depth: int = 3
    class_weight: str | Mapping[Any, float] | None = None
    holdout_fraction: float = 0.0

    @property
    def alpha(self) -> float:
        """The uniform floor in use: ``uniform_floor``, or the family's default when it is ``None``.

        >>> CoresetParams(family="tree").alpha, CoresetParams(family="logistic").alpha
        (0.5, 0.1)
        """
        return float(self.uniform_floor if self.uniform_floor is not None else DEFAULT_UNIFORM_FLOOR.get(self.family, 0.1))

    def __post_init__(self) -> None:
        _require(isinstance(self.size, int) and self.size >= 1,
                 f"coreset.size={self.size!r} must be a positive integer number of rows")
        _require(self.family in FAMILIES,
                 f"coreset.family={self.family!r} is unknown; use one of {FAMILIES}")
        _require(isinstance(self.seed, int) and 0 <= self.seed < 2**63,
                 f"coreset.seed={self.seed!r} must be an integer in [0, 2**63)")
        _require(isinstance(self.fanin, int) and self.fanin >= 2,
                 f"coreset.fanin={self.fanin!r} must be an integer of at least 2")
        _require(isinstance(self.levels, int) and 0 <= self.levels <= 8,
                 f"coreset.levels={self.levels!r} must be 0 (automatic) to 8")
        _require(self.fanin <= 1024, f"coreset.fanin={self.fanin!r} must be at most 1024; 8 to 64 is usual")
        _require(self.fanin ** max(self.levels, 1) <= MAX_LEAVES,
                 f"coreset.levels={self.levels} with fanin={self.fanin} makes {self.fanin ** self.levels} leaves, "
                 f"more than {MAX_LEAVES}; use fewer levels or 0 (automatic)")
        _require(self.uniform_floor is None or (isinstance(self.uniform_floor, (int, float))
                                                and not isinstance(self.uniform_floor, bool)),
                 f"coreset.uniform_floor={self.uniform_floor!r} must be a number in (0, 1] (not quoted), "
                 "or null for the family's default")
        _require(self.uniform_floor is None or 0.0 < self.uniform_floor <= 1.0,
                 f"coreset.uniform_floor={self.uniform_floor!r} must be in (0, 1]; 0.1 to 0.5 is usual "
                 "(1 is a plain uniform sample within the class floors)")
        _require(isinstance(self.min_per_class, int) and self.min_per_class >= 1,
                 f"coreset.min_per_class={self.min_per_class!r} must be a positive integer")
        _require(0.0 < self.leaf_fraction <= 1.0,
                 f"coreset.leaf_fraction={self.leaf_fraction!r} must be in (0, 1]")
        _require(self.max_driver_rows >= 1,
                 f"coreset.max_driver_rows={self.max_driver_rows!r} must be positive")
        _require(isinstance(self.ridge, (int, float)) and self.ridge >= 0,
                 f"coreset.ridge={self.ridge!r} must be a non-negative number (0: plain least squares)")
        _require(isinstance(self.clusters, int) and self.clusters >= 1,
                 f"coreset.clusters={self.clusters!r} must be a positive integer (k of k-means)")
        _require(self.kmeans_mode in KMEANS_MODES,
                 f"coreset.kmeans_mode={self.kmeans_mode!r} is unknown; use one of {KMEANS_MODES}")
        _require(isinstance(self.pilot_rows, int) and self.pilot_rows >= 100,
                 f"coreset.pilot_rows={self.pilot_rows!r} must be an integer of at least 100")
        _require(isinstance(self.pilot_depth, int) and 1 <= self.pilot_depth <= 6,
                 f"coreset.pilot_depth={self.pilot_depth!r} must be an integer from 1 to 6")
        cw = self.class_weight
        _require(cw is None or cw == "balanced" or (isinstance(cw, Mapping) and all(
            isinstance(v, (int, float)) and v > 0 for v in cw.values())),
            f"coreset.class_weight={cw!r} must be null, 'balanced' or a mapping of label to a positive factor")
        _require(isinstance(self.holdout_fraction, (int, float)) and 0.0 <= self.holdout_fraction < 0.5,
                 f"coreset.holdout_fraction={self.holdout_fraction!r} must be in [0, 0.5); 0.01 to 0.05 is usual")

    def class_factors(self, classes: list[Any], counts: Mapping[Any, float]) -> list[float]:
        """The factor of each class (in the order of ``classes``); 1.0 without class weights.

        Mapping keys match a label or its string form (YAML keys are strings); a label the
        mapping does not name is an error.

        >>> CoresetParams(class_weight="balanced").class_factors(["a", "b"], {"a": 30.0, "b": 10.0})
        [0.6666666666666666, 2.0]
        """
        cw = self.class_weight
        if cw is None:
            return [1.0] * len(classes)
        if cw == "balanced":
            total = float(sum(counts.values()))
            return [total / (len(classes) * float(counts[c])) for c in classes]
        assert isinstance(cw, Mapping)
        by_text = {str(k): float(v) for k, v in cw.items()}
        missing = [c for c in classes if c not in cw and str(c) not in by_text]
        if missing:
            raise ConfigError(f"coreset.class_weight has no factor for class(es) {missing[:5]}; give every class "
                              f"{[str(c) for c in classes][:10]} a factor, or use 'balanced'")
        return [float(cw[c]) if c in cw else by_text[str(c)] for c in classes]

    @property
    def family_task(self) -> str:
        """The task the family implies: ``classification``, ``regression``, ``clustering`` or ``any``."""
        return {"logistic": "classification", "linear": "regression", "kmeans": "clustering",
                "pca": "clustering"}.get(self.family, "any")


def resolve_task(spec: DataSpec, params: CoresetParams) -> str:
    """The task of a build: the data specification's, checked against the family's.

    >>> resolve_task(DataSpec(target=None), CoresetParams(family="kmeans"))
    'clustering'
    >>> resolve_task(DataSpec(target="y", task="regression"), CoresetParams(family="uniform"))
    'regression'
    """
    implied = params.family_task
    if spec.task == "auto":
        task = "classification" if implied == "any" else implied
    else:
        task = spec.task
        _require(implied in ("any", task),
                 f"data.task={task!r} does not fit coreset.family={params.family!r} (a {implied} family); "
                 f"set data.task to {implied!r} or auto, or choose another family")
    if task == "clustering" and params.family not in ("kmeans", "pca", "uniform"):
        raise ConfigError(f"coreset.family={params.family!r} needs a target; clustering uses kmeans, pca or uniform")
    _require(task == "clustering" or spec.target is not None,
             f"coreset.family={params.family!r} ({task}) needs data.target; name the target column")
    return task


@dataclass(frozen=True)
class SparkSettings:
    """Where Spark runs and how it finds Delta Lake.

    Parameters
    ----------
    master : ``local[*]`` by default; any Spark master URL. Ignored when a session is active.
    app_name : the Spark application name.
    delta : ``maven`` (jars resolved by ``make jars`` into a folder, passed as ``spark.jars``),
        ``ivy`` (``spark.jars.packages``, resolved by Spark at start), or ``builtin`` (the
        platform has Delta already, as Databricks does: configure nothing).
    jars_dir : folder of the Maven-resolved jars; default ``$CORESET_SPARK_JARS_DIR`` or ``.jars``.
    conf : extra Spark settings.

    >>> SparkSettings(delta="builtin").master
    'local[*]'
    """

    master: str = "local[*]"
    app_name: str = "coreset_spark"
    delta: str = "maven"
    jars_dir: str | None = None
    conf: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require(self.delta in ("maven", "ivy", "builtin"),
                 f"spark.delta={self.delta!r} is unknown; use maven, ivy or builtin")
        object.__setattr__(self, "conf", {str(k): str(v) for k, v in dict(self.conf).items()})


def from_mapping(cls: Any, values: Mapping[str, Any] | None, section: str) -> Any:
    """Build dataclass ``cls`` from a mapping, naming unknown keys.

    >>> from_mapping(CoresetParams, {"size": 10}, "coreset").size
    10
    """
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in section {section!r}; known keys: {sorted(known)}")
    for key, value in list(values.items()):
        if isinstance(value, list):
            values[key] = tuple(value)
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"section {section!r}: {exc}") from exc


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML configuration file into a dict (an empty file is an empty dict)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"configuration file {str(path)!r} does not exist; pass --config with a file from conf/")
    with path.open() as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"configuration file {str(path)!r} must hold a mapping at the top level")
    return data
