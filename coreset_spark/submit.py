"""spark-submit packaging: the library as a ``--py-files`` zip, the native dependencies as a packed
environment for ``--archives``, and the spark-submit command that uses both.

A cluster's executors need two things to run the coreset build: the ``coreset_spark`` package (pure
Python, shipped as ``dist/coreset_spark.zip`` with ``--py-files``) and its runtime dependencies
(``install_requires`` of ``setup.cfg`` and everything they need, at the versions this venv has: NumPy,
PyArrow, pandas, scikit-learn, SciPy, PyYAML, matplotlib, ...), shipped as a packed virtual environment
(``dist/coreset_env.tar.gz``, ``--archives dist/coreset_env.tar.gz#environment``, run by the executors as
``./environment/bin/python``). PySpark itself is left out of the environment: every Spark installation
puts its own ``pyspark.zip`` on the Python workers' path.

``scripts/package.sh`` (``make package``) builds both; this module holds the pieces it calls::

    python -m coreset_spark.submit zip dist/coreset_spark.zip      # the package, deterministic zip
    python -m coreset_spark.submit requirements                    # pinned runtime closure, one a line
    python -m coreset_spark.submit spark-submit --master spark://127.0.0.1:7077 jobs/main_job.py run ...

>>> submit_command("jobs/main_job.py", ["run"], master="spark://127.0.0.1:7077", py_files="dist/coreset_spark.zip",
...                env_archive="dist/coreset_env.tar.gz", jars=["a.jar"], driver_python="/venv/bin/python")[:5]
['spark-submit', '--master', 'spark://127.0.0.1:7077', '--py-files', 'dist/coreset_spark.zip']
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import sys
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from coreset_spark.config import ConfigError

# The driver-side and JVM-side packages: the cluster's Spark provides pyspark, and delta-spark's Python
# API is used on the driver only (its JVM half travels with --jars).
NOT_SHIPPED = frozenset({"pyspark", "delta-spark", "py4j"})
ENV_PYTHON = "./environment/bin/python"
SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"
ZIP_TIME = (2020, 1, 1, 0, 0, 0)  # fixed timestamps: the same sources give the same zip, byte for byte


def canonical(name: str) -> str:
    """A distribution name in canonical form (PEP 503).

    >>> canonical("Scikit_Learn")
    'scikit-learn'
    """
    return re.sub(r"[-_.]+", "-", name).lower()


def package_files(package_dir: Path) -> list[Path]:
    """The files of a Python package that belong in its zip: sources and ``py.typed``, no caches.

    >>> package_files(Path(__file__).parent)[0].name
    '__init__.py'
    """
    files = [p for p in package_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts
             and (p.suffix == ".py" or p.name == "py.typed")]
    return sorted(files, key=lambda p: (p.relative_to(package_dir).parts != ("__init__.py",), str(p)))


def zip_package(package_dir: Path, out: Path) -> Path:
    """Write ``package_dir`` (e.g. ``coreset_spark/``) into the zip ``out`` for ``--py-files``.

    Entries are ``coreset_spark/...`` so the zip itself goes on ``sys.path``; timestamps are fixed so
    unchanged sources give an identical zip.

    >>> import tempfile
    >>> out = zip_package(Path(__file__).parent, Path(tempfile.mkdtemp()) / "coreset_spark.zip")
    >>> "coreset_spark/submit.py" in zipfile.ZipFile(out).namelist()
    True
    """
    package_dir = Path(package_dir).resolve()
    if not (package_dir / "__init__.py").exists():
        raise ValueError(f"package_dir={str(package_dir)!r} holds no __init__.py; pass the package folder, "
                         "e.g. coreset_spark/")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in package_files(package_dir):
            name = str(Path(package_dir.name) / path.relative_to(package_dir))
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    tmp.replace(out)
    return out


def _applies(requirement: str) -> tuple[str, bool]:
    """The distribution a requirement names, and whether it applies here (no extra, markers true)."""
    from packaging.requirements import Requirement

    req = Requirement(requirement)
    applies = req.marker is None or req.marker.evaluate({"extra": ""})
    return canonical(req.name), applies


def runtime_closure(roots: Iterable[str], exclude: Iterable[str] = NOT_SHIPPED) -> dict[str, str]:
    """The installed versions of ``roots`` and everything they require (extras off), minus ``exclude``.

    Read from this Python's environment, so the packed environment gets exactly the versions the
    driver runs (the same NumPy gives the same floating-point results on every machine).

    >>> sorted(runtime_closure(["pyyaml"]))
    ['pyyaml']
    """
    excluded = {canonical(e) for e in exclude}
    versions = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
    todo = [canonical(r) for r in roots]
    seen: dict[str, str] = {}
    while todo:
        name = todo.pop()
        if name in seen or name in excluded:
            continue
        if name not in versions:
            raise ValueError(f"the runtime requirement {name!r} is not installed in {sys.prefix}; run `make setup` "
                             "(pip install -e .) first, or build the package from the project's venv")
        seen[name] = versions[name]
        for requirement in metadata.requires(name) or []:
            dep, applies = _applies(requirement)
            if applies:
                todo.append(dep)
    return dict(sorted(seen.items()))


def project_requirements(setup_cfg: Path | None = SETUP_CFG, project: str = "coreset_spark") -> list[str]:
    """The project's own runtime requirements (``install_requires``, no extras), as distribution names:
    from ``setup_cfg`` when it exists (the source of truth, newer than an installed copy's metadata),
    else from the installed distribution.

    >>> "numpy" in project_requirements()
    True
    """
    if setup_cfg is not None and Path(setup_cfg).exists():
        import configparser

        parser = configparser.ConfigParser()
        parser.read(setup_cfg)
        lines = parser.get("options", "install_requires", fallback="").splitlines()
        requirements = [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]
    else:
        requirements = list(metadata.requires(project) or [])
    names = []
    for requirement in requirements:
        name, applies = _applies(requirement)
        if applies:
            names.append(name)
    return names


def pinned_requirements(closure: Mapping[str, str]) -> list[str]:
    """``name==version`` lines for pip.

    >>> pinned_requirements({"numpy": "2.4.6", "pyyaml": "6.0.4"})
    ['numpy==2.4.6', 'pyyaml==6.0.4']
    """
    return [f"{name}=={version}" for name, version in sorted(closure.items())]


def submit_command(app: str, app_args: Sequence[str], *, master: str, py_files: str, env_archive: str | None,
                   jars: Sequence[str], driver_python: str, spark_submit: str = "spark-submit",
                   driver_memory: str = "2g", conf: Mapping[str, str] | None = None) -> list[str]:
    """The spark-submit command line (client mode) for a job shipped as zip + packed environment.

    The driver runs ``driver_python`` (a local venv with the same packages); executors unpack
    ``env_archive`` as ``./environment`` and run its Python. Without ``env_archive`` (local mode)
    executors run the driver's Python too.

    >>> cmd = submit_command("jobs/main_job.py", ["run", "--config", "conf/demo.yaml"], master="local[2]",
    ...                      py_files="dist/coreset_spark.zip", env_archive=None, jars=[], driver_python="py")
    >>> cmd[-4:]
    ['jobs/main_job.py', 'run', '--config', 'conf/demo.yaml']
    """
    cmd = [spark_submit, "--master", master, "--py-files", py_files]
    if env_archive:
        cmd += ["--archives", f"{env_archive}#environment", "--conf", f"spark.pyspark.python={ENV_PYTHON}"]
    else:
        cmd += ["--conf", f"spark.pyspark.python={driver_python}"]
    cmd += ["--conf", f"spark.pyspark.driver.python={driver_python}", "--driver-memory", driver_memory]
    if jars:
        cmd += ["--jars", ",".join(jars)]
    for key, value in (conf or {}).items():
        cmd += ["--conf", f"{key}={value}"]
    return cmd + [app, *app_args]


def spark_submit_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with ``SPARK_HOME`` set to the pip-installed pyspark (spark-submit's own search for it
    runs whatever ``python3`` is first on the PATH, which may not see this venv's pyspark)."""
    from coreset_spark.cluster import spark_home

    return {**env, "SPARK_HOME": str(spark_home()), "PYTHONUNBUFFERED": "1"}


def packaged_command(app: str, app_args: Sequence[str], master: str, dist: Path = Path("dist"),
                     jars_dir: str | None = None, driver_memory: str = "2g",
                     conf: Mapping[str, str] | None = None) -> list[str]:
    """:func:`submit_command` for this project: ``dist/`` artifacts, the Delta jars of ``jars_dir``
    (``$CORESET_SPARK_JARS_DIR``, ``.jars``), this Python as the driver's; a ``local`` master runs
    the driver's Python on its executors, any other master the packed environment.

    >>> packaged_command("jobs/main_job.py", [], "local[2]", jars_dir="/nowhere")[0].endswith("spark-submit")
    True
    """
    import glob
    import os

    from coreset_spark.cluster import spark_home

    folder = jars_dir or os.environ.get("CORESET_SPARK_JARS_DIR") or ".jars"
    zip_path, archive = dist / "coreset_spark.zip", dist / "coreset_env.tar.gz"
    return submit_command(app, app_args, master=master, py_files=str(zip_path),
                          env_archive=None if master.startswith("local") else str(archive),
                          jars=sorted(glob.glob(str(Path(folder) / "*.jar"))), driver_python=sys.executable,
                          spark_submit=str(spark_home() / "bin" / "spark-submit"),
                          driver_memory=driver_memory, conf=conf)


def check_packaged(dist: Path = Path("dist"), master: str = "spark://") -> None:
    """Raise when ``make package`` has not been run (the artifacts a cluster submit needs are missing)."""
    needed = [dist / "coreset_spark.zip"] + ([] if master.startswith("local") else [dist / "coreset_env.tar.gz"])
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise ConfigError(f"{', '.join(missing)} missing; run `make package` (scripts/package.sh) first")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m coreset_spark.submit zip OUT`` | ``requirements`` | ``spark-submit --master M APP ARGS``."""
    parser = argparse.ArgumentParser(prog="python -m coreset_spark.submit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    zip_cmd = sub.add_parser("zip", help="zip the coreset_spark package for --py-files")
    zip_cmd.add_argument("out", type=Path)
    sub.add_parser("requirements", help="print the pinned runtime closure for the packed environment")
    run = sub.add_parser("spark-submit", help="spark-submit APP ARGS with the packaged library and environment")
    run.add_argument("--master", required=True, help="spark://host:7077, local-cluster[2,1,1024], local[2], ...")
    run.add_argument("--dist", type=Path, default=Path("dist"))
    run.add_argument("--driver-memory", default="2g")
    run.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    run.add_argument("app")
    run.add_argument("app_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "spark-submit":
        import os
        import shlex

        try:
            check_packaged(args.dist, args.master)
        except ConfigError as exc:
            print(f"submit: error: {exc}", file=sys.stderr)
            return 2
        cmd = packaged_command(args.app, args.app_args, args.master, args.dist, driver_memory=args.driver_memory)
        env = spark_submit_env(os.environ)
        if args.dry_run:
            print(f"SPARK_HOME={shlex.quote(env['SPARK_HOME'])} {shlex.join(cmd)}")
            return 0
        os.execve(cmd[0], cmd, env)
    if args.command == "zip":
        out = zip_package(Path(__file__).resolve().parent, args.out)
        print(f"{out} ({out.stat().st_size} bytes)")
    else:
        print("\n".join(pinned_requirements(runtime_closure(project_requirements()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
