"""The main job end to end on real data (Adult, 48,842 rows, with categoricals and '?')."""

from __future__ import annotations

import json

import pytest

from coreset_spark.coreset import read_saved_level, saved_lineage
from coreset_spark.job import run_main_job


def test_main_job_on_adult(spark, data_dir, tmp_path):
    config = {
        "input": {"dataset": "adult", "partitions": 4},
        "split": {"test_fraction": 0.3, "seed": 1},
        "coreset": {"size": 600, "seed": 3, "fanin": 4},
        "model": {"penalty": "none", "max_iter": 500, "grid": {"C": [0.1, 10.0]}, "cv_folds": 3},
        "output": {"path": str(tmp_path / "out")},
    }
    messages: list[str] = []
    report = run_main_job(config, spark=spark, progress=messages.append)
    assert report["rows"]["train"] + report["rows"]["test"] == 48842
    assert abs(report["rows"]["test"] / 48842 - 0.3) < 0.01  # unique row ids: an exact 70/30 split
    assert set(report["models"]) == {"coreset", "uniform", "full", "coreset_tuned"}
    full = report["models"]["full"]
    assert full["loss_ratio"] == pytest.approx(1.0)
    for name, entry in report["models"].items():
        assert entry["loss_ratio"] > 0.999, name  # the full-data model is the optimum of this loss
        assert entry["test"]["rows"] == report["rows"]["test"]
        assert 0.5 < entry["test"]["roc_auc"] <= 1.0
    assert report["models"]["coreset"]["test"]["accuracy"] > full["test"]["accuracy"] - 0.03
    assert report["coreset"]["weight_sum"] == pytest.approx(report["rows"]["train"])
    assert report["grid_search"]["best_params"]["C"] in (0.1, 10.0)
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["coreset"]["root_rows"] == report["coreset"]["root_rows"]
    assert "loss ratio" in (tmp_path / "out" / "report.md").read_text()
    root = read_saved_level(spark, report["coreset"]["path"], 0)
    assert root.count() == report["coreset"]["root_rows"]
    assert saved_lineage(spark, report["coreset"]["path"])["source"]["dataset"] == "adult"
    assert any("build coreset done" in m for m in messages)
    levels = report["by_level"]  # every level of both trees, evaluated on the test split
    assert {"coreset@0", "uniform@0"} <= set(levels) and len(levels) >= 4
    assert levels["coreset@1"]["rows"] > levels["coreset@0"]["rows"]
    page = (tmp_path / "out" / "report.html").read_text()
    for picture in ("metric_vs_size", "weights", "class_counts", "stages", "build_stages"):
        assert (tmp_path / "out" / f"{picture}.png").stat().st_size > 5000
    assert page.count("data:image/png;base64,") == 5 and "coreset_tuned" in page
