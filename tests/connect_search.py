"""Run a coreset search as Spark tasks through Spark Connect (a local Connect server), and the
same search locally; print whether they agree (run by test_spark_connect.py in its own process)."""

from __future__ import annotations

import json
import sys

import numpy as np
from pyspark.sql import SparkSession
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from coreset_spark.tuning import Candidate, tune


def main() -> None:
    spark = SparkSession.builder.remote("local[2]").getOrCreate()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 3))
    y = (x[:, 0] + 0.5 * rng.normal(size=600) > 0).astype(int)
    w = rng.uniform(1, 50, 600)
    candidates = [Candidate("logistic", LogisticRegression(), {"C": [0.01, 1.0]}),
                  Candidate("tree", DecisionTreeClassifier(random_state=0), {"max_depth": [2, 5]})]
    remote = tune(candidates, (x, y, w), scoring="neg_log_loss", backend="spark", spark=spark)
    local = tune(candidates, (x, y, w), scoring="neg_log_loss")
    print(json.dumps({"session": type(spark).__module__, "best": remote.best.label(), "local_best": local.best.label(),
                      "same_scores": [t.fold_scores for t in remote.trials] == [t.fold_scores for t in local.trials]}))
    spark.stop()


if __name__ == "__main__":
    sys.exit(main())
