"""Tune on the coreset: grid, random and Optuna search over several estimator families, with
weighted fitting, weighted scoring and weight-balanced folds, on the driver or across a cluster.

A search is a list of :class:`Candidate` (an estimator and the values of its hyper-parameters to
try) and a scoring. Every configuration is cross-validated on the coreset with the folds of
:func:`coreset_spark.driver.weighted_folds`; each fit gets the coreset weights (through metadata
routing for Pipelines), row-counting hyper-parameters are translated and weight-sensitive solvers
rescaled (:func:`coreset_spark.driver.fit_on_coreset`); each fold is scored with the weights. The
(configuration, fold) fits run on the driver (``backend="local"``, joblib processes) or as Spark
tasks (``backend="spark"``: DataFrame operations only, so Spark Connect and serverless work too);
both run the same function on the same inputs and give the same scores.

>>> import numpy as np
>>> from sklearn.linear_model import LogisticRegression
>>> from sklearn.tree import DecisionTreeClassifier
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(300, 3)); y = (x[:, 0] + 0.3 * rng.normal(size=300) > 0).astype(int)
>>> w = rng.uniform(1, 9, 300)
>>> result = tune([Candidate("logistic", LogisticRegression(), {"C": [0.01, 1.0]}),
...                Candidate("tree", DecisionTreeClassifier(random_state=0), {"max_depth": [1, 3]})],
...               (x, y, w), scoring="accuracy", cv=3)
>>> len(result.trials), result.best.candidate in ("logistic", "tree")
(4, True)
"""

from __future__ import annotations

import contextlib
import itertools
import math
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)
from threadpoolctl import threadpool_limits

from coreset_spark.config import ConfigError
from coreset_spark.driver import fit_on_coreset, weighted_folds
from coreset_spark.metrics import full_proba

# scoring name -> (needs probabilities, higher is better); losses are negated, as in scikit-learn
SCORINGS: dict[str, tuple[bool, bool]] = {
    "accuracy": (False, True), "balanced_accuracy": (False, True), "f1": (False, True),
    "neg_log_loss": (True, True), "roc_auc": (True, True), "neg_root_mean_squared_error": (False, True),
    "r2": (False, True),
}
ALIASES = {"log_loss": "neg_log_loss", "rmse": "neg_root_mean_squared_error", "f1_macro": "f1",
           "roc_auc_ovr": "roc_auc", "neg_rmse": "neg_root_mean_squared_error"}
CLASSIFICATION_SCORINGS = ("accuracy", "balanced_accuracy", "f1", "neg_log_loss", "roc_auc")
REGRESSION_SCORINGS = ("neg_root_mean_squared_error", "r2")
METHODS = ("grid", "random", "optuna")
BACKENDS = ("local", "spark")


def scoring_name(scoring: str, task: str | None, key: str = "scoring") -> str:
    """The canonical name of ``scoring`` (``log_loss`` -> ``neg_log_loss``), checked against the
    task (``None``: any task); an error names ``key`` (the setting).

    >>> scoring_name("rmse", "regression")
    'neg_root_mean_squared_error'
    """
    name = ALIASES.get(scoring, scoring)
    allowed = {"classification": CLASSIFICATION_SCORINGS, "regression": REGRESSION_SCORINGS,
               None: CLASSIFICATION_SCORINGS + REGRESSION_SCORINGS}.get(task, REGRESSION_SCORINGS)
    if name not in allowed:
        raise ConfigError(f"{key}={scoring!r} {'is unknown' if task is None else f'does not apply to {task}'}; use "
                          f"one of {list(allowed)} (or the aliases {sorted(k for k, v in ALIASES.items() if v in allowed)})")
    return name


