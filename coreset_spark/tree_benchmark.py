"""The benchmark of keeping a tree: incremental growth, changes by id, cleaning, interrupted saves.

Run with ``python jobs/benchmark_tree.py --config conf/benchmark_tree.yaml``; it prints the figures and
writes ``benchmark_tree.json`` and ``benchmark_tree.md`` to the output folder. Every timing is a
whole operation as a scheduled job would run it (load the saved tree, change it, save it; or build
it afresh and save it), measured side by side in the same run, alternating, so the ratios compare
like with like on a noisy machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from sklearn.linear_model import LogisticRegression

from coreset_spark import datasets
from coreset_spark.config import CoresetParams, DataSpec
from coreset_spark.coreset import CoresetTree
from coreset_spark.driver import fit_weighted
from coreset_spark.spark.build import build_tree
from coreset_spark.spark.evaluate import collect_encoded, evaluate_many
from coreset_spark.spark.frame import with_row_ids
from coreset_spark.spark.store import table_version

Log = Callable[[str], None]


def _timed(work: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = work()
    return result, time.perf_counter() - start


def _bucket(column: str, modulus: int) -> Any:
    return F.pmod(F.xxhash64(F.col(column), F.lit(17)), F.lit(modulus))


def _write_source(df: DataFrame, path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    (df.write.format("delta").option("delta.enableDeletionVectors", "true").save(path))


def _copy(src: str, dst: str) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)


def _model() -> LogisticRegression:
    return LogisticRegression(C=1.0, max_iter=2000, tol=1e-6)


def _quality(trees: Mapping[str, CoresetTree], train: DataFrame, test: DataFrame, levels: list[int],
             log: Log) -> dict[str, Any]:
    """Loss ratio (full-training-data log loss over the full-data model's) and test metrics per tree and level."""
    any_tree = next(iter(trees.values()))
    x, y, _ = collect_encoded(train, any_tree)
    full, _ = fit_weighted(_model(), x, y, None)
    del x, y
    models: dict[str, Any] = {"full": full}
    rows: dict[str, int] = {}
    for name, tree in trees.items():
        for level in levels:
            c = tree.get_coreset(level)
            models[f"{name}_level{level}"], _ = fit_weighted(_model(), c.x, c.y, c.weight)
            rows[f"{name}_level{level}"] = len(c)
    on_train = evaluate_many(models, train, any_tree)
    on_test = evaluate_many(models, test, any_tree)
    out = {}
    for name in models:
        out[name] = {"rows": rows.get(name), "loss_ratio": on_train[name]["log_loss_sum"] / on_train["full"]["log_loss_sum"],
                     "test_accuracy": on_test[name]["accuracy"], "test_roc_auc": on_test[name]["roc_auc"],
                     "test_log_loss": on_test[name]["log_loss"]}
        log(f"[tree-bench] quality {name}: {out[name]}")
    return out


def growth_and_changes(spark: SparkSession, cfg: Mapping[str, Any], work: Path, log: Log) -> dict[str, Any]:
    """Flights (3M rows): add 1% new rows, remove 100 rows, update 100 targets; each against a full rebuild."""
    df, spec = datasets.load(spark, "flights")
    df = with_row_ids(df, "rid")
    test_share, new_share = int(cfg.get("test_percent", 20)), float(cfg.get("new_fraction", 0.01))
    df = df.persist(StorageLevel.MEMORY_AND_DISK)
    test = df.where(_bucket("rid", 100) < test_share).persist(StorageLevel.MEMORY_AND_DISK)
    train = df.where(_bucket("rid", 100) >= test_share)
    is_new = _bucket("rid", 1_000_000) < int(round(new_share * 1_000_000))
    source = str(work / "flights_source")
    _write_source(train.where(~is_new), source)
    new_rows = train.where(is_new).persist(StorageLevel.MEMORY_AND_DISK)
    n_new, n_test = new_rows.count(), test.count()
    spec = DataSpec(target=spec.target, features=spec.features, row_id="rid")
    params = CoresetParams(size=int(cfg.get("size", 2000)), seed=0, fanin=int(cfg.get("fanin", 16)),
                           levels=int(cfg.get("levels", 0)))
    partitions = int(cfg.get("partitions", 16))

    def read(path: str) -> DataFrame:
        return spark.read.format("delta").load(path).repartition(partitions)

    def fresh_build(path: str, out: str) -> CoresetTree:
        tree = build_tree(read(path), spec, params, source={"format": "delta", "path": path,
                                                            "version": table_version(spark, path)})
        shutil.rmtree(out, ignore_errors=True)
        tree.save(out)
        return tree

    base_tree_path = str(work / "tree_initial")
    initial, seconds = _timed(lambda: fresh_build(source, base_tree_path))
    n_base = spark.read.format("delta").load(source).count()
    log(f"[tree-bench] initial tree of {n_base} rows built and saved in {seconds:.1f} s; levels {initial.level_sizes()}")
    report: dict[str, Any] = {"rows_initial": n_base, "rows_new": n_new, "rows_test": n_test, "partitions": partitions,
                              "params": params.__dict__, "initial_build_and_save_s": round(seconds, 2),
                              "level_sizes_initial": initial.level_sizes(), "repeats": int(cfg.get("repeats", 3))}
    with_new = str(work / "flights_with_new")
    _write_source(spark.read.format("delta").load(source).unionByName(new_rows), with_new)

    # Add 1% new rows: load + partial_build + save (only the changed nodes) vs build + save from scratch.
    times: dict[str, list[float]] = {"incremental": [], "incremental_without_load": [], "rebuild": []}
    grown = rebuilt = None
    for _ in range(report["repeats"]):
        copy = str(work / "tree_grow")
        _copy(base_tree_path, copy)
        start = time.perf_counter()
        loaded = CoresetTree.load(spark, copy)
        loaded_at = time.perf_counter()
        grown = loaded.partial_build(new_rows, source={"format": "delta", "path": with_new,
                                                        "version": table_version(spark, with_new)})
        grown.save(copy)
        end = time.perf_counter()
        times["incremental"].append(end - start)
        times["incremental_without_load"].append(end - loaded_at)
        rebuilt, seconds = _timed(lambda: fresh_build(with_new, str(work / "tree_rebuilt")))
        times["rebuild"].append(seconds)
        log(f"[tree-bench] add {n_new} rows: incremental {times['incremental'][-1]:.2f} s "
            f"(without load {times['incremental_without_load'][-1]:.2f} s), rebuild {seconds:.2f} s")
    assert grown is not None and rebuilt is not None
    inc, full = statistics.median(times["incremental"]), statistics.median(times["rebuild"])
    report["add_rows"] = {"seconds": times, "median_incremental_s": inc, "median_rebuild_s": full,
                          "ratio": inc / full,
                          "ratio_without_load": statistics.median(times["incremental_without_load"]) / full,
                          "level_sizes_grown": grown.level_sizes(), "level_sizes_rebuilt": rebuilt.level_sizes(),
                          "grown_stages_s": grown.timings,
                          "weights_sum": {str(k): float(grown.level_frame(k).agg(F.sum("weight")).collect()[0][0])
                                          for k in grown.levels}}
    train_all = spark.read.format("delta").load(with_new).persist(StorageLevel.MEMORY_AND_DISK)
    report["add_rows"]["quality"] = _quality({"grown": grown, "rebuilt": rebuilt}, train_all, test,
                                             list(range(min(2, grown.plan.levels + 1))), log)
    train_all.unpersist()

    # Remove 100 rows, and update the targets of 100 rows, on the grown tree's table.
    for change in ("remove", "update"):
        times = {"incremental": [], "rebuild": []}
        verified: dict[str, Any] = {}
        for repeat in range(report["repeats"]):
            table = str(work / f"flights_{change}")
            _write_source(spark.read.format("delta").load(with_new), table)
            tree_path = str(work / f"tree_{change}")
            fresh_build(table, tree_path)  # the tree the change starts from (not timed)
            ids = [r["rid"] for r in spark.read.format("delta").load(table)
                   .where(_bucket("rid", 1_000_003) < 60 + repeat * 7).limit(int(cfg.get("changed_rows", 100))).collect()]
            start = time.perf_counter()
            tree = CoresetTree.load(spark, tree_path)
            if change == "remove":
                changed = tree.remove_rows(ids)
            else:
                labels = {r["rid"]: 1 - int(r["late"]) for r in spark.read.format("delta").load(table)
                          .where(F.col("rid").isin(ids)).collect()}
                changed = tree.update_targets(labels)
            changed.save(tree_path)
            times["incremental"].append(time.perf_counter() - start)
            after, seconds = _timed(lambda: fresh_build(table, str(work / f"tree_{change}_rebuilt")))
            times["rebuild"].append(seconds)
            log(f"[tree-bench] {change} {len(ids)} rows: incremental {times['incremental'][-1]:.2f} s, "
                f"rebuild {seconds:.2f} s")
            back = CoresetTree.load(spark, tree_path)
            n_now = spark.read.format("delta").load(table).count()
            in_tree = {k: back.level_frame(k).where(F.col("row_id").isin(ids)).select("row_id", "target").collect()
                       for k in back.levels}
            if change == "remove":
                verified = {"removed_rows_left_in_tree": sum(len(v) for v in in_tree.values())}
            else:
                wrong = sum(1 for v in in_tree.values() for r in v if int(r["target"]) != labels[r["row_id"]])
                verified = {"changed_rows_in_tree": {str(k): len(v) for k, v in in_tree.items()},
                            "rows_with_old_label": wrong}
            verified["weights_sum_minus_rows"] = {
                str(k): float(back.level_frame(k).agg(F.sum("weight")).collect()[0][0]) - n_now for k in back.levels}
            verified["stages_s"] = changed.timings
        inc, full = statistics.median(times["incremental"]), statistics.median(times["rebuild"])
        report[f"{change}_rows"] = {"rows": int(cfg.get("changed_rows", 100)), "seconds": times,
                                    "median_incremental_s": inc, "median_rebuild_s": full, "ratio": inc / full,
                                    "verified": verified}
    report["interrupted_save"] = interrupted_save(spark, str(work / "tree_grow"), work, log)
    for frame in (df, test, new_rows):
        frame.unpersist()
    return report


KILL_SCRIPT = r"""
import json, sys, time
from coreset_spark.config import SparkSettings
from coreset_spark.coreset import CoresetTree
from coreset_spark.spark.session import get_spark
from coreset_spark.tree import CORESET_DDL
spark = get_spark(SparkSettings(master="local[2]", conf={"spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "2", "spark.databricks.delta.snapshotPartitions": "2"}))
tree = CoresetTree.load(spark, sys.argv[1])
print(json.dumps({"version": tree.store.version, "sizes": tree.level_sizes()}), flush=True)
if sys.argv[2] == "save":
    def slow(batches):
        for batch in batches:
            time.sleep(0.5)
            yield batch
    level = tree.plan.levels
    tree.levels[level] = tree.levels[level].repartition(16).mapInArrow(slow, CORESET_DDL)
    tree.pending = {("tree", level): set(range(tree.plan.n_leaves))}
    print("SAVING", flush=True)
    tree.save(sys.argv[1])
    print("SAVED", flush=True)
"""


def interrupted_save(spark: SparkSession, tree_path: str, work: Path, log: Log) -> dict[str, Any]:
    """Kill a process in the middle of a save (SIGKILL): the previous tree stays loadable and unchanged."""
    before = CoresetTree.load(spark, tree_path)
    version = before.store.version if before.store else -1
    digest = {k: before.level_frame(k).agg(F.sum("weight"), F.count(F.lit(1))).collect()[0] for k in before.levels}
    script = work / "kill_save.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    job = subprocess.Popen([sys.executable, str(script), tree_path, "save"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, env=env, start_new_session=True)
    assert job.stdout is not None
    for line in job.stdout:
        if line.startswith("SAVING"):
            break
    time.sleep(4.0)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=120)
    after = CoresetTree.load(spark, tree_path)
    same = all(after.level_frame(k).agg(F.sum("weight"), F.count(F.lit(1))).collect()[0] == digest[k]
               for k in before.levels)
    rerun = subprocess.run([sys.executable, str(script), tree_path, "load"], capture_output=True, text=True, env=env,
                           timeout=600)
    fresh = json.loads(rerun.stdout.strip().splitlines()[0])
    before.save(tree_path + "_rerun")
    result = {"version_before": version, "version_after_kill": table_version(spark, tree_path),
              "unchanged": bool(same), "loads_in_a_new_session": fresh["version"] == version,
              "rerun_save_succeeded": CoresetTree.load(spark, tree_path + "_rerun").level_sizes() == before.level_sizes()}
    log(f"[tree-bench] interrupted save: {result}")
    return result


