"""Metrics, encoder, configuration and weighted search without Spark."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

from coreset_spark.cli import main as cli_main
from coreset_spark.config import ConfigError, CoresetParams, DataSpec, from_mapping
from coreset_spark.driver import grid_search
from coreset_spark.encoding import Encoder, NumericStats, TableStats
from coreset_spark.metrics import MetricSums


def test_metric_sums_match_sklearn_and_merge_by_addition() -> None:
    rng = np.random.default_rng(0)
    n = 5000
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 2.0 * np.eye(3)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    w = rng.uniform(0.5, 3.0, n)
    total = MetricSums.of(proba[:2000], y[:2000], w[:2000]) + MetricSums.of(proba[2000:], y[2000:], w[2000:])
    report = total.report()
    assert report["accuracy"] == pytest.approx(accuracy_score(y, proba.argmax(1), sample_weight=w))
    assert report["log_loss"] == pytest.approx(log_loss(y, proba, sample_weight=w))
    expected_auc = roc_auc_score(y, proba, multi_class="ovr", average="macro")
    assert report["roc_auc"] == pytest.approx(
        np.mean([roc_auc_score(y == c, proba[:, c]) for c in range(3)]), abs=2e-3)
    assert report["roc_auc"] == pytest.approx(expected_auc, abs=2e-3)
    binary = MetricSums.of(np.column_stack([1 - proba[:, 0], proba[:, 0]]), (y == 0).astype(int), np.ones(n))
    assert binary.report()["roc_auc"] == pytest.approx(roc_auc_score(y == 0, proba[:, 0]), abs=1e-3)
    assert MetricSums.from_vector(total.to_vector(), 3).report() == report


def test_encoder_unseen_levels_nulls_and_constant_columns() -> None:
    stats = TableStats(n_rows=100, weight_total=100.0, target_counts={0: 50, 1: 50},
                       numeric={"x": NumericStats(90, 90.0, 5.0, 2.0, 0.0, 10.0),
                                "k": NumericStats(100, 100.0, 3.0, 0.0, 3.0, 3.0)},
                       categorical={"c": {"a": 60, "b": 39, "rare": 1}})
    enc = Encoder.fit(stats, ["x", "k"], ["c"], rare_level_fraction=0.05, max_levels=10)
    assert enc.feature_names == ["x", "k", "c=a", "c=b", "c=__other__"]
    out = enc.transform(pa.table({"x": [7.0, None, float("nan")], "k": [3.0, 3.0, 3.0], "c": ["rare", None, "b"]}))
    assert out[:, 0].tolist() == [1.0, 0.0, 0.0]  # nulls and NaN imputed to the mean
    assert out[:, 1].tolist() == [0.0, 0.0, 0.0]  # constant column centred, scale 1
    assert out[:, 2:].tolist() == [[0, 0, 1], [0, 0, 1], [0, 1, 0]]
    assert Encoder.from_dict(enc.to_dict()) == enc


def test_config_errors_name_the_setting_and_value() -> None:
    with pytest.raises(ConfigError, match=r"coreset.size=0"):
        CoresetParams(size=0)
    with pytest.raises(ConfigError, match=r"coreset.family='forest'.*logistic"):
        CoresetParams(family="forest")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['sise'\]"):
        from_mapping(CoresetParams, {"sise": 10}, "coreset")
    with pytest.raises(ConfigError, match=r"data.missing='drop'"):
        DataSpec(target="y", missing="drop")
    with pytest.raises(ConfigError, match=r"coreset.uniform_floor='0.2' must be a number"):
        CoresetParams(uniform_floor="0.2")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"coreset.uniform_floor=1.5 must be in \(0, 1\]"):
        CoresetParams(uniform_floor=1.5)
    assert CoresetParams(family="tree").alpha == 0.5 and CoresetParams(family="tree", uniform_floor=0.2).alpha == 0.2
    with pytest.raises(ConfigError, match=r"makes 4294967296 leaves"):
        CoresetParams(fanin=16, levels=8)
    with pytest.raises(ConfigError, match=r"lists a column twice"):
        DataSpec(target="y", features=("a", "a"))
    with pytest.raises(ConfigError, match=r"data.categorical includes the target"):
        DataSpec(target="y", categorical=("y",))
    assert DataSpec(target="y", categorical="color").categorical == ("color",)
    # job configs: a misspelled dataset, scoring or search parameter is named before Spark starts
    from coreset_spark.commands import check_config
    from coreset_spark.tuning import candidates_from_config

    with pytest.raises(ConfigError, match=r"input.dataset='adlt' is unknown.*'adult'"):
        check_config("build", {"input": {"dataset": "adlt"}, "coreset": {"size": 5}, "tree": {"path": "/t"}})
    with pytest.raises(ConfigError, match=r"search.scoring='auc' is unknown.*'roc_auc'"):
        check_config("tune", {"tree": {"path": "/t"}, "candidates": [{"estimator": "x"}], "search": {"scoring": "auc"}})
    with pytest.raises(ConfigError, match=r"candidate 'lr': space names \['c'\].*'C'"):
        candidates_from_config([{"name": "lr", "estimator": "sklearn.linear_model.LogisticRegression",
                                 "space": {"c": [0.1, 1.0]}}])


def test_large_seeds_work() -> None:
    from coreset_spark.sampling import row_uniforms

    u = row_uniforms(np.arange(10), seed=2**62, level=3)
    assert ((0 <= u) & (u < 1)).all()


def test_cli_exits_2_with_a_message_for_a_bad_config(tmp_path, capsys) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("coreset: {size: -5}\n")
    assert cli_main(["run", "--config", str(config)]) == 2
    assert "coreset.size=-5" in capsys.readouterr().err
    assert cli_main(["run", "--config", str(tmp_path / "missing.yaml")]) == 2


def test_weighted_search_scores_with_weights() -> None:
    """Integer weights must give the same search as repeating rows: fit and score both weighted."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 2))
    y = (x[:, 0] + 0.5 * rng.normal(size=300) > 0).astype(int)
    w = rng.integers(1, 4, 300).astype(float)
    search = grid_search(LogisticRegression(), {"C": [0.01, 1.0]}, x, y, w, cv=3, seed=0)
    model = LogisticRegression(C=search.best_params_["C"]).fit(x, y, sample_weight=w)
    assert np.allclose(search.best_estimator_.coef_, model.coef_, atol=1e-6)
    # the weighted scorer differs from the unweighted one on these folds
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    plain = GridSearchCV(LogisticRegression(), {"C": [0.01, 1.0]}, scoring="neg_log_loss",
                         cv=StratifiedKFold(3, shuffle=True, random_state=0)).fit(x, y)
    assert not np.allclose(search.cv_results_["mean_test_score"], plain.cv_results_["mean_test_score"])


def test_the_sampling_modules_do_not_import_scikit_learn() -> None:
    """A Spark Python worker that only samples must not pay for scikit-learn, SciPy and pandas."""
    import subprocess
    import sys

    code = ("import sys, coreset_spark.tree, coreset_spark.spark.build, coreset_spark.encoding; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'pandas'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    import coreset_spark

    assert coreset_spark.CoresetParams(size=10).size == 10 and "build_tree" in dir(coreset_spark)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = coreset_spark.nothing  # type: ignore[attr-defined]
