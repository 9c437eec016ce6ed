"""A standalone Spark cluster on this machine (a master and workers on 127.0.0.1), started from the
pip-installed pyspark with ``spark-class`` and stopped by the PIDs it recorded, never by name.

    python -m coreset_spark.cluster start      # scripts/cluster_start.sh, make cluster-start
    python -m coreset_spark.cluster status
    python -m coreset_spark.cluster stop       # scripts/cluster_stop.sh, make cluster-stop

Each daemon runs in its own session (process group); its PID, command line and log are kept in
``state_dir`` (``output/cluster/run``), and the workers' work folders (one per application and
executor, with the executors' logs) are under ``state_dir/work``. ``stop`` only signals a PID whose
command line is still the daemon it started, so a recycled PID is never touched.

>>> spec = ClusterSpec()
>>> spec.master_url
'spark://127.0.0.1:7077'
>>> master_command(spec)[1:3]
['org.apache.spark.deploy.master.Master', '--host']
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coreset_spark.config import ConfigError

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
EXECUTOR_CLASS = "org.apache.spark.executor.CoarseGrainedExecutorBackend"


@dataclass(frozen=True)
class ClusterSpec:
    """Where and how big the cluster is: ``workers`` workers of ``worker_cores`` cores and
    ``worker_memory`` each (the executors' JVM heap must fit in it; Python workers come on top)."""

    host: str = "127.0.0.1"
    master_port: int = 7077
    master_ui_port: int = 8080
    workers: int = 2
    worker_cores: int = 1
    worker_memory: str = "1536m"
    worker_ui_port: int = 8081  # worker i (1-based) serves its UI on worker_ui_port + i - 1
    daemon_memory: str = "512m"
    state_dir: Path = field(default_factory=lambda: Path("output/cluster/run"))

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"cluster workers={self.workers} must be at least 1, e.g. 2")
        if self.worker_cores < 1:
            raise ConfigError(f"cluster worker_cores={self.worker_cores} must be at least 1")
        if not self.worker_memory[:-1].isdigit() or self.worker_memory[-1] not in "mg":
            raise ConfigError(f"cluster worker_memory={self.worker_memory!r} must look like 1536m or 2g")

    @property
    def master_url(self) -> str:
        """The URL to submit to."""
        return f"spark://{self.host}:{self.master_port}"

    @property
    def master_ui(self) -> str:
        """The master's web UI (its ``/json/`` page lists workers and applications)."""
        return f"http://{self.host}:{self.master_ui_port}"

    def work_dir(self, worker: int) -> Path:
        """Worker ``worker``'s work folder: ``<app-id>/<executor-id>/`` with each executor's logs."""
        return (Path(self.state_dir) / "work" / f"worker-{worker}").resolve()


def spark_home() -> Path:
    """The pip-installed pyspark's folder, which is a Spark home (``bin/spark-class``, ``jars/``).

    >>> (spark_home() / "bin" / "spark-class").exists()
    True
    """
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def master_command(spec: ClusterSpec) -> list[str]:
    """``spark-class org.apache.spark.deploy.master.Master --host ... --port ... --webui-port ...``."""
    return [str(spark_home() / "bin" / "spark-class"), MASTER_CLASS, "--host", spec.host,
            "--port", str(spec.master_port), "--webui-port", str(spec.master_ui_port)]


def worker_command(spec: ClusterSpec, worker: int) -> list[str]:
    """``spark-class org.apache.spark.deploy.worker.Worker spark://127.0.0.1:7077 --cores 1 ...``.

    >>> worker_command(ClusterSpec(), 2)[2:9]
    ['spark://127.0.0.1:7077', '--host', '127.0.0.1', '--cores', '1', '--memory', '1536m']
    """
    return [str(spark_home() / "bin" / "spark-class"), WORKER_CLASS, spec.master_url, "--host", spec.host,
            "--cores", str(spec.worker_cores), "--memory", spec.worker_memory,
            "--work-dir", str(spec.work_dir(worker)), "--webui-port", str(spec.worker_ui_port + worker - 1)]