def weighted_score(scoring: str, model: Any, x: np.ndarray, y: np.ndarray, weight: np.ndarray,
                   n_classes: int = 0) -> float:
    """Score ``model`` on (x, y) with row weights, in scikit-learn's convention (higher is better).

    Classifiers are scored over all ``n_classes`` classes, so a fold whose training part misses a
    class still scores (that class gets probability 0). ``f1`` is binary F1 of class 1 for two
    classes and the macro F1 otherwise; ``roc_auc`` the macro one-vs-rest AUC over the classes
    present for more than two.

    >>> from sklearn.linear_model import LogisticRegression
    >>> x = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0, 0, 1, 1])
    >>> m = LogisticRegression().fit(x, y)
    >>> weighted_score("accuracy", m, x, y, np.array([1.0, 1.0, 1.0, 1.0]), 2)
    1.0
    """
    w = np.asarray(weight, dtype=np.float64)
    if scoring in REGRESSION_SCORINGS:
        pred = model.predict(x)
        return (-root_mean_squared_error(y, pred, sample_weight=w) if scoring == "neg_root_mean_squared_error"
                else float(r2_score(y, pred, sample_weight=w)))
    proba = full_proba(model, x, n_classes)
    pred = np.argmax(proba, axis=1)
    if scoring == "accuracy":
        return float(accuracy_score(y, pred, sample_weight=w))
    if scoring == "balanced_accuracy":
        return float(balanced_accuracy_score(y, pred, sample_weight=w))
    if scoring == "f1":
        average = "binary" if n_classes == 2 else "macro"
        return float(f1_score(y, pred, sample_weight=w, average=average, zero_division=0))
    if scoring == "neg_log_loss":
        return -float(log_loss(y, np.clip(proba, 1e-15, 1.0), sample_weight=w, labels=np.arange(n_classes)))
    if scoring == "roc_auc":
        if n_classes == 2:
            return float(roc_auc_score(y, proba[:, 1], sample_weight=w))
        present = [c for c in range(n_classes) if 0 < np.sum(y == c) < len(y)]
        return float(np.mean([roc_auc_score(y == c, proba[:, c], sample_weight=w) for c in present]))
    raise ConfigError(f"scoring={scoring!r} is unknown; use one of {list(SCORINGS)}")


@dataclass(frozen=True)
class Uniform:
    """A continuous hyper-parameter range for random and Optuna search (``log=True``: log-uniform).

    >>> Uniform(1e-3, 1e3, log=True).sample(np.random.default_rng(0)) > 0
    True
    """

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not self.low < self.high or (self.log and self.low <= 0):
            raise ConfigError(f"Uniform(low={self.low!r}, high={self.high!r}, log={self.log}) needs low < high "
                              "(and low > 0 on a log scale)")

    def sample(self, rng: np.random.Generator) -> float:
        """One value drawn with ``rng``."""
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))


@dataclass(frozen=True)
class IntUniform:
    """An integer hyper-parameter range [low, high] for random and Optuna search."""

    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        if not self.low <= self.high or (self.log and self.low <= 0):
            raise ConfigError(f"IntUniform(low={self.low!r}, high={self.high!r}) needs low <= high "
                              "(and low > 0 on a log scale)")

    def sample(self, rng: np.random.Generator) -> int:
        """One value drawn with ``rng``."""
        if self.log:
            return int(round(math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1) - 1e-9) - 0.5)))
        return int(rng.integers(self.low, self.high + 1))


Space = Mapping[str, Any]  # parameter -> list of values, Uniform or IntUniform


