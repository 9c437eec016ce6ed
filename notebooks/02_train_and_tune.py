# Databricks notebook source
# MAGIC %md
# MAGIC # Train and tune on a coreset
# MAGIC
# MAGIC Loads the saved tree, searches the candidate models of the config on one level (weighted fits,
# MAGIC weighted scores, weight-balanced folds), re-scores the finalists on a hold-out table in Spark and
# MAGIC saves the chosen model. The work is `coreset_spark.commands.tune`, the same as `coreset-spark tune`.
# MAGIC
# MAGIC Parameters: `config` (`../conf/tune.yaml`, or `../conf/databricks/tune.yaml`) and `overrides`
# MAGIC (`section.key=value` separated by `;`, e.g. `tree.level=1; search.backend=spark`).

# COMMAND ----------

from pyspark.sql import SparkSession

from coreset_spark import commands

params = commands.notebook_parameters({"config": "../conf/tune.yaml", "overrides": ""}, globals().get("dbutils"))
config = commands.notebook_config(params)
spark = SparkSession.getActiveSession()

# COMMAND ----------

report = commands.tune(config, spark=spark)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Every configuration (cross-validated on the coreset), the finalists on the hold-out table, the choice

# COMMAND ----------

import pandas as pd

show = globals().get("display", print)
show(pd.DataFrame(report["search"]["trials"])[["candidate", "params", "cv_score", "cv_std", "fit_seconds"]])
if report["finalists"]:
    show(pd.DataFrame(report["finalists"])[["rank", "candidate", "params", "cv_score", "holdout_score"]])
print(f"selected {report['selected']['candidate']} {report['selected']['params']} by {report['select']}; "
      f"model saved to {report['model']}")
