"""The quality benchmark: every coreset family against uniform sampling and the full data.

For each experiment of the configuration (a dataset, a coreset family, a model) and each seed,
one coreset tree is built in Spark; every level (the root is the smallest; each level down is
``fanin`` times larger) is collected, and a uniform sample of exactly the same number of training
rows (without replacement, weight ``n / m`` each) is drawn beside it with the same seed. A model is
fitted on each with its weights and compared with the model fitted on the whole training split:

* **loss ratio**: the model's training objective on the *full* training data divided by the
  full-data model's (1.0 is perfect; for k-means the cost ratio, for PCA the projection-cost ratio);
* **test metrics** on a held-out split: accuracy, balanced accuracy, log loss and ROC AUC for
  classifiers, RMSE and R^2 for regression, cost ratio for k-means and PCA.

Run with ``python jobs/benchmark_quality.py --config conf/benchmark_quality.yaml``; it prints
the figures and writes ``quality.json``, ``quality.md`` and one PNG per experiment.

>>> objective_name("kmeans")
'cost ratio'
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import SparkSession
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from coreset_spark import datasets, kmeans, linear, pca
from coreset_spark.config import ConfigError, CoresetParams
from coreset_spark.driver import fit_weighted, weight_based_params
from coreset_spark.job import split_train_test
from coreset_spark.spark.build import build_tree
from coreset_spark.spark.evaluate import collect_rows
from coreset_spark.spark.frame import with_row_ids

Log = Callable[[str], None]


def objective_name(model: str) -> str:
    """What the loss ratio measures for a model kind."""
    return {"kmeans": "cost ratio", "pca": "projection cost ratio", "ridge": "squared-loss ratio"}.get(
        model, "log-loss ratio")


def make_model(kind: str, options: Mapping[str, Any], n_classes: int, seed: int) -> Any:
    """The estimator of an experiment (scikit-learn, LightGBM or XGBoost)."""
    options = dict(options)
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression

        c = options.pop("C", 1.0)
        return LogisticRegression(C=math.inf if c is None else float(c), max_iter=int(options.pop("max_iter", 2000)),
                                  tol=float(options.pop("tol", 1e-6)), **options)
    if kind == "ridge":
        from sklearn.linear_model import Ridge

        return Ridge(alpha=float(options.pop("alpha", 1.0)), **options)
    if kind == "lightgbm":
        import lightgbm

        cls = lightgbm.LGBMRegressor if options.pop("regression", False) else lightgbm.LGBMClassifier
        options.setdefault("verbose", -1)
        options.setdefault("n_jobs", 2)
        return cls(random_state=seed, **options)
    if kind == "xgboost":
        import xgboost

        cls = xgboost.XGBRegressor if options.pop("regression", False) else xgboost.XGBClassifier
        options.setdefault("n_jobs", 2)
        return cls(random_state=seed, **options)
    if kind == "hist_gbm":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(random_state=seed, **options)
    if kind == "kmeans":
        from sklearn.cluster import KMeans

        return KMeans(n_clusters=int(options.pop("k", 20)), n_init=int(options.pop("n_init", 3)),
                      random_state=seed, **options)
    if kind == "pca":
        return int(options.pop("components", 3))
    raise ConfigError(f"experiment model={kind!r} is unknown; use logistic, ridge, lightgbm, xgboost, hist_gbm, "
                      "kmeans or pca")


class Fitted:
    """A fitted model of any kind with one interface for objective and test metrics."""

    def __init__(self, kind: str, model: Any, n_classes: int) -> None:
        self.kind, self.model, self.n_classes = kind, model, n_classes

    @staticmethod
    def fit(kind: str, template: Any, x: np.ndarray, t: np.ndarray, w: np.ndarray | None,
            n_classes: int) -> tuple[Fitted, list[str]]:
        """Fit with ``sample_weight`` (``w=None``: the full data, unweighted)."""
        if kind == "pca":
            mean, axes = pca.weighted_pca(x, np.ones(len(x)) if w is None else w, int(template))
            return Fitted(kind, (mean, axes), n_classes), []
        y = t.astype(np.int64) if kind in ("logistic", "lightgbm", "xgboost", "hist_gbm") and n_classes else t
        if w is not None:
            template, notes = weight_based_params(template, len(x), float(w.sum()))
        else:
            notes = []
        model, warnings = fit_weighted(template, x, y, w)
        return Fitted(kind, model, n_classes), notes + warnings

    def proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities over all classes (a coreset may miss a class)."""
        out = np.zeros((len(x), self.n_classes))
        out[:, np.asarray(self.model.classes_, dtype=np.int64)] = self.model.predict_proba(x)
        return out

    def objective(self, x: np.ndarray, t: np.ndarray) -> float:
        """The training objective on rows ``(x, t)`` (unit weights)."""
        if self.kind == "kmeans":
            return kmeans.cost(x, None, self.model.cluster_centers_)
        if self.kind == "pca":
            return pca.projection_cost(x, None, *self.model)
        if self.kind == "ridge":
            coef = np.asarray(self.model.coef_)
            return linear.squared_loss(coef, float(self.model.intercept_), x, t) + self.model.alpha * float(coef @ coef)
        p = np.clip(self.proba(x)[np.arange(len(t)), t.astype(np.int64)], 1e-15, 1.0)
        loss = float(-np.log(p).sum())
        if self.kind == "logistic" and np.isfinite(self.model.C):
            loss += 0.5 * float((self.model.coef_ ** 2).sum()) / self.model.C
        return loss

    def test_metrics(self, x: np.ndarray, t: np.ndarray, full: Fitted | None) -> dict[str, float]:
        """Held-out metrics (for k-means and PCA: the test cost relative to the full model's)."""
        if self.kind in ("kmeans", "pca"):
            own = self.objective(x, t)
            return {"test_cost_ratio": own / full.objective(x, t) if full is not None else 1.0}
        if self.kind == "ridge" or (self.n_classes == 0):
            pred = self.model.predict(x)
            mse = float(np.mean((t - pred) ** 2))
            return {"rmse": math.sqrt(mse), "r2": 1.0 - mse / float(np.var(t))}
        proba = self.proba(x)
        y = t.astype(np.int64)
        pred = np.argmax(proba, axis=1)
        out = {"accuracy": float(np.mean(pred == y)), "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
               "log_loss": float(-np.log(np.clip(proba[np.arange(len(y)), y], 1e-15, 1.0)).mean())}
        if self.n_classes == 2:
            out["roc_auc"] = float(roc_auc_score(y, proba[:, 1]))
        return out


