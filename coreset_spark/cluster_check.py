"""The cluster check: the main job through spark-submit on a standalone cluster gives the bitwise
identical coreset as in local mode, survives a killed executor, and a job killed while it writes its
Delta coreset leaves the previous coreset readable and intact.

``run_cluster_check(settings)`` (``jobs/cluster_check.py``, ``make cluster-check``):

1. starts the standalone cluster of :mod:`coreset_spark.cluster` unless one it started is running
   (and then stops it at the end);
2. runs the main job with spark-submit in local mode (``local[2]``) and on the cluster, shipping the
   packaged library (``dist/coreset_spark.zip``) and environment (``dist/coreset_env.tar.gz``), and
   compares the two saved Delta coresets bit for bit (:func:`compare_coresets`);
3. runs it on the cluster again and SIGKILLs one executor JVM of that application (found by its
   ``--app-id`` and its parent, one of our workers) while the coreset build runs;
4. runs it once more onto that output and SIGKILLs the job (the spark-submit process group it
   started) as soon as the Delta save has written data files but before it commits; then reads the
   table back, and reruns the job to completion;
5. writes ``output/cluster/cluster_check.json`` and ``.md``.

>>> compare_coresets(_example(), _example())["same"]
True
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa

from coreset_spark.cluster import (
    ClusterSpec,
    daemon_pids,
    executor_pids,
    master_state,
    parent_pid,
    prune_work,
    start_cluster,
    stop_cluster,
)
from coreset_spark.submit import check_packaged, packaged_command, spark_submit_env

ROOT = Path(__file__).resolve().parents[1]
JOB = "jobs/main_job.py"
Progress = Callable[[str], None]


# ---------------------------------------------------------------------------------------------
# Comparing saved coresets


def read_coreset(spark: Any, path: str, version: int | None = None) -> pa.Table:
    """Every level of the coreset tree saved at ``path`` (Delta, ``part = 'tree'``), in the coreset
    schema, sorted by (level, row id): row ids, weights, features, level, node and the rest."""
    from pyspark.sql import functions as F

    from coreset_spark.tree import COLUMNS, CORESET_SCHEMA

    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    frame = reader.load(path).where(F.col("part") == "tree").select(*COLUMNS)
    return frame.toArrow().cast(CORESET_SCHEMA).sort_by([("level", "ascending"), ("row_id", "ascending")])


def _bits(column: pa.ChunkedArray | pa.Array) -> list[bytes]:
    """The exact bits of a column: validity, offsets of lists, values (floats as their IEEE words)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    parts = [np.asarray(array.is_null()).tobytes()]
    if pa.types.is_list(array.type):
        parts.append(np.asarray(array.offsets).tobytes())
        array = array.flatten()
    values = array.to_numpy(zero_copy_only=False)
    if values.dtype.kind == "f":
        values = values.astype(np.float64).view(np.uint64)
    parts.append(np.ascontiguousarray(values).tobytes())
    return parts


def coreset_digest(table: pa.Table) -> str:
    """sha256 over the bits of every column, in order (a fingerprint of the coreset).

    >>> len(coreset_digest(_example()))
    64
    """
    digest = hashlib.sha256()
    for name in table.column_names:
        digest.update(name.encode())
        for part in _bits(table.column(name)):
            digest.update(part)
    return digest.hexdigest()