@dataclass
class Candidate:
    """One estimator family to try: a name, an estimator (any scikit-learn compatible model or
    Pipeline) and its search space, parameter -> list of values (grid, random, Optuna) or a
    :class:`Uniform` / :class:`IntUniform` range (random, Optuna)."""

    name: str
    estimator: Any
    space: Space = field(default_factory=dict)

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the listed values (a range is an error in a grid)."""
        for key, values in self.space.items():
            if not isinstance(values, (list, tuple)):
                raise ConfigError(f"candidate {self.name!r}: parameter {key!r} is a range ({values!r}); a grid search "
                                  "needs a list of values, or use method='random' or 'optuna'")
        keys = list(self.space)
        return [dict(zip(keys, combo)) for combo in itertools.product(*[list(self.space[k]) for k in keys])]

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """One random configuration."""
        out: dict[str, Any] = {}
        for key, values in self.space.items():
            out[key] = values.sample(rng) if hasattr(values, "sample") else list(values)[int(rng.integers(len(values)))]
        return out


ESTIMATOR_MODULES = ("sklearn.", "xgboost", "lightgbm", "coreset_spark.")


def estimator_from_path(path: str, params: Mapping[str, Any] | None = None) -> Any:
    """An estimator from its import path and constructor parameters, as a YAML config names it.

    Only scikit-learn, XGBoost, LightGBM and this package's estimators are accepted.

    >>> estimator_from_path("sklearn.linear_model.LogisticRegression", {"C": 0.5}).C
    0.5
    """
    import importlib

    if not isinstance(path, str) or "." not in path or not path.startswith(ESTIMATOR_MODULES):
        raise ConfigError(f"estimator={path!r} must be an import path such as sklearn.linear_model.LogisticRegression "
                          f"from one of {ESTIMATOR_MODULES}")
    module, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"estimator={path!r} cannot be imported ({exc}); check the spelling or install its extra") from exc
    try:
        return cls(**dict(params or {}))
    except TypeError as exc:
        raise ConfigError(f"estimator={path!r} does not take params {dict(params or {})}: {exc}") from exc


def _space_value(name: str, key: str, value: Any) -> Any:
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping) and value.get("type") in ("float", "int"):
        cls = Uniform if value["type"] == "float" else IntUniform
        try:
            return cls(value["low"], value["high"], bool(value.get("log", False)))
        except KeyError as exc:
            raise ConfigError(f"candidate {name!r}: range {key!r} needs low and high, got {dict(value)}") from exc
    raise ConfigError(f"candidate {name!r}: {key}={value!r} must be a list of values or a range "
                      "{type: float|int, low: ..., high: ..., log: true|false}")


def candidates_from_config(entries: Sequence[Mapping[str, Any]]) -> list[Candidate]:
    """Candidates from a YAML list of ``{name, estimator, params, space}``.

    >>> cs = candidates_from_config([{"name": "lr", "estimator": "sklearn.linear_model.LogisticRegression",
    ...                               "params": {"max_iter": 500}, "space": {"C": [0.1, 1.0]}}])
    >>> cs[0].grid()
    [{'C': 0.1}, {'C': 1.0}]
    """
    out = []
    for i, entry in enumerate(entries):
        unknown = sorted(set(entry) - {"name", "estimator", "params", "space"})
        if unknown or "estimator" not in entry:
            raise ConfigError(f"candidate {i}: needs 'estimator' (and optionally name, params, space); "
                              f"unknown keys {unknown}")
        name = str(entry.get("name") or entry["estimator"].rpartition(".")[2])
        space = {k: _space_value(name, k, v) for k, v in dict(entry.get("space") or {}).items()}
        estimator = estimator_from_path(entry["estimator"], entry.get("params"))
        known = estimator.get_params(deep=True)
        wrong = sorted(k for k in space if k not in known)
        if wrong:
            raise ConfigError(f"candidate {name!r}: space names {wrong}, which {entry['estimator']!r} does not take; "
                              f"its parameters are {sorted(known)[:40]}")
        out.append(Candidate(name, estimator, space))
    return out


@dataclass
class Trial:
    """One configuration's cross-validation result."""

    candidate: str
    params: dict[str, Any]
    fold_scores: list[float]
    fit_seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        """Mean of the fold scores (NaN when a fold failed to score)."""
        return float(np.mean(self.fold_scores)) if self.fold_scores else float("nan")

    @property
    def std(self) -> float:
        """Standard deviation of the fold scores."""
        return float(np.std(self.fold_scores)) if self.fold_scores else float("nan")

    def label(self) -> str:
        """``candidate(k=v, ...)``."""
        return f"{self.candidate}(" + ", ".join(f"{k}={_short(v)}" for k, v in self.params.items()) + ")"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else repr(value)


