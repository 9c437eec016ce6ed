#!/usr/bin/env bash
# Package coreset_spark for spark-submit (`make package`):
#   dist/coreset_spark.zip       the package, for --py-files
#   dist/coreset_env.tar.gz      a packed venv with the native dependencies, for
#                                --archives dist/coreset_env.tar.gz#environment
#                                with spark.pyspark.python=./environment/bin/python
#   dist/env-requirements.txt    the pinned versions in it (the project venv's own versions)
#
# The environment is a plain `python -m venv` venv built from the same base Python as .venv and packed
# with venv-pack (installed into a separate tool venv, dist/tools). A packed venv does NOT contain
# Python itself: bin/python is a symlink to the base interpreter, so every executor machine needs that
# same Python (same version, same path, here the one in .venv/pyvenv.cfg) and the same OS and CPU
# architecture (the wheels are native). PySpark is not in it: the cluster's Spark provides pyspark.zip.
#
# Idempotent: the environment is rebuilt only when the pinned requirements change.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
DIST=${DIST:-dist}
BASE_PYTHON=${BASE_PYTHON:-$(sed -n 's/^executable *= *//p' "$VENV/pyvenv.cfg")}
if [[ ! -x "$BASE_PYTHON" ]]; then
  echo "package.sh: BASE_PYTHON='$BASE_PYTHON' is not an executable Python; set BASE_PYTHON to the" \
       "interpreter $VENV was made from (see $VENV/pyvenv.cfg) or run 'make setup'" >&2
  exit 2
fi
mkdir -p "$DIST"

"$VENV/bin/python" -m coreset_spark.submit zip "$DIST/coreset_spark.zip"

"$VENV/bin/python" -m coreset_spark.submit requirements > "$DIST/env-requirements.new"
if [[ -f "$DIST/coreset_env.tar.gz" ]] && cmp -s "$DIST/env-requirements.new" "$DIST/env-requirements.txt"; then
  rm "$DIST/env-requirements.new"
  echo "$DIST/coreset_env.tar.gz is up to date ($(wc -l < "$DIST/env-requirements.txt") pinned packages)"
else
  rm -rf "$DIST/env" "$DIST/coreset_env.tar.gz"
  "$BASE_PYTHON" -m venv "$DIST/env"
  # --no-deps: the list is the complete pinned closure; pip check below proves it is consistent.
  "$DIST/env/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r "$DIST/env-requirements.new"
  "$DIST/env/bin/python" -m pip check --disable-pip-version-check
  test -x "$DIST/tools/bin/venv-pack" || {
    "$BASE_PYTHON" -m venv "$DIST/tools"
    "$DIST/tools/bin/python" -m pip install -q --disable-pip-version-check venv-pack
  }
  "$DIST/tools/bin/venv-pack" -p "$DIST/env" -o "$DIST/coreset_env.tar.gz" --force --quiet
  mv "$DIST/env-requirements.new" "$DIST/env-requirements.txt"
fi

# Smoke check: unpack the archive elsewhere, as an executor does, and import the package from the zip
# with only the packed Python and Spark's own pyspark.zip/py4j on the path.
CHECK=$(mktemp -d)
trap 'rm -rf "$CHECK"' EXIT
tar -xzf "$DIST/coreset_env.tar.gz" -C "$CHECK"
SPARK_LIB=$("$VENV/bin/python" -c 'import pyspark, os; print(os.path.join(os.path.dirname(pyspark.__file__), "python", "lib"))')
ZIP="$PWD/$DIST/coreset_spark.zip"
(cd "$CHECK" && PYTHONPATH="$ZIP:$(ls "$SPARK_LIB"/*.zip | paste -sd:)" ./bin/python -c '
import sys, coreset_spark.tree, coreset_spark.spark.build, numpy, pyarrow, sklearn
assert coreset_spark.__file__.endswith("coreset_spark.zip/coreset_spark/__init__.py"), coreset_spark.__file__
print(f"packed env OK: python {sys.version.split()[0]}, numpy {numpy.__version__}, pyarrow {pyarrow.__version__}, "
      f"scikit-learn {sklearn.__version__}; coreset_spark from {coreset_spark.__file__}")')
ls -l "$DIST/coreset_spark.zip" "$DIST/coreset_env.tar.gz"