def compare_coresets(a: pa.Table, b: pa.Table) -> dict[str, Any]:
    """Compare two coresets (as from :func:`read_coreset`) bit for bit, column by column.

    ``same`` is true only when both have the same columns and rows and every value has the same bits
    (so -0.0 differs from 0.0 and a NaN equals only the same NaN). ``different_columns`` names the
    columns that differ.

    >>> a = _example(); b = a.set_column(5, "weight", pa.array([1.0, 2.0 + 1e-15]))
    >>> compare_coresets(a, b)["different_columns"]
    ['weight']
    """
    out: dict[str, Any] = {"rows": [a.num_rows, b.num_rows], "digests": [coreset_digest(a), coreset_digest(b)]}
    if a.column_names != b.column_names or a.num_rows != b.num_rows:
        out.update(same=False, different_columns=sorted(set(a.column_names) ^ set(b.column_names)) or ["<rows>"])
        return out
    different = [name for name in a.column_names if _bits(a.column(name)) != _bits(b.column(name))]
    levels = a.column("level").to_numpy()
    sums = {int(k): float(a.column("weight").to_numpy()[levels == k].sum()) for k in np.unique(levels)}
    out.update(same=not different, different_columns=different,
               level_sizes={int(k): int((levels == k).sum()) for k in np.unique(levels)}, weight_sums=sums)
    return out


def _example() -> pa.Table:
    from coreset_spark.tree import CORESET_SCHEMA

    return pa.table({"level": [0, 0], "node": [0, 0], "row_id": [3, 7], "target": [0.0, 1.0], "stratum": [0, 1],
                     "weight": [1.0, 2.0], "input_weight": [1.0, 1.0], "probability": [1.0, 0.5],
                     "importance": [0.1, 0.2], "features": [[0.5, -1.0], [2.0, 0.0]]}, schema=CORESET_SCHEMA)


def delta_versions(path: Path) -> list[int]:
    """The committed versions of the Delta table at ``path`` (its ``_delta_log/*.json``)."""
    log = Path(path) / "_delta_log"
    return sorted(int(p.stem) for p in log.glob("*.json") if p.stem.isdigit()) if log.exists() else []


def data_files(path: Path) -> set[str]:
    """The Parquet data files under a table folder, committed or not (relative paths)."""
    root = Path(path)
    return {str(p.relative_to(root)) for p in root.rglob("part-*.parquet") if "_delta_log" not in p.parts}


# ---------------------------------------------------------------------------------------------
# Running the main job and disturbing it


@dataclass(frozen=True)
class CheckSettings:
    """What the cluster check runs.

    ``fault_overrides`` are extra ``--set`` overrides for the fault runs (they change only the models
    the job trains after the build, never the coreset, and keep the runs short).
    """

    config: str = "conf/demo.yaml"
    out_dir: Path = Path("output/cluster")
    dist: Path = Path("dist")
    local_master: str = "local[2]"
    kill_stage: str = "sample leaves"
    kill_delay_s: float = 2.0
    fault_overrides: tuple[str, ...] = ("model.full_baseline=false", "model.grid={C: [1.0]}")
    job_timeout_s: float = 3600.0
    cluster: ClusterSpec = field(default_factory=ClusterSpec)


@dataclass
class JobRun:
    """One spark-submit of the main job: its command, exit code, wall time and what happened to it."""

    name: str
    master: str
    output: str
    command: list[str]
    returncode: int | None = None
    seconds: float = 0.0
    log: str = ""
    app_id: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    job_seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready record."""
        return {"name": self.name, "master": self.master, "output": self.output, "returncode": self.returncode,
                "seconds": round(self.seconds, 1), "app_id": self.app_id, "events": self.events,
                "job_stage_seconds": self.job_seconds, "log": self.log, "command": shlex.join(self.command)}


class Watcher:
    """Reads the job's progress lines as they come; a fault injector reacts to one of them."""

    def on_start(self, proc: subprocess.Popen[str], run: JobRun) -> None:  # noqa: B027 - optional hook
        """Called once the job process runs."""

    def on_line(self, line: str, proc: subprocess.Popen[str], run: JobRun) -> None:  # noqa: B027
        """Called for every line the job prints on stdout."""


