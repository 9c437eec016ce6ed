"""Tuning with Spark: the search as Spark tasks, Spark-side evaluation against scikit-learn's
metrics, predictions written as Delta, and the MLflow run's lineage."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import functions as F
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from coreset_spark import datasets
from coreset_spark.config import ConfigError, CoresetParams, DataSpec
from coreset_spark.job import split_train_test
from coreset_spark.metrics import full_proba
from coreset_spark.spark.build import build_tree
from coreset_spark.spark.evaluate import collect_rows, evaluate_many, validate_finalists
from coreset_spark.spark.frame import with_row_ids
from coreset_spark.spark.predict import predict_table, write_predictions
from coreset_spark.tuning import Candidate, tune


@pytest.fixture(scope="module")
def adult_tree(spark, data_dir):
    """A coreset tree of about 12,000 real Adult rows (categoricals one-hot), and a test split."""
    df, spec = datasets.load(spark, "adult", data_dir)
    df = with_row_ids(df.where(F.pmod(F.xxhash64(*df.columns), F.lit(4)) == 0), "rid")
    train, test = split_train_test(df, 0.3, 1)
    train, test = train.repartition(3).cache(), test.cache()
    spec = DataSpec(**{**spec.__dict__, "row_id": "rid"})
    tree = build_tree(train, spec, CoresetParams(size=600, family="logistic", seed=3, fanin=4, levels=1))
    yield tree, train, test
    train.unpersist()
    test.unpersist()


CANDIDATES = [Candidate("logistic", LogisticRegression(max_iter=3000), {"C": [0.01, 1.0]}),
              Candidate("tree", DecisionTreeClassifier(random_state=0), {"max_depth": [3, 6]})]


def test_search_as_spark_tasks_equals_the_local_search(spark, adult_tree):
    tree, _, _ = adult_tree
    local = tune(CANDIDATES, tree, scoring="roc_auc", cv=3)
    remote = tune(CANDIDATES, tree, scoring="roc_auc", cv=3, backend="spark", spark=spark)
    assert [t.params for t in local.trials] == [t.params for t in remote.trials]
    np.testing.assert_allclose([t.fold_scores for t in local.trials], [t.fold_scores for t in remote.trials],
                               rtol=1e-9)
    assert local.best.label() == remote.best.label()
    larger = tune(CANDIDATES, tree, level=1, scoring="roc_auc", cv=3)  # a lower level: more rows, no rebuild
    assert larger.rows == tree.level_sizes()[1] > local.rows
    optuna = tune(CANDIDATES, tree, method="optuna", n_iter=4, batch_size=2, backend="spark", spark=spark,
                  scoring="accuracy")
    assert len(optuna.trials) == 4


def test_spark_evaluation_equals_scikit_learn_metrics(adult_tree):
    tree, _, test = adult_tree
    c = tree.get_coreset(0)
    model = LogisticRegression(max_iter=3000).fit(c.x, c.y, sample_weight=c.weight)
    got = evaluate_many({"m": model}, test, tree)["m"]
    x, y, w = collect_rows(test, tree)
    proba = full_proba(model, x, len(tree.classes))
    pred = proba.argmax(axis=1)
    assert got["rows"] == pytest.approx(len(y))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), rel=1e-12)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=[0, 1]), rel=1e-9)
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred), rel=1e-12)
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred), rel=1e-12)
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred), rel=1e-12)
    assert got["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"), rel=1e-12)
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred), rel=1e-12)
    assert np.array_equal(np.asarray(got["confusion_matrix"]), skm.confusion_matrix(y, pred))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba[:, 1]), abs=2e-4)  # binned AUC


def test_validate_finalists_reports_cv_and_holdout(adult_tree):
    tree, _, test = adult_tree
    result = tune(CANDIDATES, tree, scoring="neg_log_loss", cv=3)
    rows = validate_finalists(result, test, tree, top=2)
    assert [r["rank"] for r in rows] == [1, 2]
    assert rows[0]["cv_score"] >= rows[1]["cv_score"]
    for r in rows:
        assert r["holdout_score"] == pytest.approx(-r["holdout"]["log_loss"])
        assert 0.0 < r["holdout"]["accuracy"] <= 1.0


def test_regression_search_and_evaluation(spark, data_dir):
    df, spec = datasets.load(spark, "california_housing", data_dir)
    df = with_row_ids(df, "rid")
    train, test = split_train_test(df, 0.3, 2)
    spec = DataSpec(**{**spec.__dict__, "row_id": "rid"})
    tree = build_tree(train.repartition(2), spec, CoresetParams(size=800, family="linear", seed=1, fanin=4, levels=1))
    result = tune([Candidate("ridge", Ridge(), {"alpha": [0.1, 10.0]}),
                   Candidate("tree", DecisionTreeRegressor(random_state=0), {"max_depth": [4]})],
                  tree, scoring="rmse", backend="spark", spark=spark)
    assert result.scoring == "neg_root_mean_squared_error" and len(result.trials) == 3
    model = result.best_estimator_
    got = evaluate_many({"m": model}, test, tree)["m"]
    x, t, _ = collect_rows(test, tree)
    pred = model.predict(x)
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(t, pred), rel=1e-9)
    assert got["r2"] == pytest.approx(skm.r2_score(t, pred), rel=1e-9)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(t, pred), rel=1e-9)


def test_predictions_written_as_delta(spark, adult_tree, tmp_path):
    tree, _, test = adult_tree
    c = tree.get_coreset(0)
    model = LogisticRegression(max_iter=3000).fit(c.x, c.y, sample_weight=c.weight)
    path = str(tmp_path / "scores")
    info = write_predictions(predict_table(model, test.drop("income"), tree), path)
    assert info["rows"] == test.count() and info["version"] == 0
    written = spark.read.format("delta").load(path).toPandas().sort_values("rid")
    assert list(written.columns) == ["rid", "prediction", "probability"]
    x, y, _ = collect_rows(test, tree)
    ids = np.sort(test.select("rid").toPandas()["rid"].to_numpy())
    expected = test.orderBy("rid").toPandas()
    assert np.array_equal(written["rid"].to_numpy(), ids)
    labels = np.asarray(tree.classes, dtype=object)
    x_sorted, _, _ = collect_rows(test.orderBy("rid").coalesce(1), tree)
    assert written["prediction"].tolist() == labels[model.predict(x_sorted)].tolist()
    assert set(written["prediction"]) <= set(expected["income"])
    np.testing.assert_allclose(np.stack(written["probability"].to_numpy()), model.predict_proba(x_sorted), rtol=1e-12)
    again = write_predictions(predict_table(model, test, tree, keep=["rid", "age"], probability=False), path)
    assert again["version"] == 1 and spark.read.format("delta").load(path).columns == ["rid", "age", "prediction"]
    with pytest.raises(ConfigError, match="lacks the feature column"):
        predict_table(model, test.drop("age"), tree)


def test_mlflow_run_holds_the_lineage(adult_tree, tmp_path):
    import mlflow

    from coreset_spark.tracking import log_search

    tree, _, test = adult_tree
    result = tune(CANDIDATES[:1], tree, scoring="roc_auc")
    coreset = tree.get_coreset(0)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = log_search(result, coreset, tree, validation=validate_finalists(result, test, tree, top=1),
                        tracking_uri=uri, experiment="test")
    run = mlflow.MlflowClient(tracking_uri=uri).get_run(run_id)
    tags = run.data.tags
    assert tags["coreset.seed"] == "3" and tags["coreset.family"] == "logistic"
    assert tags["coreset.source.format"] if "coreset.source.format" in tags else True
    assert tags["coreset.rows"] == str(len(coreset)) and float(tags["coreset.weight_total"]) == pytest.approx(
        tree.stats.weight_total)
    assert run.data.params["best.candidate"] == "logistic"
    assert run.data.metrics["cv_score"] == pytest.approx(result.best.score)
    assert "finalist1.holdout.roc_auc" in run.data.metrics
    artifacts = {a.path for a in mlflow.MlflowClient(tracking_uri=uri).list_artifacts(run_id, "coreset")}
    assert {"coreset/coreset.parquet", "coreset/trials.json", "coreset/validation.json"} <= artifacts
    model = mlflow.sklearn.load_model(f"runs:/{run_id}/model")
    np.testing.assert_allclose(model.predict_proba(coreset.x), result.best_estimator_.predict_proba(coreset.x))
