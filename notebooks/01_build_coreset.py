# Databricks notebook source
# MAGIC %md
# MAGIC # Build a coreset tree from a table
# MAGIC
# MAGIC Reads the table named in the config, builds the weighted coreset tree in Spark and saves it as
# MAGIC a Delta table (one transaction, lineage in the commit). The work is `coreset_spark.commands.build`,
# MAGIC the same as `coreset-spark build`.
# MAGIC
# MAGIC Parameters (widgets): `config`, a YAML file (relative to this notebook's folder; `../conf/build.yaml`
# MAGIC builds 60% of UCI Adult, `../conf/databricks/build.yaml` a Delta table), and `overrides`,
# MAGIC `section.key=value` settings separated by `;`, e.g. `input.path=/Volumes/main/default/events; coreset.size=5000`.
# MAGIC Outside Databricks the widgets are the environment variables `CORESET_SPARK_WIDGET_CONFIG` and
# MAGIC `CORESET_SPARK_WIDGET_OVERRIDES`.

# COMMAND ----------

from pyspark.sql import SparkSession

from coreset_spark import commands

params = commands.notebook_parameters({"config": "../conf/build.yaml", "overrides": ""}, globals().get("dbutils"))
config = commands.notebook_config(params)
spark = SparkSession.getActiveSession()  # Databricks' session; None: the job starts one from the config

# COMMAND ----------

report = commands.build(config, spark=spark)

# COMMAND ----------

# MAGIC %md
# MAGIC ## The tree: rows per level (0 is the root, the smallest coreset)

# COMMAND ----------

import pandas as pd

show = globals().get("display", print)
tree = report["tree"]
show(pd.DataFrame(sorted(tree["level_sizes"].items()), columns=["level", "rows"]))
print(f"saved to {tree['path']} (Delta version {tree['version']}); {tree['rows']} input rows, classes {tree['classes']}")
print("read:", report["read"])
