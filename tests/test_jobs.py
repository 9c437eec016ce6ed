"""The batch jobs end to end on real Adult rows in real Delta tables: build, update, tune, evaluate,
score, clean (coreset_spark.commands), and the exit codes of the command line and of jobs/*.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from pyspark.sql import functions as F

from coreset_spark import commands, datasets
from coreset_spark.cli import main as cli_main
from coreset_spark.config import ConfigError
from coreset_spark.coreset import CoresetTree
from coreset_spark.spark.frame import with_row_ids
from coreset_spark.spark.store import table_version

ROOT = Path(__file__).resolve().parents[1]
QUIET = None  # progress=None: the jobs print nothing in tests (the CLI test below checks the printing)


@pytest.fixture(scope="module")
def work(spark, data_dir, tmp_path_factory):
    """About 3,000 real Adult rows with an id column `rid` as Delta tables: the source the tree is built
    from (70%), a hold-out (20%), and 10% kept back as rows that arrive later."""
    df, _ = datasets.load(spark, "adult", data_dir)
    df = with_row_ids(df.where(F.pmod(F.xxhash64(*df.columns), F.lit(16)) == 0), "rid").cache()
    root = tmp_path_factory.mktemp("jobs")
    paths = {name: str(root / name) for name in ("source", "holdout", "tree", "reports", "predictions")}
    bucket = F.pmod(F.col("rid"), F.lit(10))
    df.where(bucket < 7).write.format("delta").save(paths["source"])
    df.where(bucket >= 8).write.format("delta").save(paths["holdout"])
    later = df.where(bucket == 7).cache()
    paths["later_rows"] = later.count()
    yield {**paths, "root": root, "later": later, "rows": df.where(bucket < 7).count(),
           "holdout_rows": df.where(bucket >= 8).count()}
    later.unpersist()
    df.unpersist()


def build_config(work) -> dict:
    return {"input": {"format": "delta", "path": work["source"], "partitions": 3},
            "data": {"target": "income", "row_id": "rid"},
            "coreset": {"size": 200, "seed": 2, "fanin": 4, "levels": 1},
            "tree": {"path": work["tree"]}, "output": {"path": work["reports"]}}


def tune_config(work, **search) -> dict:
    return {"tree": {"path": work["tree"]},
            "search": {"scoring": "roc_auc", "cv": 3, "top": 2, **search},
            "candidates": [
                {"name": "logistic", "estimator": "sklearn.linear_model.LogisticRegression",
                 "params": {"max_iter": 2000}, "space": {"C": [0.01, 1.0]}},
                {"name": "tree", "estimator": "sklearn.tree.DecisionTreeClassifier",
                 "params": {"random_state": 0}, "space": {"max_depth": [3, 6]}}],
            "holdout": {"format": "delta", "path": work["holdout"]},
            "tracking": {"mlflow": True, "experiment": "jobs-test", "log_model": False},  # the model file is tested
            "output": {"path": work["reports"]}}


@pytest.fixture(scope="module")
def built(spark, work):
    return commands.build(build_config(work), spark=spark, progress=QUIET)


@pytest.fixture(scope="module")
def tuned(spark, work, built):
    return commands.tune(tune_config(work), spark=spark, progress=QUIET)


def test_build_reads_delta_and_saves_the_tree(spark, work, built):
    assert built["read"][0]["what"] == "input" and built["read"][0]["version"] == 0
    assert built["read"][0]["rows"] == work["rows"]
    tree = CoresetTree.load(spark, work["tree"])
    assert built["tree"]["version"] == tree.store.version == 0
    assert built["tree"]["level_sizes"] == {int(k): v for k, v in tree.level_sizes().items()}
    assert tree.stats.n_rows == work["rows"] and tree.spec.row_id == "rid"
    assert tree.source == {"format": "delta", "path": work["source"], "version": 0}
    assert tree.get_coreset(0).weight.sum() == pytest.approx(work["rows"], rel=1e-9)
    assert {"read input", "build coreset tree", "save tree", "total"} <= set(built["seconds"])
    on_disk = json.loads((Path(work["reports"]) / "build_report.json").read_text())
    assert on_disk["tree"]["path"] == work["tree"] and on_disk["wrote"][0]["version"] == 0


def test_tune_validates_finalists_and_saves_the_chosen_model(work, tuned):
    import mlflow

    assert len(tuned["search"]["trials"]) == 4 and tuned["search"]["scoring"] == "roc_auc"
    finalists = tuned["finalists"]
    assert [f["rank"] for f in finalists] == [1, 2]
    assert finalists[0]["cv_score"] >= finalists[1]["cv_score"]
    best_on_holdout = max(finalists, key=lambda f: f["holdout_score"])
    assert (tuned["selected"]["candidate"], tuned["selected"]["params"]) == \
        (best_on_holdout["candidate"], best_on_holdout["params"])
    for f in finalists:  # every row of the hold-out table, scored in Spark
        assert f["holdout"]["rows"] == work["holdout_rows"]
        assert f["holdout_score"] == pytest.approx(f["holdout"]["roc_auc"]) and 0.6 < f["holdout_score"] <= 1.0
    bundle = commands.load_model(tuned["model"])
    assert bundle["candidate"] == tuned["selected"]["candidate"] and bundle["tree"] == \
        {"path": work["tree"], "version": 0, "level": 0}
    assert bundle["classes"] == ["<=50K", ">50K"]
    run = mlflow.MlflowClient(tracking_uri=tuned["mlflow"]["tracking_uri"]).get_run(tuned["mlflow"]["run_id"])
    assert run.data.tags["coreset.tree.path"] == work["tree"] and run.data.tags["coreset.source.version"] == "0"
    assert tuned["mlflow"]["tracking_uri"] == f"sqlite:///{Path(work['reports']).resolve() / 'mlflow.db'}"


def test_evaluate_through_the_cli_matches_the_tuning_hold_out(work, tuned, tmp_path):
    config = {"models": {"tuned": tuned["model"]}, "table": {"format": "delta", "path": work["holdout"]},
              "output": {"path": str(tmp_path)}}
    path = tmp_path / "evaluate.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli_main(["evaluate", "--config", str(path)]) == 0  # the active test session is reused
    report = json.loads((tmp_path / "evaluate_report.json").read_text())
    metrics = report["metrics"]["tuned"]
    chosen = next(f for f in tuned["finalists"] if f["candidate"] == tuned["selected"]["candidate"]
                  and f["params"] == tuned["selected"]["params"])
    for key in ("accuracy", "log_loss", "roc_auc", "rows"):  # the same model on the same table
        assert metrics[key] == pytest.approx(chosen["holdout"][key], rel=1e-12)
    assert report["read"][1]["what"] == "tree" and report["read"][1]["version"] == 0
    assert report["read"][2]["what"] == "table" and report["read"][2]["version"] == 0


def test_score_writes_predictions_that_agree_with_evaluation(spark, work, tuned):
    config = {"model": {"path": tuned["model"]}, "table": {"format": "delta", "path": work["holdout"]},
              "predictions": {"path": work["predictions"]}, "output": {"path": work["reports"]}}
    report = commands.score(config, spark=spark, progress=QUIET)
    info = report["predictions"]
    holdout = spark.read.format("delta").load(work["holdout"])
    assert info["version"] == 0 and info["rows"] == holdout.count()
    written = spark.read.format("delta").load(work["predictions"])
    assert written.columns == ["rid", "prediction", "probability"]
    assert written.select("rid").distinct().count() == info["rows"]
    # predicted-class counts = the column sums of the confusion matrix from the Spark evaluation
    confusion = np.asarray(next(f for f in tuned["finalists"] if f["candidate"] == tuned["selected"]["candidate"]
                                and f["params"] == tuned["selected"]["params"])["holdout"]["confusion_matrix"])
    counts = {r["prediction"]: r["count"] for r in written.groupBy("prediction").count().collect()}
    assert [counts.get(c, 0) for c in ["<=50K", ">50K"]] == confusion.sum(axis=0).astype(int).tolist()


def test_update_adds_the_rows_the_source_gained(spark, work, built, tuned):
    work["later"].write.format("delta").mode("append").save(work["source"])
    config = {"tree": {"path": work["tree"]}, "new_rows": {"since_version": True}, "output": {"path": work["reports"]}}
    report = commands.update(config, spark=spark, progress=QUIET)
    assert report["changed"] and report["added"]["rows"] == work["later_rows"]
    assert report["previous_version"] == 0 and report["tree"]["version"] == 1
    tree = CoresetTree.load(spark, work["tree"])
    assert tree.stats.n_rows == work["rows"] + work["later_rows"]
    assert tree.source["version"] == table_version(spark, work["source"]) == 1
    assert tree.get_coreset(0).weight.sum() == pytest.approx(work["rows"] + work["later_rows"], rel=1e-9)
    again = commands.update(config, spark=spark, progress=QUIET)  # nothing new: no new tree version
    assert not again["changed"] and again["tree"]["version"] == 1
    same = {"tree": {"path": work["tree"]}, "new_rows": {"format": "delta", "path": work["source"], "version": 0}}
    with pytest.raises(ConfigError, match="already in the tree as batch 0"):
        commands.update(same, spark=spark, progress=QUIET)


def test_clean_applies_fixes_to_table_and_tree_then_lists_other_rows(spark, work, built, tuned, tmp_path):
    tree_before = CoresetTree.load(spark, work["tree"])
    sampled = tree_before.get_coreset(1)
    ids = [int(i) for i in sampled.row_id[::97][:6]]  # six rows the tree holds, spread over its leaves
    labels = dict(zip(sampled.row_id.tolist(), sampled.labels()))
    flip = {"<=50K": ">50K", ">50K": "<=50K"}
    fixes = {"remove": ids[:2], "targets": {str(i): flip[labels[i]] for i in ids[2:4]}, "seen": ids[4:6]}
    (tmp_path / "fixes.yaml").write_text(yaml.safe_dump(fixes))
    before_version = table_version(spark, work["source"])
    before_rows = spark.read.format("delta").load(work["source"]).count()
    config = {"tree": {"path": work["tree"], "level": 1},
              "review": {"n": 40, "folds": 3, "estimator": "sklearn.linear_model.LogisticRegression",
                         "params": {"max_iter": 2000}},
              "fixes": {"file": str(tmp_path / "fixes.yaml")}, "output": {"path": str(tmp_path)}}
    report = commands.clean(config, spark=spark, progress=QUIET)
    source = spark.read.format("delta").load(work["source"])
    assert source.count() == before_rows - 2 and source.where(F.col("rid").isin(ids[:2])).count() == 0
    relabeled = {r["rid"]: r["income"] for r in source.where(F.col("rid").isin(ids[2:4])).collect()}
    assert relabeled == {i: flip[labels[i]] for i in ids[2:4]}
    assert table_version(spark, work["source"]) == before_version + 2  # one DELETE, one MERGE
    assert report["fixes"]["table_version"] == before_version + 2
    tree = CoresetTree.load(spark, work["tree"])
    assert tree.store.version == report["fixes"]["tree_version"] == tree_before.store.version + 1
    assert tree.stats.n_rows == tree_before.stats.n_rows - 2
    assert set(tree.seen.column("row_id").to_pylist()) == set(ids[2:6])
    listed = report["suspicious"]
    assert len(listed) == 40 and not {r["row_id"] for r in listed} & set(ids)  # removed: gone; reviewed: skipped
    assert [r["score"] for r in listed] == sorted((r["score"] for r in listed), reverse=True)
    expected = dict(tree_before.stats.target_counts)  # class counts follow the fixes
    for i in ids[:4]:
        expected[labels[i]] -= 1.0
    for i in ids[2:4]:
        expected[flip[labels[i]]] += 1.0
    assert tree.stats.target_counts == pytest.approx(expected)
    assert (tmp_path / "suspicious_rows.csv").read_text().count("\n") == len(listed) + 1


def test_bad_configs_exit_2_naming_the_key(spark, work, built, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**build_config(work), "coreset": {"size": 300, "sise": 5}}))
    # a separate process, as a scheduler runs it: refused before Spark starts
    done = subprocess.run([str(ROOT / ".venv/bin/coreset-spark"), "build", "--config", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "unknown key(s) ['sise'] in section 'coreset'" in done.stderr
    done = subprocess.run([sys.executable, str(ROOT / "jobs/tune.py"), "--config", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "unknown section(s) ['coreset', 'data', 'input']" in done.stderr
    where = tmp_path / "where.yaml"
    where.write_text(yaml.safe_dump({**build_config(work), "input": {"format": "delta", "path": work["source"],
                                                                     "where": "no_such_column > 1"}}))
    assert cli_main(["build", "--config", str(where)]) == 2
    err = capsys.readouterr().err
    assert "input.where='no_such_column > 1' is not a valid filter" in err and "rid" in err
    config = tmp_path / "update.yaml"
    config.write_text(yaml.safe_dump({"tree": {"path": str(tmp_path / "no_tree")}}))
    assert cli_main(["update", "--config", str(config), "--set", "new_rows.since_version=true"]) == 2
    assert "no saved coreset tree" in capsys.readouterr().err
    assert cli_main(["score", "--config", str(config), "--set", "predictions.mode=append"]) == 2
    assert "the score config needs section 'model'" in capsys.readouterr().err