@dataclass
class SearchResult:
    """What a search found: every trial, the best one and the best model refitted on the whole coreset."""

    trials: list[Trial]
    scoring: str
    method: str
    backend: str
    cv: int
    rows: int
    weight_total: float
    level: int | None
    seconds: dict[str, float]
    best_estimator_: Any = None
    candidates: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> Trial:
        """The trial with the highest mean score (ties: the first tried)."""
        scored = [t for t in self.trials if not math.isnan(t.score)]
        if not scored:
            raise ValueError(f"no configuration could be scored with {self.scoring!r}; see the trials' notes")
        return max(scored, key=lambda t: t.score)

    @property
    def best_params_(self) -> dict[str, Any]:
        """The best trial's hyper-parameters (scikit-learn's name)."""
        return dict(self.best.params)

    def finalists(self, top: int = 3) -> list[Trial]:
        """The ``top`` best trials, best first."""
        scored = [t for t in self.trials if not math.isnan(t.score)]
        return sorted(scored, key=lambda t: -t.score)[:top]

    def estimator_for(self, trial: Trial) -> Any:
        """An unfitted estimator with the trial's configuration."""
        return clone(self.candidates[trial.candidate]).set_params(**trial.params)

    def refit(self, trial: Trial, x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> Any:
        """The trial's configuration fitted on (x, y, weight) the coreset way."""
        return fit_on_coreset(self.estimator_for(trial), x, y, weight)[0]

    def table(self) -> list[dict[str, Any]]:
        """One JSON-ready row per trial, best first."""
        rows = sorted(self.trials, key=lambda t: -t.score if not math.isnan(t.score) else math.inf)
        return [{"candidate": t.candidate, "params": {k: _jsonable(v) for k, v in t.params.items()},
                 "cv_score": t.score, "cv_std": t.std, "fold_scores": t.fold_scores,
                 "fit_seconds": round(t.fit_seconds, 3), "notes": t.notes} for t in rows]


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


@dataclass
class Work:
    """Everything a (configuration, fold) fit needs; pickled once and shipped to the workers."""

    x: np.ndarray
    y: np.ndarray
    weight: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]
    estimators: list[Any]  # unfitted, one per configuration
    scoring: str
    n_classes: int
    threads: int | None = None  # BLAS/OpenMP threads per fit: 1 when fits run side by side

    def run(self, task: int) -> tuple[float, float, list[str]]:
        """Fit configuration ``task // folds`` on the training part of fold ``task % folds`` and
        score it on the fold; returns (score, fit seconds, notes). A failed fit scores NaN with the
        error as a note, so one bad configuration does not end the search."""
        config, fold = divmod(task, len(self.folds))
        train, test = self.folds[fold]
        start = time.perf_counter()
        # Fits side by side (joblib processes, Spark tasks of one core each) must not each start a
        # thread per core: oversubscribed, gradient boosting ran 10 to 100 times slower here.
        limits = threadpool_limits(self.threads) if self.threads else contextlib.nullcontext()
        try:
            with limits:
                return self._fit_and_score(config, fold, train, test, start)
        except Exception as exc:  # noqa: BLE001 - reported per trial, the search goes on
            return float("nan"), time.perf_counter() - start, [f"fold {fold}: {type(exc).__name__}: {exc}"]

    def _fit_and_score(self, config: int, fold: int, train: np.ndarray, test: np.ndarray,
                       start: float) -> tuple[float, float, list[str]]:
        model, notes = fit_on_coreset(self.estimators[config], self.x[train], self.y[train], self.weight[train])
        score = weighted_score(self.scoring, model, self.x[test], self.y[test], self.weight[test], self.n_classes)
        return float(score), time.perf_counter() - start, notes