CLASSIFIERS = ("logistic", "lightgbm", "xgboost", "hist_gbm")


@dataclass(frozen=True)
class Sample:
    """Weighted rows on the driver: features, target, weight (a coreset level or a uniform sample)."""

    x: np.ndarray
    y: np.ndarray
    weight: np.ndarray


def uniform_sample(x: np.ndarray, t: np.ndarray, rows: int, seed: int) -> Sample:
    """``rows`` training rows drawn uniformly without replacement, each weighted ``n / rows``.

    The baseline at exactly the coreset's size; weights sum to ``n``.

    >>> s = uniform_sample(np.arange(20.0).reshape(10, 2), np.arange(10.0), 4, 0)
    >>> len(s.y), float(s.weight.sum())
    (4, 10.0)
    """
    n = len(t)
    rows = max(1, min(int(rows), n))
    index = np.sort(np.random.default_rng(seed).choice(n, size=rows, replace=False))
    return Sample(x[index], t[index], np.full(rows, n / rows))


def run_experiment(spark: SparkSession, name: str, cfg: Mapping[str, Any], defaults: Mapping[str, Any],
                   log: Log) -> dict[str, Any]:
    """One dataset x family x model: coreset and uniform at every level, several seeds, the full model."""
    cfg = {**defaults, **cfg}
    df, spec = datasets.load(spark, cfg["dataset"])
    spec = replace(spec, **dict(cfg.get("spec") or {}))
    df = with_row_ids(df, "rid")
    spec = replace(spec, row_id="rid")
    train, test = split_train_test(df, float(cfg.get("test_fraction", 0.3)), 42)
    train = train.repartition(int(cfg.get("partitions", 8))).persist(StorageLevel.MEMORY_AND_DISK)
    test = test.persist(StorageLevel.MEMORY_AND_DISK)
    n_train = train.count()
    family = cfg["family"]
    base = CoresetParams(size=int(cfg["size"]), family=family, fanin=int(cfg.get("fanin", 4)),
                         levels=int(cfg.get("levels", 3)), **dict(cfg.get("params") or {}))
    kind = cfg["model"]
    levels = list(range(base.levels + 1))
    result: dict[str, Any] = {"dataset": cfg["dataset"], "family": family, "model": kind,
                              "model_options": dict(cfg.get("model_options") or {}), "params": dict(base.__dict__),
                              "train_rows": n_train, "objective": objective_name(kind), "runs": []}
    full: Fitted | None = None
    x_train = t_train = x_test = t_test = None
    for seed in range(int(cfg.get("seeds", 5))):
        params = replace(base, seed=seed)
        start = time.perf_counter()
        tree = build_tree(train, spec, params)
        build_seconds = time.perf_counter() - start
        n_classes = len(tree.classes)
        if full is None:
            x_train, t_train, _ = collect_rows(train, tree)
            x_test, t_test, _ = collect_rows(test, tree)
            template = make_model(kind, cfg.get("model_options") or {}, n_classes, 0)
            start = time.perf_counter()
            full, notes = Fitted.fit(kind, template, x_train, t_train, None, n_classes)
            result["full_fit_seconds"] = round(time.perf_counter() - start, 2)
            result["full_notes"] = notes
            result["full_objective"] = full.objective(x_train, t_train)
            result["full_test"] = full.test_metrics(x_test, t_test, full)
            result["features"] = int(x_train.shape[1])
            result["test_rows"] = int(len(t_test))
            result["classes"] = n_classes
            log(f"[quality] {name}: {n_train} train rows, {x_train.shape[1]} features, full fit "
                f"{result['full_fit_seconds']} s, full test {result['full_test']}")
        assert x_train is not None and t_train is not None and x_test is not None and t_test is not None
        template = make_model(kind, cfg.get("model_options") or {}, n_classes, seed)
        coresets: dict[int, Sample] = {}
        for level in levels:
            built = tree.get_coreset(level)
            coresets[level] = Sample(built.x, built.y, built.weight)
        for frame in tree.levels.values():
            frame.unpersist()
        uniforms = {level: uniform_sample(x_train, t_train, len(c.y), seed * 1000 + level)
                    for level, c in coresets.items()}
        for method, samples in (("coreset", coresets), ("uniform", uniforms)):
            for level in levels:
                c = samples[level]
                run = {"seed": seed, "method": method, "level": level, "rows": len(c.y),
                       "fraction": len(c.y) / n_train, "weight_sum": float(c.weight.sum())}
                if n_classes and kind in CLASSIFIERS and len(np.unique(c.y)) < 2:
                    # A small uniform sample of imbalanced data can miss the rare class: no classifier can
                    # be fitted, its loss is unbounded. Counted as an infinite loss ratio (medians stay defined).
                    run.update(loss_ratio=math.inf, notes=[f"{method} level {level} holds a single class"],
                               **{m: math.nan for m in result["full_test"]})
                else:
                    model, notes = Fitted.fit(kind, template, c.x, c.y.astype(np.float64), c.weight, n_classes)
                    run.update(loss_ratio=model.objective(x_train, t_train) / result["full_objective"],
                               **model.test_metrics(x_test, t_test, full), notes=notes)
                if method == "coreset":
                    run["build_seconds"] = round(build_seconds, 2)
                result["runs"].append(run)
        last = [r for r in result["runs"] if r["seed"] == seed]
        log(f"[quality] {name} seed {seed}: " + "; ".join(
            f"{r['method'][0]}{r['level']} {r['rows']} rows {r['loss_ratio']:.3f}" for r in last))
    train.unpersist()
    test.unpersist()
    result["summary"] = summarise(result)
    return result