def submit_env(env: Mapping[str, str], master: str) -> dict[str, str]:
    """The environment of a spark-submit: SPARK_HOME of this venv's pyspark, unbuffered Python output,
    no inherited PYSPARK_PYTHON (the command line says which Python runs where), and for a cluster on
    127.0.0.1 a driver bound to 127.0.0.1 too.

    >>> submit_env({"PYSPARK_PYTHON": "x"}, "spark://127.0.0.1:7077")["SPARK_LOCAL_IP"]
    '127.0.0.1'
    """
    clean = {k: v for k, v in env.items() if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    out = spark_submit_env(clean)
    if "127.0.0.1" in master or master.startswith("local"):
        out["SPARK_LOCAL_IP"] = "127.0.0.1"
    return out


def run_job(name: str, master: str, output: Path, settings: CheckSettings, overrides: Sequence[str] = (),
            watcher: Watcher | None = None, progress: Progress = print) -> JobRun:
    """spark-submit the main job (``--set spark.master=... --set output.path=...`` plus ``overrides``)
    with the packaged library; stream its progress lines to ``watcher``; wait for it."""
    sets = [f"spark.master={master}", f"output.path={output}", *overrides]
    args = ["run", "--config", settings.config] + [part for s in sets for part in ("--set", s)]
    command = packaged_command(JOB, args, master, settings.dist)
    logs = (settings.out_dir / "logs").resolve()
    logs.mkdir(parents=True, exist_ok=True)
    run = JobRun(name=name, master=master, output=str(output), command=command, log=str(logs / f"{name}.stderr.log"))
    progress(f"[cluster-check] {name}: {shlex.join(command)}")
    started = time.perf_counter()
    with open(run.log, "w") as stderr, open(logs / f"{name}.stdout.log", "w") as stdout_copy:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True,
                                cwd=ROOT, env=submit_env(os.environ, master), start_new_session=True)
        if watcher:
            watcher.on_start(proc, run)
        timer = threading.Timer(settings.job_timeout_s, _kill_group, (proc, signal.SIGKILL))
        timer.start()
        try:
            _follow(proc, stdout_copy, run, watcher, progress)
        finally:
            timer.cancel()
    run.seconds = time.perf_counter() - started
    run.app_id = run.app_id or _app_id_of(Path(run.log))
    report = output / "report.json"
    if run.returncode == 0 and report.exists():
        run.job_seconds = dict(json.loads(report.read_text()).get("seconds", {}))
    progress(f"[cluster-check] {name}: exit {run.returncode} after {run.seconds:.1f} s")
    if run.app_id and not master.startswith("local"):
        # Once the application is gone, drop its executors' copies of the environment (logs stay).
        _wait_until(lambda: not executor_pids(str(run.app_id)), 60.0)
        prune_work(settings.cluster, run.app_id)
    return run


def _follow(proc: subprocess.Popen[str], copy: IO[str], run: JobRun, watcher: Watcher | None, progress: Progress) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        copy.write(line)
        copy.flush()
        if line.startswith("[coreset]") or line.startswith("[job]"):
            progress(f"    {run.name} | {line.rstrip()}")
        if watcher:
            watcher.on_line(line.rstrip("\n"), proc, run)
    run.returncode = proc.wait()


