# Databricks notebook source
# MAGIC %md
# MAGIC # Scheduled update: add new rows to the tree
# MAGIC
# MAGIC Loads the saved tree, adds the new rows (with `new_rows.since_version: true`, the rows its source
# MAGIC Delta table gained since the version the tree records) as a batch of new leaves, recomputes only
# MAGIC their path and the root, and saves the changed nodes in one Delta transaction. Schedule it as a job
# MAGIC (resources/coreset_notebooks.job.yml, or the wheel task in resources/coreset_update.job.yml). The
# MAGIC work is `coreset_spark.commands.update`, the same as `coreset-spark update`.
# MAGIC
# MAGIC Parameters: `config` (`../conf/update.yaml`, or `../conf/databricks/update.yaml`) and `overrides`.

# COMMAND ----------

from pyspark.sql import SparkSession

from coreset_spark import commands

params = commands.notebook_parameters({"config": "../conf/update.yaml", "overrides": ""}, globals().get("dbutils"))
config = commands.notebook_config(params)
spark = SparkSession.getActiveSession()

# COMMAND ----------

report = commands.update(config, spark=spark)

# COMMAND ----------

# MAGIC %md
# MAGIC ## What was added

# COMMAND ----------

import pandas as pd

show = globals().get("display", print)
tree = report["tree"]
show(pd.DataFrame(sorted(tree["level_sizes"].items()), columns=["level", "rows"]))
if report["changed"]:
    print(f"batch {report['added']['batch']}: {report['added']['rows']} rows; tree {tree['path']} now at Delta version "
          f"{tree['version']} (was {report['previous_version']})")
else:
    print(f"no new rows; the tree stays at version {tree['version']}")