def _run_local(work: Work, tasks: Sequence[int], n_jobs: int) -> list[tuple[float, float, list[str]]]:
    if n_jobs == 1 or len(tasks) <= 1:
        return [work.run(t) for t in tasks]
    from joblib import Parallel, delayed

    return list(Parallel(n_jobs=n_jobs)(delayed(work.run)(t) for t in tasks))


def _run_spark(work: Work, tasks: Sequence[int], spark: Any) -> list[tuple[float, float, list[str]]]:
    from coreset_spark.spark.fanout import map_tasks

    payload = pickle.dumps(work, protocol=pickle.HIGHEST_PROTOCOL)

    def run(task: int) -> bytes:
        return pickle.dumps(pickle.loads(payload).run(task))

    return [pickle.loads(b) for b in map_tasks(spark, list(tasks), run)]


def _coreset_arrays(data: Any, level: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, str, int | None]:
    """(x, y, weight, n_classes, task, level) of a tree (at ``level``), a Coreset or an (x, y, w) tuple."""
    if hasattr(data, "get_coreset"):  # a CoresetTree: the level asked for (0, the root, by default)
        data = data.get_coreset(level or 0)
    if hasattr(data, "weight") and hasattr(data, "x"):
        task = data.task
        k = len(data.classes) if task == "classification" else 0
        return data.x, data.y, data.weight, k, task, data.level
    x, y, w = data
    y = np.asarray(y)
    task = "classification" if np.issubdtype(y.dtype, np.integer) else "regression"
    return np.asarray(x), y, np.asarray(w, dtype=np.float64), (int(y.max()) + 1 if task == "classification" else 0), \
        task, level