def _kill_group(proc: subprocess.Popen[str], sig: int = signal.SIGKILL) -> None:
    """Signal the process group of a job this check started (spark-submit's JVM and its Python)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _app_id_of(log: Path) -> str | None:
    found = re.search(r"app ID (app-[0-9-]+)", log.read_text(errors="replace")) if log.exists() else None
    return found.group(1) if found else None


class ExecutorKiller(Watcher):
    """SIGKILLs one executor JVM of the job's application ``delay_s`` seconds after the build stage
    ``stage`` starts. The executor is found by ``--app-id`` and must be a child of one of our workers."""

    def __init__(self, spec: ClusterSpec, stage: str, delay_s: float, progress: Progress = print) -> None:
        self.spec, self.stage, self.delay_s, self.progress = spec, stage, delay_s, progress
        self.fired = False
        self.started = 0.0
        self.thread: threading.Thread | None = None

    def on_start(self, proc: subprocess.Popen[str], run: JobRun) -> None:
        """Remember when the job started."""
        self.started = time.perf_counter()

    def on_line(self, line: str, proc: subprocess.Popen[str], run: JobRun) -> None:
        """At the stage's start line, kill an executor (in a thread, so the job's output keeps flowing)."""
        if not self.fired and line.startswith(f"[coreset] {self.stage}") and line.endswith("..."):
            self.fired = True
            self.thread = threading.Thread(target=self._kill, args=(run, line), daemon=True)
            self.thread.start()
        if self.fired and line.startswith(f"[coreset] {self.stage}") and "done in" in line:
            run.events.append({"event": "stage finished", "stage": line[len("[coreset] "):],
                               "at_s": round(time.perf_counter() - self.started, 2)})

    def _kill(self, run: JobRun, line: str) -> None:
        time.sleep(self.delay_s)
        workers = daemon_pids(self.spec)
        worker_of = {pid: name for name, pid in workers.items() if name != "master"}
        app_id = _active_app(self.spec)
        run.app_id = app_id
        executors = executor_pids(app_id, parents=list(worker_of)) if app_id else {}
        if not executors:
            run.events.append({"event": "no executor found to kill", "app_id": app_id})
            return
        executor_id, pid = next(iter(executors.items()))
        worker = worker_of.get(parent_pid(pid), "?")
        os.kill(pid, signal.SIGKILL)
        run.events.append({"event": "executor killed", "signal": "SIGKILL", "app_id": app_id,
                           "executor_id": executor_id, "pid": pid, "worker": worker,
                           "executors_before": executors, "during": line[len("[coreset] "):].rstrip(". "),
                           "at_s": round(time.perf_counter() - self.started, 2)})
        self.progress(f"[cluster-check] killed executor {executor_id} (PID {pid}, {worker}) of {app_id} "
                      f"during '{self.stage}'")


def _active_app(spec: ClusterSpec, timeout: float = 30.0) -> str | None:
    """The application running on our cluster (this check is its only client)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        apps = master_state(spec).get("activeapps", [])
        if apps:
            return str(max(apps, key=lambda a: a.get("starttime", 0))["id"])
        time.sleep(0.5)
    return None


class WriteKiller(Watcher):
    """SIGKILLs the whole job (its spark-submit process group) once the Delta save of the coreset has
    written new data files into the table folder and before a new version is committed."""

    def __init__(self, table: Path, progress: Progress = print) -> None:
        self.table, self.progress = Path(table), progress
        self.files_before = data_files(self.table)
        self.versions_before = delta_versions(self.table)
        self.thread: threading.Thread | None = None
        self.stop = threading.Event()
        self.started = 0.0

    def on_start(self, proc: subprocess.Popen[str], run: JobRun) -> None:
        """Remember when the job started."""
        self.started = time.perf_counter()

    def on_line(self, line: str, proc: subprocess.Popen[str], run: JobRun) -> None:
        """At the save's start line, watch the table folder; kill at the first new data file."""
        if line.startswith("[coreset] save coreset (Delta) ...") and self.thread is None:
            self.thread = threading.Thread(target=self._watch, args=(proc, run), daemon=True)
            self.thread.start()
        if line.startswith("[coreset] save coreset (Delta) done"):
            self.stop.set()
            run.events.append({"event": "save finished before a new data file was seen (kill missed)"})

    def _watch(self, proc: subprocess.Popen[str], run: JobRun) -> None:
        while not self.stop.is_set() and proc.poll() is None:
            new = data_files(self.table) - self.files_before
            if new:
                _kill_group(proc)
                versions = delta_versions(self.table)
                run.events.append({"event": "job killed during the Delta save", "signal": "SIGKILL (process group)",
                                   "new_data_files_seen": len(new), "versions_before": self.versions_before,
                                   "versions_at_kill": versions, "at_s": round(time.perf_counter() - self.started, 2)})
                self.progress(f"[cluster-check] killed the job (process group {proc.pid}) with {len(new)} new data "
                              f"file(s) written and versions {versions} committed")
                return
            time.sleep(0.02)