def label_noise(spark: SparkSession, cfg: Mapping[str, Any], work: Path, log: Log) -> dict[str, Any]:
    """Flip 1% of the training labels; review the top 1% by cleaning score; fix what was found; retrain."""
    name = str(cfg.get("dataset", "kddcup99"))
    df, spec = datasets.load(spark, name)
    df = with_row_ids(df, "rid").persist(StorageLevel.MEMORY_AND_DISK)
    test = df.where(_bucket("rid", 100) < 30).persist(StorageLevel.MEMORY_AND_DISK)
    train = df.where(_bucket("rid", 100) >= 30)
    target = str(spec.target)
    labels = sorted(r[0] for r in train.select(target).distinct().collect())
    if len(labels) != 2:
        raise ValueError(f"the label-noise benchmark flips binary labels; {name} has {len(labels)} classes")
    share = float(cfg.get("flip_fraction", 0.01))
    flip = _bucket("rid", 1_000_000) >= 1_000_000 - int(round(share * 1_000_000))
    other = F.when(F.col(target) == F.lit(labels[0]), F.lit(labels[1])).otherwise(F.lit(labels[0]))
    noisy = train.withColumn(target, F.when(flip, other).otherwise(F.col(target)))
    source = str(work / f"{name}_noisy")
    _write_source(noisy, source)
    truth = {r["rid"]: r[target] for r in train.where(flip).select("rid", target).collect()}
    n = train.count()
    spec = DataSpec(**{**spec.__dict__, "row_id": "rid"})
    params = CoresetParams(size=int(cfg.get("size", 2000)), seed=0)
    tree = build_tree(spark.read.format("delta").load(source), spec, params,
                      source={"format": "delta", "path": source, "version": table_version(spark, source)})
    reviewed = int(round(share * n))
    ranked, seconds = _timed(lambda: tree.suspicious_rows(n=reviewed))
    found = ranked[ranked.row_id.isin(list(truth))]
    random_review = [r["rid"] for r in train.where(_bucket("rid", 1_000_003) < int(round(share * 1_000_003)))
                     .select("rid").collect()]
    random_hits = sum(1 for i in random_review if i in truth)
    log(f"[tree-bench] {name}: {len(truth)} of {n} labels flipped; top {reviewed} by cleaning score hold "
        f"{len(found)} flipped rows; a random {len(random_review)} hold {random_hits}")
    fixed, fix_seconds = _timed(lambda: tree.update_targets({int(i): truth[int(i)] for i in found.row_id}))
    clean_tree = build_tree(train, spec, params)
    x, y, _ = collect_encoded(train, clean_tree)
    models: dict[str, Any] = {"clean_full": fit_weighted(_model(), x, y, None)[0]}
    del x, y
    for label, t in (("clean_coreset", clean_tree), ("noisy_coreset", tree), ("fixed_coreset", fixed)):
        c = t.get_coreset(0)
        models[label] = fit_weighted(_model(), c.x, c.y, c.weight)[0]
    metrics = evaluate_many(models, test, clean_tree)
    accuracy = {k: v["accuracy"] for k, v in metrics.items()}
    out = {"dataset": name, "train_rows": n, "flipped": len(truth), "reviewed": reviewed,
           "review_level": int(tree.plan.levels), "rows_at_review_level": tree.level_sizes()[tree.plan.levels],
           "flipped_found_in_review": int(len(found)), "random_review_rows": len(random_review),
           "flipped_found_at_random": random_hits,
           "lift_over_random": (len(found) / reviewed) / max(random_hits / max(len(random_review), 1), 1e-12),
           "scoring_seconds": round(seconds, 2), "fix_seconds": round(fix_seconds, 2), "test_accuracy": accuracy,
           "gap_points_fixed_vs_clean_full": 100 * (accuracy["clean_full"] - accuracy["fixed_coreset"]),
           "gap_points_fixed_vs_clean_coreset": 100 * (accuracy["clean_coreset"] - accuracy["fixed_coreset"]),
           "gap_points_noisy_vs_clean_full": 100 * (accuracy["clean_full"] - accuracy["noisy_coreset"])}
    log(f"[tree-bench] {name}: test accuracy {accuracy}")
    df.unpersist()
    test.unpersist()
    return out