def daemon_names(spec: ClusterSpec) -> list[str]:
    """``master``, ``worker-1``, ... (the PID and log file names).

    >>> daemon_names(ClusterSpec(workers=2))
    ['master', 'worker-1', 'worker-2']
    """
    return ["master"] + [f"worker-{i}" for i in range(1, spec.workers + 1)]


def process_cmdline(pid: int) -> list[str]:
    """The command line of a running process (empty when it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def parent_pid(pid: int) -> int:
    """The parent of a running process (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def daemon_pids(spec: ClusterSpec) -> dict[str, int]:
    """The recorded PIDs of this cluster's daemons that are still the processes we started."""
    running = {}
    for name in daemon_names(spec):
        pid_file = Path(spec.state_dir) / f"{name}.pid"
        if not pid_file.exists():
            continue
        pid = int(pid_file.read_text().split()[0])
        wanted = MASTER_CLASS if name == "master" else WORKER_CLASS
        if wanted in process_cmdline(pid):
            running[name] = pid
    return running


def master_state(spec: ClusterSpec, timeout: float = 2.0) -> dict[str, Any]:
    """The master's ``/json/`` page: ``workers`` (with ``state``), ``activeapps``, ``completedapps``."""
    with urllib.request.urlopen(f"{spec.master_ui}/json/", timeout=timeout) as answer:
        return dict(json.loads(answer.read().decode()))


def alive_workers(spec: ClusterSpec) -> int:
    """Workers registered with the master and ALIVE (0 when the master does not answer)."""
    try:
        return sum(1 for w in master_state(spec).get("workers", []) if w.get("state") == "ALIVE")
    except OSError:
        return 0


def _launch(command: list[str], log: Path, env: dict[str, str]) -> int:
    with open(log, "ab") as out:
        # Own session: the daemon outlives this process and can be stopped as one group.
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    return proc.pid


def start_cluster(spec: ClusterSpec, timeout: float = 90.0) -> dict[str, int]:
    """Start the master and the workers, wait until every worker is ALIVE; returns the PIDs by name.

    Refuses to start over a cluster it already started (stop it first) or on a port in use.
    """
    if daemon_pids(spec):
        raise ConfigError(f"a cluster started from {spec.state_dir} is running ({daemon_pids(spec)}); "
                          "stop it first (make cluster-stop) or use another state_dir")
    ports = {"master_port": spec.master_port, "master_ui_port": spec.master_ui_port,
             **{f"worker_ui_port (worker {i})": spec.worker_ui_port + i - 1 for i in range(1, spec.workers + 1)}}
    for setting, port in ports.items():
        if _port_in_use(spec.host, port):
            raise ConfigError(f"cluster {setting}={port} is already in use on {spec.host} (another Spark?); "
                              f"pick a free one, e.g. --master-port 7177 --master-ui-port 8180 --worker-ui-port 8181")
    state = Path(spec.state_dir)
    (state / "logs").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": spec.host,
           "SPARK_DAEMON_MEMORY": spec.daemon_memory, "SPARK_NO_DAEMONIZE": "1"}
    pids: dict[str, int] = {}
    for name in daemon_names(spec):
        if name == "master":
            command = master_command(spec)
        else:
            worker = int(name.split("-")[1])
            spec.work_dir(worker).mkdir(parents=True, exist_ok=True)
            command = worker_command(spec, worker)
        pids[name] = _launch(command, state / "logs" / f"{name}.log", env)
        (state / f"{name}.pid").write_text(f"{pids[name]}\n{' '.join(command)}\n")
        if name == "master":
            _wait(lambda: _port_in_use(spec.host, spec.master_port), timeout, "the master to listen", spec)
    _wait(lambda: alive_workers(spec) >= spec.workers, timeout, f"{spec.workers} workers to register", spec)
    return pids


def _wait(ready: Any, timeout: float, what: str, spec: ClusterSpec) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}; see the logs in "
                               f"{Path(spec.state_dir) / 'logs'}, then make cluster-stop")
        time.sleep(0.5)