# ---------------------------------------------------------------------------------------------
# The check


def run_cluster_check(settings: CheckSettings, progress: Progress = print) -> dict[str, Any]:
    """Run the whole check (see the module docstring); returns the report it writes."""
    from coreset_spark.config import SparkSettings
    from coreset_spark.spark.session import get_spark

    check_packaged(settings.dist)
    out = settings.out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    spec = settings.cluster
    started = time.perf_counter()
    report: dict[str, Any] = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
                              "config": settings.config, "fault_overrides": list(settings.fault_overrides),
                              "packaging": _packaging_facts(settings.dist)}
    reuse = bool(daemon_pids(spec))
    seconds: dict[str, float] = {}
    if not reuse:
        t = time.perf_counter()
        start_cluster(spec)
        seconds["start cluster"] = round(time.perf_counter() - t, 1)
    report["cluster"] = {"master_url": spec.master_url, "workers": spec.workers, "worker_cores": spec.worker_cores,
                         "worker_memory": spec.worker_memory, "pids": daemon_pids(spec), "started_by_check": not reuse}
    spark = None
    runs: list[JobRun] = []
    try:
        local = run_job("local", settings.local_master, out / "local", settings, progress=progress)
        standalone = run_job("standalone", spec.master_url, out / "standalone", settings, progress=progress)
        runs += [local, standalone]
        _require_success(local, standalone)
        spark = get_spark(SparkSettings(master="local[1]", app_name="coreset_spark-cluster-check", conf={
            "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false", "spark.sql.shuffle.partitions": "1",
            "spark.databricks.delta.snapshotPartitions": "1", "spark.driver.memory": "1g"}))
        spark.sparkContext.setLogLevel("ERROR")
        reference = read_coreset(spark, str(out / "standalone" / "coreset"))
        local_table = read_coreset(spark, str(out / "local" / "coreset"))
        report["same_coreset_local_vs_standalone"] = compare_coresets(local_table, reference)
        progress(f"[cluster-check] local vs standalone: same coreset = "
                 f"{report['same_coreset_local_vs_standalone']['same']}")
        report["standalone_run"] = _cluster_facts(standalone, spec)

        faults = out / "faults"
        killer = ExecutorKiller(spec, settings.kill_stage, settings.kill_delay_s, progress)
        disturbed = run_job("executor_kill", spec.master_url, faults, settings, settings.fault_overrides, killer,
                            progress)
        runs.append(disturbed)
        _require_success(disturbed)
        after_kill = read_coreset(spark, str(faults / "coreset"))
        report["executor_kill"] = {**_cluster_facts(disturbed, spec), "finished": disturbed.returncode == 0,
                                   "kill": [e for e in disturbed.events if e["event"] != "stage finished"],
                                   "stage_end": [e for e in disturbed.events if e["event"] == "stage finished"],
                                   "same_as_undisturbed": compare_coresets(after_kill, reference)}
        progress(f"[cluster-check] executor kill: finished = {disturbed.returncode == 0}, same coreset = "
                 f"{report['executor_kill']['same_as_undisturbed']['same']}")

        report["mid_write_kill"] = _mid_write_check(spark, faults, reference, after_kill, settings, runs, progress)
    finally:
        if not reuse:
            stopped = stop_cluster(spec)
            report["cluster"]["stopped"] = stopped
        if spark is not None:
            spark.stop()
    seconds.update({f"job {r.name}": round(r.seconds, 1) for r in runs})
    seconds["total"] = round(time.perf_counter() - started, 1)
    report["runs"] = [r.summary() for r in runs]
    report["seconds"] = seconds
    report["machine"]["load_average_at_end"] = os.getloadavg()
    report["verdict"] = verdict(report)
    write_check_report(report, out)
    progress(summary_lines(report))
    return report


