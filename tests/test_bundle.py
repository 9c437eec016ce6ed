"""Scheduling files: the Databricks Asset Bundle (databricks.yml, resources/*.yml) and the cron example.

Everything they reference must exist and be valid: the wheel's package name and console script
(setup.cfg), the subcommands, the config files (which must pass the job's checks with the bundle's
overrides applied), the notebooks and the widgets' config files, variables, clusters and task keys."""

from __future__ import annotations

import configparser
import importlib
import re
import shlex
from pathlib import Path

import pytest
import yaml

from coreset_spark import commands
from coreset_spark.cli import HELP

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = yaml.safe_load((ROOT / "databricks.yml").read_text())
RESOURCE_FILES = sorted((ROOT / "resources").glob("*.yml"))


def setup_cfg() -> tuple[str, dict[str, str]]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    scripts = {}
    for line in cfg["options.entry_points"]["console_scripts"].strip().splitlines():
        name, _, target = line.partition("=")
        scripts[name.strip()] = target.strip()
    return cfg["metadata"]["name"], scripts


PACKAGE, SCRIPTS = setup_cfg()


def jobs() -> list[tuple[Path, str, dict]]:
    out = []
    for path in RESOURCE_FILES:
        for name, job in yaml.safe_load(path.read_text())["resources"]["jobs"].items():
            out.append((path, name, job))
    return out


def substitute(text: str, job: dict) -> str:
    """Bundle variables -> their defaults; job parameters -> their defaults; the synced files' root -> the repo."""
    variables = {k: str(v.get("default")) for k, v in BUNDLE["variables"].items()}
    text = text.replace("${workspace.file_path}", str(ROOT))
    for name, value in variables.items():
        text = text.replace("${var." + name + "}", value)
    for param in job.get("parameters", []):
        text = text.replace("{{job.parameters." + param["name"] + "}}", str(param["default"]))
    assert "${" not in text and "{{" not in text, f"unresolved reference in {text!r}"
    return text


def test_console_script_and_package_exist():
    assert PACKAGE == "coreset_spark" and "coreset-spark" in SCRIPTS
    module, _, function = SCRIPTS["coreset-spark"].partition(":")
    assert callable(getattr(importlib.import_module(module), function))


def test_bundle_structure():
    assert BUNDLE["bundle"]["name"] == "coreset_spark"
    included = {p for pattern in BUNDLE["include"] for p in ROOT.glob(pattern)}
    assert set(RESOURCE_FILES) <= included and RESOURCE_FILES
    (artifact,) = BUNDLE["artifacts"].values()
    assert artifact["type"] == "whl" and (ROOT / artifact["path"] / "setup.cfg").is_file()
    assert "--wheel-dir dist" in artifact["build"]
    assert BUNDLE["targets"]["dev"]["default"] is True and BUNDLE["targets"]["prod"]["mode"] == "production"
    used = {m for path in RESOURCE_FILES for m in re.findall(r"\$\{var\.(\w+)\}", path.read_text())}
    assert used <= set(BUNDLE["variables"]), f"undeclared variables {used - set(BUNDLE['variables'])}"


def wheel_tasks():
    return [(p, name, job, t) for p, name, job in jobs() for t in job["tasks"] if "python_wheel_task" in t]


def notebook_tasks():
    return [(p, name, job, t) for p, name, job in jobs() for t in job["tasks"] if "notebook_task" in t]


def test_every_job_is_well_formed():
    assert {name for _, name, _ in jobs()} >= {"coreset_pipeline", "coreset_update", "coreset_clean", "coreset_notebooks"}
    for path, name, job in jobs():
        keys = [t["task_key"] for t in job["tasks"]]
        assert len(set(keys)) == len(keys), name
        clusters = {c["job_cluster_key"] for c in job.get("job_clusters", [])}
        for task in job["tasks"]:
            assert task["job_cluster_key"] in clusters, (name, task["task_key"])
            assert {d["task_key"] for d in task.get("depends_on", [])} <= set(keys[:keys.index(task["task_key"])])
            for library in task.get("libraries", []):  # the wheel the bundle's artifact builds into dist/
                assert (path.parent / library["whl"]).parent.resolve() == (ROOT / "dist").resolve()
        for cluster in job.get("job_clusters", []):
            assert {"spark_version", "node_type_id", "num_workers"} <= set(cluster["new_cluster"])


def test_every_job_command_has_a_wheel_task_with_a_valid_config():
    seen = set()
    for _, name, job, task in wheel_tasks():
        wheel = task["python_wheel_task"]
        assert wheel["package_name"] == PACKAGE and wheel["entry_point"] in SCRIPTS
        args = [substitute(str(a), job) for a in wheel["parameters"]]
        command = args[0]
        assert command in HELP and command != "run", (name, command)
        seen.add(command)
        assert args[1] == "--config" and Path(args[2]).is_file(), args
        overrides = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
        assert len(overrides) == args.count("--set") and len(args) == 3 + 2 * len(overrides), args
        config = commands.check_config(command, commands.load_config(args[2], overrides))
        assert config.get("spark", {}).get("delta") == "builtin", f"{args[2]}: Databricks has Delta built in"
    assert seen == set(commands.COMMANDS)  # build, update, tune, evaluate, score, clean


