# Databricks notebook source
# MAGIC %md
# MAGIC # Clean labels
# MAGIC
# MAGIC Scores every sampled row of the tree by how badly a weighted model that never saw it explains its
# MAGIC label, and lists the most suspicious rows for review. After the review, write the fixes to a YAML
# MAGIC file, `{remove: [row ids], targets: {row id: new label}, seen: [row ids]}`, and run this notebook
# MAGIC again with `fixes.file=<that file>`: the fixes go to the tree's source Delta table (one transaction
# MAGIC each) and to the tree (only the leaves holding those rows and their paths are recomputed), the
# MAGIC reviewed rows are not listed again. The work is `coreset_spark.commands.clean` (`coreset-spark clean`).
# MAGIC
# MAGIC Parameters: `config` (`../conf/clean.yaml`) and `overrides` (e.g. `review.per_class={"<=50K": 10, ">50K": 10}`).

# COMMAND ----------

from pyspark.sql import SparkSession

from coreset_spark import commands

params = commands.notebook_parameters({"config": "../conf/clean.yaml", "overrides": ""}, globals().get("dbutils"))
config = commands.notebook_config(params)
spark = SparkSession.getActiveSession()

# COMMAND ----------

report = commands.clean(config, spark=spark)

# COMMAND ----------

# MAGIC %md
# MAGIC ## The rows to review, most suspicious first

# COMMAND ----------

import pandas as pd

show = globals().get("display", print)
show(pd.DataFrame(report["suspicious"]))
print(f"fixes applied: {report['fixes']}; list written to {report['suspicious_file']}")