def _mid_write_check(spark: Any, faults: Path, reference: pa.Table, previous: pa.Table, settings: CheckSettings,
                     runs: list[JobRun], progress: Progress) -> dict[str, Any]:
    from coreset_spark.coreset import CoresetTree

    table = faults / "coreset"
    spec = settings.cluster
    killer = WriteKiller(table, progress)
    killed = run_job("write_kill", spec.master_url, faults, settings, settings.fault_overrides, killer, progress)
    runs.append(killed)
    app_gone = _wait_until(lambda: not (killed.app_id and executor_pids(killed.app_id)), 60.0)
    versions_after = delta_versions(table)
    readable = read_coreset(spark, str(table))
    loaded = CoresetTree.load(spark, str(table))
    facts: dict[str, Any] = {
        "kill": killed.events, "job_returncode": killed.returncode,
        "killed_before_commit": versions_after == killer.versions_before,
        "versions_before": killer.versions_before, "versions_after_kill": versions_after,
        "uncommitted_data_files_left": len(data_files(table) - killer.files_before),
        "app_executors_gone": app_gone,
        "previous_readable": readable.num_rows > 0, "previous_loads_as_tree": loaded.level_sizes(),
        "previous_intact": compare_coresets(readable, previous),
    }
    progress(f"[cluster-check] write kill: versions {killer.versions_before} -> {versions_after}; previous coreset "
             f"readable and identical = {facts['previous_intact']['same']}")
    rerun = run_job("write_rerun", spec.master_url, faults, settings, settings.fault_overrides, None, progress)
    runs.append(rerun)
    facts["rerun_returncode"] = rerun.returncode
    facts["versions_after_rerun"] = delta_versions(table)
    if rerun.returncode == 0:
        facts["rerun_same_as_undisturbed"] = compare_coresets(read_coreset(spark, str(table)), reference)
    return facts