def run_tree_benchmark(spark: SparkSession, config: Mapping[str, Any], out_dir: Path, log: Log = print) -> dict[str, Any]:
    """Run the parts of ``config`` and write benchmark_tree.json / .md."""
    work = Path(str(config.get("work_dir", "output/benchmarks/tree_work"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "master": spark.sparkContext.master}
    out_dir.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        (out_dir / "benchmark_tree.json").write_text(json.dumps(report, indent=2, default=str))
        (out_dir / "benchmark_tree.md").write_text(markdown(report))

    if config.get("growth", {}).get("enabled", True):
        report["growth"] = growth_and_changes(spark, config.get("growth", {}), work, log)
        write()
    for part in config.get("label_noise", [{"dataset": "kddcup99"}]):
        if part.get("enabled", True):
            report.setdefault("label_noise", []).append(label_noise(spark, part, work, log))
            write()
    write()
    log(markdown(report))
    return report


def markdown(report: Mapping[str, Any]) -> str:
    """The figures as markdown."""
    lines = [f"# Keeping the tree: benchmark ({report['date']}, master {report['master']})", ""]
    g = report.get("growth")
    if g:
        lines += [f"Flights: initial tree of {g['rows_initial']:,} rows (levels {g['level_sizes_initial']}), "
                  f"{g['partitions']} partitions, medians of {g['repeats']} alternating repeats. Incremental = load the "
                  "saved tree + change + save the changed nodes; rebuild = build from the Delta table + save.", "",
                  "| operation | incremental s | rebuild s | ratio | check |", "|---|---|---|---|---|"]
        a = g["add_rows"]
        lines.append(f"| add {g['rows_new']:,} rows (1%) | {a['median_incremental_s']:.2f} | {a['median_rebuild_s']:.2f} | "
                     f"**{a['ratio']:.3f}** (without load {a['ratio_without_load']:.3f}) | weights sum per level "
                     f"{ {k: round(v) for k, v in a['weights_sum'].items()} } |")
        for change in ("remove", "update"):
            c = g.get(f"{change}_rows")
            if c:
                lines.append(f"| {change} {c['rows']} rows | {c['median_incremental_s']:.2f} | {c['median_rebuild_s']:.2f} | "
                             f"**{c['ratio']:.3f}** | { {k: v for k, v in c['verified'].items() if k != 'stages_s'} } |")
        lines += ["", "Quality after adding the rows (logistic regression, C = 1; loss ratio on all training rows):", "",
                  "| model | rows | loss ratio | test accuracy | test ROC AUC |", "|---|---|---|---|---|"]
        for name, q in a["quality"].items():
            lines.append(f"| {name} | {q['rows'] or '-'} | {q['loss_ratio']:.4f} | {q['test_accuracy']:.4f} | "
                         f"{q['test_roc_auc']:.4f} |")
        lines += ["", f"Interrupted save: {g['interrupted_save']}", ""]
    for ln in report.get("label_noise", []):
        lines += [f"Label noise, {ln['dataset']}: {ln['flipped']:,} of {ln['train_rows']:,} training labels flipped at "
                  f"random; the top {ln['reviewed']:,} rows by cleaning score (out-of-fold loss on the "
                  f"{ln['rows_at_review_level']:,} rows of level {ln['review_level']}) hold **{ln['flipped_found_in_review']}** "
                  f"flipped rows, a random {ln['random_review_rows']:,} rows hold {ln['flipped_found_at_random']}: "
                  f"**{ln['lift_over_random']:.1f} times** as many. Fixing the found rows (update_targets) took "
                  f"{ln['fix_seconds']} s.", "",
                  "| model | test accuracy |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in ln["test_accuracy"].items()]
        lines += ["", f"Gap, clean full-data model minus fixed coreset model: {ln['gap_points_fixed_vs_clean_full']:.3f} "
                  f"points (noisy coreset model: {ln['gap_points_noisy_vs_clean_full']:.3f}).", ""]
    return "\n".join(lines) + "\n"