def tune(
    candidates: Sequence[Candidate],
    data: Any,
    *,
    scoring: str | None = None,
    method: str = "grid",
    cv: int = 3,
    n_iter: int = 20,
    seed: int = 0,
    level: int | None = None,
    backend: str = "local",
    spark: Any = None,
    n_jobs: int = 1,
    batch_size: int = 8,
    refit: bool = True,
    progress: Callable[[str], None] | None = None,
) -> SearchResult:
    """Search the candidates' spaces on a coreset; returns a :class:`SearchResult`.

    Parameters
    ----------
    candidates : the estimator families and their spaces.
    data : a :class:`~coreset_spark.coreset.CoresetTree` (its ``level``: 0, the root, by default; a
        higher level is a larger, more accurate coreset, with no rebuild), a
        :class:`~coreset_spark.coreset.Coreset`, or ``(x, y, weight)`` (integer y: classes).
    scoring : ``accuracy``, ``balanced_accuracy``, ``f1``, ``neg_log_loss`` (``log_loss``),
        ``roc_auc`` for classifiers; ``neg_root_mean_squared_error`` (``rmse``), ``r2`` for
        regression. Default: ``neg_log_loss`` / ``neg_root_mean_squared_error``.
    method : ``grid`` (every combination of the lists), ``random`` (``n_iter`` configurations per
        candidate drawn with ``seed``) or ``optuna`` (``n_iter`` trials in all, TPE sampler seeded
        with ``seed``; in batches of ``batch_size`` when the fits run on Spark).
    cv : folds (:func:`~coreset_spark.driver.weighted_folds`, stratified for classifiers).
    backend : ``local`` (``n_jobs`` processes on the driver) or ``spark`` (one Spark task per
        (configuration, fold); needs ``spark``).
    refit : fit the best configuration on the whole coreset (``best_estimator_``).
    """
    if method not in METHODS:
        raise ConfigError(f"method={method!r} is unknown; use one of {METHODS}")
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r} is unknown; use one of {BACKENDS}")
    if backend == "spark" and spark is None:
        raise ConfigError("backend='spark' needs the Spark session: pass spark=")
    if not candidates:
        raise ConfigError("no candidates to search: give at least one Candidate(name, estimator, space)")
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise ConfigError(f"candidate names must be unique, got {names}")
    if n_iter < 1:
        raise ConfigError(f"n_iter={n_iter!r} must be at least 1")
    say = progress or (lambda message: None)
    x, y, w, k, task, level = _coreset_arrays(data, level)
    scoring = scoring_name(scoring or ("neg_log_loss" if task == "classification" else "rmse"), task)
    for c in candidates:
        if is_classifier(c.estimator) != (task == "classification"):
            raise ConfigError(f"candidate {c.name!r} ({type(c.estimator).__name__}) does not fit a {task} coreset; "
                              f"use a {'classifier' if task == 'classification' else 'regressor'}")
    folds = weighted_folds(y, w, cv, seed, stratify=task == "classification")
    started = time.perf_counter()
    by_name = {c.name: c for c in candidates}

    def evaluate(configs: list[tuple[str, dict[str, Any]]]) -> list[Trial]:
        estimators = [clone(by_name[name].estimator).set_params(**params) for name, params in configs]
        work = Work(x, y, w, folds, estimators, scoring, k, threads=1 if backend == "spark" or n_jobs != 1 else None)
        tasks = list(range(len(configs) * cv))
        outcomes = _run_spark(work, tasks, spark) if backend == "spark" else _run_local(work, tasks, n_jobs)
        trials = []
        for i, (name, params) in enumerate(configs):
            parts = outcomes[i * cv:(i + 1) * cv]
            notes = sorted({n for _, _, ns in parts for n in ns})
            trials.append(Trial(name, dict(params), [p[0] for p in parts], sum(p[1] for p in parts), notes))
        return trials

    if method == "grid":
        trials = evaluate([(c.name, p) for c in candidates for p in c.grid()])
    elif method == "random":
        rng = np.random.default_rng(seed)
        trials = evaluate([(c.name, c.sample(rng)) for c in candidates for _ in range(n_iter)])
    else:
        trials = _optuna_search(candidates, evaluate, n_iter, seed, batch_size if backend == "spark" else 1)
    say(f"[tune] {len(trials)} configurations x {cv} folds ({method}, {backend}) in "
        f"{time.perf_counter() - started:.1f} s")
    result = SearchResult(trials, scoring, method, backend, cv, len(y), float(w.sum()), level,
                          {"search": round(time.perf_counter() - started, 3)}, candidates=dict(
                              (c.name, c.estimator) for c in candidates))
    if refit:
        start = time.perf_counter()
        result.best_estimator_ = result.refit(result.best, x, y, w)
        result.seconds["refit"] = round(time.perf_counter() - start, 3)
    return result


def _optuna_search(candidates: Sequence[Candidate], evaluate: Callable[[list[tuple[str, dict[str, Any]]]], list[Trial]],
                   n_iter: int, seed: int, batch_size: int) -> list[Trial]:
    try:
        import optuna
    except ImportError as exc:  # pragma: no cover - optuna is in the tuning extra
        raise ConfigError("method='optuna' needs Optuna: pip install 'coreset_spark[tuning]'") from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    names = [c.name for c in candidates]
    trials: list[Trial] = []
    while len(trials) < n_iter:
        asked = [study.ask() for _ in range(min(batch_size, n_iter - len(trials)))]
        configs = []
        for trial in asked:
            name = trial.suggest_categorical("candidate", names) if len(names) > 1 else names[0]
            space = next(c for c in candidates if c.name == name).space
            params: dict[str, Any] = {}
            for key, values in space.items():
                label = f"{name}:{key}"
                if isinstance(values, Uniform):
                    params[key] = trial.suggest_float(label, values.low, values.high, log=values.log)
                elif isinstance(values, IntUniform):
                    params[key] = trial.suggest_int(label, values.low, values.high, log=values.log)
                else:
                    choices = list(values)
                    params[key] = choices[trial.suggest_categorical(label, list(range(len(choices))))]
            configs.append((name, params))
        done = evaluate(configs)
        for trial, result in zip(asked, done):
            if math.isnan(result.score):
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, result.score)
        trials += done
    return trials