QUARTZ_RANGES = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (1, 7)]


def quartz_ok(expression: str) -> bool:
    fields = expression.split()
    if len(fields) not in (6, 7):
        return False
    if (fields[3] == "?") == (fields[5] == "?"):  # exactly one of day-of-month and day-of-week is '?'
        return False
    for field, (low, high) in zip(fields, QUARTZ_RANGES):
        if field in ("*", "?"):
            continue
        for part in field.split(","):
            base = part.split("/")[0]
            for value in base.split("-"):
                if value != "*" and not (value.isdigit() and low <= int(value) <= high):
                    return False
    return True


def test_the_update_runs_daily_on_a_quartz_schedule():
    scheduled = [(name, job) for _, name, job in jobs() if "schedule" in job]
    assert [name for name, _ in scheduled] == ["coreset_update"]
    schedule = scheduled[0][1]["schedule"]
    assert quartz_ok(schedule["quartz_cron_expression"]) and schedule["timezone_id"]
    _, _, hours, dom, month, dow = schedule["quartz_cron_expression"].split()[:6]
    assert hours.isdigit() and dom in ("*", "?") and month == "*" and dow in ("*", "?")  # once a day
    (task,) = scheduled[0][1]["tasks"]
    assert task["python_wheel_task"]["parameters"][0] == "update"
    config = commands.load_config(substitute(task["python_wheel_task"]["parameters"][2], scheduled[0][1]))
    assert config["new_rows"] == {"since_version": True}
    assert not quartz_ok("0 30 2 * * *") and not quartz_ok("0 61 2 * * ?") and quartz_ok("0 0/15 8-18 ? * 2-6")


def test_notebook_tasks_run_the_notebooks_with_valid_configs():
    names = set()
    for path, _, job, task in notebook_tasks():
        notebook = (path.parent / task["notebook_task"]["notebook_path"]).resolve()
        assert notebook.is_file() and notebook.parent == ROOT / "notebooks"
        assert notebook.read_text().startswith("# Databricks notebook source")
        names.add(notebook.name)
        params = {k: substitute(str(v), job) for k, v in task["notebook_task"]["base_parameters"].items()}
        assert set(params) == {"config", "overrides"}
        config_path = notebook.parent / params["config"]  # a notebook runs in its own folder
        config = commands.notebook_config({"config": str(config_path), "overrides": params["overrides"]})
        command = re.search(r"commands\.(\w+)\(config", notebook.read_text()).group(1)
        commands.check_config(command, config)
    assert names == {p.name for p in (ROOT / "notebooks").glob("*.py")}


CRON = ROOT / "conf" / "cron" / "coreset-spark.cron"
CRON_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]


def cron_entries() -> list[tuple[list[str], str]]:
    entries = []
    for line in CRON.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if re.match(r"^[A-Z_][A-Z0-9_]*=", line):  # an environment setting
            continue
        fields = line.split(None, 5)
        entries.append((fields[:5], fields[5]))
    return entries


def test_cron_example_references_existing_jobs_and_configs():
    entries = cron_entries()
    assert len(entries) >= 2
    commands_run = []
    for fields, command in entries:
        for field, (low, high) in zip(fields, CRON_RANGES):
            for part in field.split(","):
                for value in part.split("/")[0].split("-"):
                    assert value == "*" or low <= int(value) <= high, (field, command)
        for step in re.split(r"&&|;", command):
            words = shlex.split(step.split(">>")[0])
            if not words or words[0] in ("cd", "mkdir"):
                continue
            if words[0].endswith("spark-submit"):
                script = next(w for w in words if w.endswith(".py"))
                assert (ROOT / script).is_file(), script
                sub = Path(script).stem
                args = words[words.index(script) + 1:]
            else:
                assert Path(words[0]).name in SCRIPTS, words[0]
                sub, args = words[1], words[2:]
            assert sub in commands.COMMANDS, sub
            config = ROOT / args[args.index("--config") + 1]
            assert config.is_file(), config
            overrides = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
            commands.check_config(sub, commands.load_config(config, overrides))
            commands_run.append(sub)
    assert "update" in commands_run
    daily = [fields for fields, command in entries if "update" in command]
    assert daily and all(f[2:] == ["*", "*", "*"] for f in daily)


@pytest.mark.parametrize("name", sorted(commands.COMMANDS))
def test_every_command_has_a_job_script_and_configs(name):
    script = (ROOT / "jobs" / f"{name}.py").read_text()
    assert f'cli(["{name}", ' in script and "def main(" in script
    for path in (ROOT / "conf" / f"{name}.yaml", ROOT / "conf" / "databricks" / f"{name}.yaml"):
        commands.check_config(name, commands.load_config(path))
