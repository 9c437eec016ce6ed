"""The Databricks notebooks: their source format, and every one run top to bottom in local Spark on
real Adult rows (the local fallback reads the widgets from CORESET_SPARK_WIDGET_* variables)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from coreset_spark.coreset import CoresetTree

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
ORDER = ["01_build_coreset.py", "02_train_and_tune.py", "03_clean_labels.py", "04_scheduled_update.py"]
SEPARATOR = "\n\n# COMMAND ----------\n\n"


def cells(path: Path) -> list[str]:
    return path.read_text().split(SEPARATOR)


def test_notebooks_are_in_databricks_source_format():
    assert [p.name for p in NOTEBOOKS] == ORDER
    for path in NOTEBOOKS:
        text = path.read_text()
        assert text.startswith("# Databricks notebook source\n"), path.name
        parts = cells(path)
        assert len(parts) >= 4, path.name
        assert text.count("# COMMAND ----------") == len(parts) - 1  # every separator has its blank lines
        first = parts[0].split("\n", 1)[1]
        assert first.startswith("# MAGIC %md\n# MAGIC # "), path.name  # a markdown title cell
        for part in parts:
            lines = [line for line in part.strip().splitlines() if line != "# Databricks notebook source"]
            magic = [line.startswith("# MAGIC") for line in lines]
            assert all(magic) or not any(magic), f"{path.name}: a cell mixes MAGIC lines and code"
        code = "\n".join(p for p in parts if "# MAGIC" not in p)
        compile(code, str(path), "exec")
        assert "commands.notebook_parameters(" in code and 'globals().get("dbutils")' in code
        calls = re.findall(r"commands\.(build|update|tune|evaluate|score|clean)\(", code)
        assert len(calls) == 1, f"{path.name} must call one job function, calls {calls}"
        assert "SparkSession.getActiveSession()" in code


def run_notebook(path: Path, config: str, overrides: list[str], monkeypatch) -> dict:
    """Execute the notebook as Databricks would, cell by cell in one namespace, without dbutils."""
    monkeypatch.setenv("CORESET_SPARK_WIDGET_CONFIG", str(ROOT / config))
    monkeypatch.setenv("CORESET_SPARK_WIDGET_OVERRIDES", "; ".join(overrides))
    namespace: dict = {"__name__": "__main__"}
    for i, cell in enumerate(cells(path)):
        exec(compile(cell, f"{path.name}[cell {i}]", "exec"), namespace)
    return namespace


def test_every_notebook_runs_top_to_bottom_on_small_real_data(spark, data_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    tree = str(tmp_path / "tree")
    common = [f"tree.path={tree}", f"output.path={out}"]
    build = run_notebook(ROOT / "notebooks" / ORDER[0], "conf/build.yaml", common + [
        "input.where=pmod(rid, 40) < 2", "input.partitions=2", "coreset.size=150", "coreset.fanin=4",
        "coreset.levels=1"], monkeypatch)
    assert build["report"]["tree"]["version"] == 0 and build["spark"] is spark  # the active session
    rows = build["report"]["tree"]["rows"]
    assert 2000 < rows < 2900  # 2/40 of Adult's 48,842 rows
    tune = run_notebook(ROOT / "notebooks" / ORDER[1], "conf/tune.yaml", common + [
        "holdout.where=pmod(rid, 40) = 2", "search.top=2",
        "candidates=[{name: logistic, estimator: sklearn.linear_model.LogisticRegression, params: {max_iter: 2000}, "
        "space: {C: [0.1, 1.0]}}]"], monkeypatch)
    assert len(tune["report"]["search"]["trials"]) == 2 and len(tune["report"]["finalists"]) == 2
    assert Path(tune["report"]["model"]).is_file()
    clean = run_notebook(ROOT / "notebooks" / ORDER[2], "conf/clean.yaml", common + [
        "tree.level=0", "review.n=10", "review.folds=3", "review.estimator=sklearn.linear_model.LogisticRegression"],
        monkeypatch)
    assert len(clean["report"]["suspicious"]) == 10 and clean["report"]["fixes"] is None
    update = run_notebook(ROOT / "notebooks" / ORDER[3], "conf/update.yaml", common + [
        "new_rows.where=pmod(rid, 40) = 3"], monkeypatch)
    added = update["report"]["added"]["rows"]
    assert update["report"]["changed"] and 900 < added < 1500 and update["report"]["tree"]["version"] == 1
    assert CoresetTree.load(spark, tree).stats.n_rows == rows + added
    printed = capsys.readouterr().out
    assert "[build] wrote tree" in printed and "[update] read new rows: dataset adult" in printed
    assert "no new rows" not in printed and "selected logistic" in printed
    reports = {p.name for p in out.iterdir()}
    assert {"build_report.json", "tune_report.json", "clean_report.json", "update_report.json",
            "suspicious_rows.csv", "model.joblib"} <= reports
    assert json.loads((out / "update_report.json").read_text())["tree"]["batches"] == 2


@pytest.mark.parametrize("name", ORDER)
def test_notebook_widgets_default_to_a_shipped_config(name):
    """On Databricks a notebook runs in its folder: the default config is ../conf/<job>.yaml."""
    match = re.search(r'"config": "\.\./(conf/\w+\.yaml)"', (ROOT / "notebooks" / name).read_text())
    assert match and (ROOT / match.group(1)).is_file()
