# The two commands: `make demo` and `make test`. Each sets itself up idempotently.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
JARS   := .jars
# Real datasets: ../shared/data beside the project when present, else the download cache.
DATA_DIR ?= $(abspath ../shared/data)
export CORESET_SPARK_DATA_DIR ?= $(if $(wildcard $(DATA_DIR)/README.md),$(DATA_DIR),)
export CORESET_SPARK_JARS_DIR := $(abspath $(JARS))

.PHONY: setup jars demo test lint typecheck benchmark benchmark-quality benchmark-tree benchmark-tuning clean \
        package cluster-start cluster-stop cluster-status cluster-submit cluster-check

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ is needed, found " + sys.version'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

# Delta Lake's JVM jars, resolved with Maven into .jars/ (never committed).
jars: $(JARS)/.resolved

$(JARS)/.resolved: conf/delta/pom.xml
	mkdir -p $(JARS)
	mvn -q -f conf/delta/pom.xml org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
	    -DoutputDirectory=$(abspath $(JARS)) -DincludeGroupIds=io.delta \
	    -DexcludeArtifactIds=delta-kernel-api,delta-kernel-defaults,delta-kernel-unitycatalog
	touch $@

demo: setup jars
	$(BIN)/coreset-spark run --config conf/demo.yaml

test: setup jars
	$(BIN)/ruff check coreset_spark jobs tests
	$(BIN)/mypy coreset_spark jobs
	$(BIN)/python -m pytest -q --doctest-modules coreset_spark tests

lint: setup
	$(BIN)/ruff check coreset_spark jobs tests
	$(BIN)/mypy coreset_spark jobs

benchmark: setup jars
	$(BIN)/python jobs/benchmark_logistic.py --config conf/benchmark_logistic.yaml

benchmark-quality: setup jars
	$(BIN)/python jobs/benchmark_quality.py --config conf/benchmark_quality.yaml

benchmark-tree: setup jars
	$(BIN)/python jobs/benchmark_tree.py --config conf/benchmark_tree.yaml

benchmark-tuning: setup jars
	$(BIN)/python jobs/benchmark_tuning.py --config conf/benchmark_tuning.yaml

# spark-submit packaging and a standalone cluster on this machine (scripts/; outputs in dist/, output/cluster/).
package: setup
	scripts/package.sh

cluster-start: setup
	scripts/cluster_start.sh

cluster-stop:
	scripts/cluster_stop.sh

cluster-status: setup
	$(BIN)/python -m coreset_spark.cluster status

# The main job on the running cluster with the packaged library (make package cluster-start first).
cluster-submit: package jars
	scripts/submit.sh spark://127.0.0.1:7077 jobs/main_job.py run --config conf/demo.yaml \
	    --set spark.master=spark://127.0.0.1:7077 --set output.path=$(abspath output/cluster/standalone)

# Local vs cluster coreset, executor killed mid-build, job killed mid-save: output/cluster/cluster_check.{json,md}.
cluster-check: package jars
	$(BIN)/python jobs/cluster_check.py

clean:
	rm -rf $(VENV) $(JARS) output spark-warehouse dist