def _wait_until(ready: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def _require_success(*runs: JobRun) -> None:
    failed = [r for r in runs if r.returncode != 0]
    if failed:
        raise RuntimeError("; ".join(f"the {r.name} run exited with {r.returncode}; see {r.log}" for r in failed))


def _cluster_facts(run: JobRun, spec: ClusterSpec) -> dict[str, Any]:
    """What the driver log and the workers' work folders say about the application."""
    log = Path(run.log).read_text(errors="replace") if Path(run.log).exists() else ""
    executors = sorted(f"{p.parent.parent.name}/{p.name}" for w in range(1, spec.workers + 1)
                       for p in spec.work_dir(w).glob(f"{run.app_id}/*") if run.app_id and p.is_dir())
    unpacked = sum(1 for w in range(1, spec.workers + 1) for p in spec.work_dir(w).glob(f"{run.app_id}/*/stderr")
                   if run.app_id and "Unpacking an archive" in p.read_text(errors="replace"))
    return {"app_id": run.app_id, "executors_launched": executors, "executors_that_unpacked_the_env": unpacked,
            "driver_log": {"lost_executor_lines": len(re.findall(r"Lost executor", log)),
                           "lost_task_lines": len(re.findall(r"Lost task", log)),
                           "resubmitted_lines": len(re.findall(r"Resubmitt", log))}}


def _packaging_facts(dist: Path) -> dict[str, Any]:
    files = {p.name: p.stat().st_size for p in (dist / "coreset_spark.zip", dist / "coreset_env.tar.gz") if p.exists()}
    requirements = dist / "env-requirements.txt"
    return {"files_bytes": files,
            "env_requirements": requirements.read_text().split() if requirements.exists() else []}


def verdict(report: Mapping[str, Any]) -> dict[str, bool]:
    """The yes/no answers of the check.

    >>> verdict({})["same_coreset_local_vs_standalone"]
    False
    """
    kill = report.get("executor_kill", {})
    write = report.get("mid_write_kill", {})
    return {
        "same_coreset_local_vs_standalone": bool(report.get("same_coreset_local_vs_standalone", {}).get("same")),
        "executor_killed": any(e.get("event") == "executor killed" for e in kill.get("kill", [])),
        "job_finished_after_executor_kill": bool(kill.get("finished")),
        "same_coreset_after_executor_kill": bool(kill.get("same_as_undisturbed", {}).get("same")),
        "job_killed_during_delta_save": bool(write.get("killed_before_commit"))
        and any(e.get("event") == "job killed during the Delta save" for e in write.get("kill", [])),
        "previous_coreset_intact": bool(write.get("previous_intact", {}).get("same")),
        "rerun_completed": write.get("rerun_returncode") == 0,
        "same_coreset_after_rerun": bool(write.get("rerun_same_as_undisturbed", {}).get("same")),
    }


def summary_lines(report: Mapping[str, Any]) -> str:
    """A short text summary of the check."""
    lines = [f"cluster check ({report['cluster']['master_url']}, {report['cluster']['workers']} workers x "
             f"{report['cluster']['worker_cores']} core, {report['cluster']['worker_memory']})"]
    lines += [f"  {name}: {'yes' if ok else 'NO'}" for name, ok in report.get("verdict", {}).items()]
    lines += ["  seconds: " + ", ".join(f"{k} {v}" for k, v in report.get("seconds", {}).items())]
    return "\n".join(lines)


def write_check_report(report: Mapping[str, Any], out: Path) -> None:
    """``cluster_check.json`` (everything) and ``cluster_check.md`` (the readable part) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "cluster_check.json").write_text(json.dumps(report, indent=2, default=str))
    md = ["# Cluster check", "", f"Started {report['started']}; {report['machine']['cpus']} CPUs, load average "
          f"{tuple(round(x, 1) for x in report['machine']['load_average_at_start'])} at start, "
          f"{tuple(round(x, 1) for x in report['machine'].get('load_average_at_end', ()))} at end.", "",
          "```", summary_lines(report), "```", "", "## Runs", "",
          "| run | master | exit | wall s | build coreset s | save coreset s | events |", "|---|---|---|---|---|---|---|"]
    for run in report.get("runs", []):
        events = "; ".join(e["event"] for e in run["events"] if e["event"] != "stage finished") or "-"
        md.append(f"| {run['name']} | `{run['master']}` | {run['returncode']} | {run['seconds']} | "
                  f"{run['job_stage_seconds'].get('build coreset', '-')} | "
                  f"{run['job_stage_seconds'].get('save coreset (Delta)', '-')} | {events} |")
    same = report.get("same_coreset_local_vs_standalone", {})
    md += ["", "## Same coreset", "", f"Local vs standalone: same = {same.get('same')}, rows {same.get('rows')}, "
           f"levels {same.get('level_sizes')}, weight sums {same.get('weight_sums')}, sha256 {same.get('digests')}."]
    kill = report.get("executor_kill", {})
    md += ["", "## Executor killed during the build", "", "```json", json.dumps({k: kill.get(k) for k in (
        "kill", "stage_end", "executors_launched", "driver_log", "finished")}, indent=1, default=str), "```",
        f"Same coreset as undisturbed: {kill.get('same_as_undisturbed', {}).get('same')}."]
    write = report.get("mid_write_kill", {})
    md += ["", "## Job killed during the Delta save", "", "```json",
           json.dumps({k: v for k, v in write.items() if k not in ("previous_intact", "rerun_same_as_undisturbed")},
                      indent=1, default=str), "```",
           f"Previous coreset intact (bitwise): {write.get('previous_intact', {}).get('same')}; rerun same as "
           f"undisturbed: {write.get('rerun_same_as_undisturbed', {}).get('same')}."]
    md += ["", "## Packaging", "", f"{report['packaging']['files_bytes']}; packed environment: "
           f"{', '.join(report['packaging']['env_requirements'])}", ""]
    (out / "cluster_check.md").write_text("\n".join(md) + "\n")