def main_metric(result: Mapping[str, Any]) -> str:
    """The test metric plotted and summarised for an experiment."""
    full = result["full_test"]
    for key in ("roc_auc", "accuracy", "rmse", "test_cost_ratio"):
        if key in full:
            return "accuracy" if key == "roc_auc" and result.get("classes", 0) > 2 else key
    return next(iter(full))


def _median(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return statistics.median(kept) if kept else math.nan


def summarise(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Medians over seeds per method and level."""
    out = []
    metrics = [m for m in ("accuracy", "balanced_accuracy", "roc_auc", "log_loss", "rmse", "r2", "test_cost_ratio")
               if m in result["full_test"]]
    for level in sorted({r["level"] for r in result["runs"]}):
        row: dict[str, Any] = {"level": level}
        for method in ("coreset", "uniform"):
            runs = [r for r in result["runs"] if r["level"] == level and r["method"] == method]
            row[method] = {"rows": statistics.median(r["rows"] for r in runs),
                           "fraction": statistics.median(r["fraction"] for r in runs),
                           "loss_ratio": statistics.median(r["loss_ratio"] for r in runs),
                           "loss_ratios": [round(r["loss_ratio"], 5) for r in runs],
                           "single_class_runs": sum(1 for r in runs if math.isinf(r["loss_ratio"])),
                           # test metrics over the runs a model could be fitted on
                           **{m: _median([r[m] for r in runs]) for m in metrics}}
        c, u = row["coreset"]["loss_ratio"] - 1, row["uniform"]["loss_ratio"] - 1
        row["excess_ratio_uniform_over_coreset"] = (u / c) if c > 0 else math.inf
        out.append(row)
    return out


def plot(result: Mapping[str, Any], name: str, path: Path) -> None:
    """Test metric and loss ratio against coreset rows: coreset, uniform, the full-data line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = main_metric(result)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for method, colour in (("coreset", "tab:blue"), ("uniform", "tab:orange")):
        rows = [r[method]["rows"] for r in result["summary"]]
        for ax, key in ((axes[0], metric), (axes[1], "loss_ratio")):
            runs = [r for r in result["runs"] if r["method"] == method]
            ax.scatter([r["rows"] for r in runs], [r[key] for r in runs], s=8, alpha=0.35, color=colour)
            ax.plot(rows, [r[method][key] for r in result["summary"]], "-o", color=colour, label=f"{method} (median)")
    axes[0].axhline(result["full_test"][metric], color="black", linestyle="--", label="full data")
    axes[1].axhline(1.0, color="black", linestyle="--", label="full data (1.0)")
    axes[0].set_ylabel(f"test {metric}")
    axes[1].set_ylabel(result["objective"] + " (train, full data)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("coreset rows")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{name}: {result['dataset']}, {result['family']} coreset, {result['model']} "
                 f"({result['train_rows']:,} training rows)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(report: Mapping[str, Any]) -> str:
    """All experiments as markdown tables (medians over seeds)."""
    lines = [f"# Quality benchmark ({report['date']}, {report['seeds']} seeds, master {report['master']})", ""]
    for name, result in report["experiments"].items():
        metric = main_metric(result)
        lines += [f"## {name}: {result['dataset']}, `{result['family']}` coreset, {result['model']} "
                  f"{result['model_options']}",
                  f"{result['train_rows']:,} training rows, {result['features']} features, {result['test_rows']:,} test rows. "
                  f"Full-data model: test {metric} {result['full_test'][metric]:.4f}, fit {result['full_fit_seconds']} s. "
                  f"Loss = {result['objective']} on the full training data (1.0 = full model).", "",
                  f"| level | coreset rows (% of train) | coreset loss ratio | uniform rows | uniform loss ratio | "
                  f"excess uniform / coreset | coreset test {metric} | uniform test {metric} |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in result["summary"]:
            c, u = row["coreset"], row["uniform"]
            lines.append(f"| {row['level']} | {c['rows']:.0f} ({100 * c['fraction']:.2f}%) | {c['loss_ratio']:.4f} | "
                         f"{u['rows']:.0f} | {u['loss_ratio']:.4f} | {row['excess_ratio_uniform_over_coreset']:.1f} | "
                         f"{c[metric]:.4f} | {u[metric]:.4f} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def run_quality_benchmark(spark: SparkSession, config: Mapping[str, Any], out_dir: Path,
                          log: Log = print) -> dict[str, Any]:
    """Run the enabled experiments; write quality.json, quality.md and a PNG per experiment."""
    defaults = dict(config.get("defaults") or {})
    only = config.get("only")
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "seeds": defaults.get("seeds", 5), "master": spark.sparkContext.master,
                              "experiments": {}}
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, cfg in (config.get("experiments") or {}).items():
        if (only and name not in only) or not cfg.get("enabled", True):
            continue
        start = time.perf_counter()
        result = run_experiment(spark, name, cfg, defaults, log)
        result["seconds"] = round(time.perf_counter() - start, 1)
        report["experiments"][name] = result
        plot(result, name, out_dir / f"quality_{name}.png")
        (out_dir / "quality.json").write_text(json.dumps(report, indent=2, default=str))
        (out_dir / "quality.md").write_text(markdown(report))
        write_html(report, out_dir)
        log(markdown({**report, "experiments": {name: result}}))
    return report


def write_html(report: Mapping[str, Any], out_dir: Path) -> Path:
    """``quality.html``: per experiment its table of medians and its PNG, and the time per experiment."""
    from coreset_spark.report import html_report, plot_stages

    tables, figures = [], []
    for name, result in report["experiments"].items():
        metric = main_metric(result)
        tables.append((f"{name}: {result['dataset']}, {result['family']} coreset, {result['model']} "
                       f"(full data: test {metric} {result['full_test'][metric]:.4f})", [
                           {"level": r["level"], "coreset rows": r["coreset"]["rows"],
                            "% of train": 100 * r["coreset"]["fraction"], "coreset loss ratio": r["coreset"]["loss_ratio"],
                            "uniform loss ratio": r["uniform"]["loss_ratio"],
                            f"coreset {metric}": r["coreset"][metric], f"uniform {metric}": r["uniform"][metric]}
                           for r in result["summary"]]))
        figures.append((f"{name}: test {metric} and loss ratio against coreset size", out_dir / f"quality_{name}.png"))
    seconds = {name: float(result.get("seconds", 0.0)) for name, result in report["experiments"].items()}
    figures.append(("Time per experiment (all seeds and levels)", plot_stages(
        seconds, out_dir / "quality_seconds.png", "Quality benchmark: seconds per experiment")))
    return html_report(f"Quality benchmark ({report['date']}, {report['seeds']} seeds)", figures, tables,
                       out_dir / "quality.html",
                       intro="Medians over seeds. Loss ratio: the model's training objective on the full training "
                             "data over the full-data model's (1.0 is perfect).")