def stop_cluster(spec: ClusterSpec, timeout: float = 30.0) -> dict[str, int]:
    """Stop the daemons this state_dir started (workers first): SIGTERM to each daemon's own process
    group (the worker's executors are in it), SIGKILL after ``timeout``; then :func:`prune_work`.
    Returns the PIDs stopped."""
    running = daemon_pids(spec)
    order = sorted(running, key=lambda name: name == "master")
    for name in order:
        _signal_group(running[name], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for name in order:
        pid = running[name]
        while process_cmdline(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if process_cmdline(pid):
            _signal_group(pid, signal.SIGKILL)
    for name in daemon_names(spec):
        (Path(spec.state_dir) / f"{name}.pid").unlink(missing_ok=True)
    prune_work(spec)
    return running


def _signal_group(pid: int, sig: int) -> None:
    try:
        # The daemon leads its own session (start_new_session), so its group id is its PID.
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def prune_work(spec: ClusterSpec, app_id: str | None = None) -> int:
    """Delete what finished applications left in the workers' work folders (each executor's unpacked
    environment, jars and zip: over 500 MB an executor), keeping every executor's ``stdout`` and
    ``stderr``. Only ``app_id`` when given, else every application; never an application the master
    still runs. Returns the bytes freed.

    >>> prune_work(ClusterSpec(state_dir=Path("/nonexistent")))
    0
    """
    import shutil

    try:
        active = {str(a["id"]) for a in master_state(spec).get("activeapps", [])}
    except OSError:  # no master: nothing runs
        active = set()
    freed = 0
    for worker in range(1, spec.workers + 1):
        for app in spec.work_dir(worker).glob(app_id or "app-*"):
            if app.name in active or not app.is_dir():
                continue
            for item in (i for executor in app.iterdir() if executor.is_dir() for i in executor.iterdir()):
                if item.name in ("stdout", "stderr"):
                    continue
                if item.is_dir() and not item.is_symlink():
                    freed += sum(f.stat().st_size for f in item.rglob("*") if f.is_file() and not f.is_symlink())
                    shutil.rmtree(item)
                else:
                    freed += item.lstat().st_size
                    item.unlink()
    return freed


def executor_pids(app_id: str, parents: Sequence[int] | None = None) -> dict[str, int]:
    """The executor JVMs (``CoarseGrainedExecutorBackend``) of application ``app_id``, by executor id.

    With ``parents`` (worker PIDs, or the driver's PID for ``local-cluster``), only executors whose
    parent is one of them count, so another application's or another cluster's executors never do.

    >>> executor_pids("app-that-does-not-exist")
    {}
    """
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        cmdline = process_cmdline(pid)
        if EXECUTOR_CLASS not in cmdline or "--app-id" not in cmdline:
            continue
        if cmdline[cmdline.index("--app-id") + 1] != app_id:
            continue
        if parents is not None and parent_pid(pid) not in parents:
            continue
        found[cmdline[cmdline.index("--executor-id") + 1]] = pid
    return dict(sorted(found.items()))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m coreset_spark.cluster start|stop|status [options]``."""
    parser = argparse.ArgumentParser(prog="python -m coreset_spark.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--state-dir", type=Path, default=Path("output/cluster/run"))
    parser.add_argument("--master-port", type=int, default=7077)
    parser.add_argument("--master-ui-port", type=int, default=8080)
    parser.add_argument("--worker-ui-port", type=int, default=8081)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-cores", type=int, default=1)
    parser.add_argument("--worker-memory", default="1536m")
    args = parser.parse_args(argv)
    try:
        spec = ClusterSpec(master_port=args.master_port, master_ui_port=args.master_ui_port,
                           worker_ui_port=args.worker_ui_port, workers=args.workers, worker_cores=args.worker_cores,
                           worker_memory=args.worker_memory, state_dir=args.state_dir)
        if args.command == "start":
            pids = start_cluster(spec)
            print(f"cluster up at {spec.master_url} (UI {spec.master_ui}): {pids}; PIDs in {spec.state_dir}")
        elif args.command == "stop":
            stopped = stop_cluster(spec)
            print(f"stopped {stopped}" if stopped else f"no cluster started from {spec.state_dir} is running")
        else:
            pids = daemon_pids(spec)
            print(json.dumps({"master_url": spec.master_url, "pids": pids,
                              "alive_workers": alive_workers(spec) if pids else 0}))
    except ConfigError as exc:
        print(f"cluster: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
