"""The quality benchmark's comparison on a small real dataset: coreset and uniform sample of the
same size at every level, weights summing to the training rows, loss ratios against the full model."""

from __future__ import annotations

import math

import pytest

from coreset_spark.quality import run_experiment, summarise


def test_uniform_matches_coreset_size_at_every_level(spark, data_dir):
    cfg = {"dataset": "california_housing", "family": "linear", "params": {"ridge": 1.0}, "size": 18,
           "model": "ridge", "model_options": {"alpha": 1.0}}
    defaults = {"seeds": 2, "fanin": 4, "levels": 1, "partitions": 3, "test_fraction": 0.3}
    result = run_experiment(spark, "california_ridge", cfg, defaults, lambda _: None)
    runs = result["runs"]
    assert len(runs) == 2 * 2 * 2  # seeds x methods x levels
    for seed in (0, 1):
        for level in (0, 1):
            c, u = ([r for r in runs if (r["seed"], r["level"], r["method"]) == (seed, level, m)][0]
                    for m in ("coreset", "uniform"))
            assert c["rows"] == u["rows"] > 0
            for r in (c, u):
                assert r["weight_sum"] == pytest.approx(result["train_rows"], rel=1e-6)
                # the full-data ridge model minimises the objective the ratio measures (up to the tiny penalty)
                assert r["loss_ratio"] >= 0.999 and math.isfinite(r["loss_ratio"])
    # different seeds draw different uniform samples
    assert len({r["loss_ratio"] for r in runs if r["method"] == "uniform" and r["level"] == 0}) == 2
    summary = summarise(result)
    assert [row["level"] for row in summary] == [0, 1]
    assert summary[1]["coreset"]["rows"] > summary[0]["coreset"]["rows"]
