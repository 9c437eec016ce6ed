"""Experiment tracking with MLflow (optional: ``pip install 'coreset_spark[tracking]'``).

One run per search: the search settings and the best configuration as parameters, the coreset
cross-validation scores (and the full-data hold-out scores of the finalists, when given) as
metrics, the coreset's lineage as tags (source table and Delta version, seed, family, level,
rows, weight total, level sizes), the coreset itself as a small Parquet artifact, every trial as
JSON, and the best model with its signature. The store is a local SQLite file unless
``tracking_uri`` or ``MLFLOW_TRACKING_URI`` says otherwise (artifacts in ``mlartifacts/`` beside it);
nothing leaves the machine.

>>> # run_id = log_search(result, coreset, tree, validation=validate_finalists(result, test, tree))
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_URI = "sqlite:///mlflow.db"


def default_artifacts(uri: str) -> str | None:
    """Artifacts of a SQLite store go to ``mlartifacts/`` beside its file (not the working directory).

    >>> default_artifacts("sqlite:////tmp/runs/mlflow.db")
    'file:///tmp/runs/mlartifacts'
    """
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).resolve().parent.joinpath("mlartifacts").as_uri()
    return None


def lineage_tags(coreset: Any, tree: Any = None) -> dict[str, str]:
    """The coreset's lineage as flat string tags (``coreset.*``).

    >>> from coreset_spark.coreset import Coreset
    >>> c = Coreset(np.zeros((2, 1)), np.array([0, 1]), np.array([3.0, 5.0]), np.array([1, 2]), ["a"], ["n", "y"], 0)
    >>> lineage_tags(c)["coreset.weight_total"]
    '8.0'
    """
    tags = {"coreset.level": str(coreset.level), "coreset.rows": str(len(coreset)),
            "coreset.weight_total": str(float(np.sum(coreset.weight))), "coreset.task": coreset.task}
    if tree is not None:
        lineage = tree.lineage()
        source = lineage.get("source") or {}
        for key in ("format", "dataset", "path", "table", "version"):
            if key in source:
                tags[f"coreset.source.{key}"] = str(source[key])
        tags.update({"coreset.seed": str(lineage["seed"]), "coreset.family": str(lineage["params"]["family"]),
                     "coreset.size": str(lineage["params"]["size"]),
                     "coreset.level_sizes": json.dumps(lineage["level_sizes"]),
                     "coreset.input_rows": str(lineage["rows"])})
        if tree.store is not None:
            tags.update({"coreset.tree.path": tree.store.path, "coreset.tree.version": str(tree.store.version)})
    return tags


def log_search(result: Any, coreset: Any, tree: Any = None, *, validation: Sequence[Mapping[str, Any]] | None = None,
               tracking_uri: str | None = None, experiment: str = "coreset_spark", run_name: str | None = None,
               log_model: bool = True, artifact_location: str | None = None) -> str:
    """Log a :class:`~coreset_spark.tuning.SearchResult` on ``coreset`` as one MLflow run; returns its id."""
    try:
        import mlflow
        from mlflow.models import infer_signature
    except ImportError as exc:  # pragma: no cover - mlflow is in the tracking extra
        raise ImportError("experiment tracking needs MLflow: pip install 'coreset_spark[tracking]'") from exc
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=artifact_location or default_artifacts(uri))
    mlflow.set_experiment(experiment)
    best = result.best
    with mlflow.start_run(run_name=run_name or f"{result.method}-{best.candidate}") as run:
        mlflow.log_params({"search.method": result.method, "search.scoring": result.scoring, "search.cv": result.cv,
                           "search.backend": result.backend, "search.trials": len(result.trials),
                           "best.candidate": best.candidate,
                           **{f"best.{k}": v for k, v in best.params.items()}})
        mlflow.log_metrics({"cv_score": best.score, "cv_std": best.std,
                            **{f"seconds.{k}": v for k, v in result.seconds.items()}})
        for row in validation or []:
            rank = row["rank"]
            mlflow.log_metric(f"finalist{rank}.cv_score", float(row["cv_score"]))
            mlflow.log_metric(f"finalist{rank}.holdout_score", float(row["holdout_score"]))
            for key, value in row["holdout"].items():
                if isinstance(value, (int, float)) and np.isfinite(value):
                    mlflow.log_metric(f"finalist{rank}.holdout.{key}", float(value))
        mlflow.set_tags(lineage_tags(coreset, tree))
        with tempfile.TemporaryDirectory() as tmp:
            frame = coreset.to_pandas()
            frame.columns = [str(c) for c in frame.columns]
            frame.to_parquet(Path(tmp) / "coreset.parquet", index=False)
            (Path(tmp) / "trials.json").write_text(json.dumps(result.table(), indent=1, default=str))
            if validation:
                (Path(tmp) / "validation.json").write_text(json.dumps(
                    [{k: v for k, v in row.items() if k != "model"} for row in validation], indent=1, default=str))
            mlflow.log_artifacts(tmp, artifact_path="coreset")
        if log_model and result.best_estimator_ is not None:
            example = coreset.x[:5]
            signature = infer_signature(example, result.best_estimator_.predict(example))
            # cloudpickle: any scikit-learn compatible model (LightGBM, XGBoost, the PyTorch MLP) round-trips
            mlflow.sklearn.log_model(result.best_estimator_, name="model", signature=signature, input_example=example,
                                     serialization_format="cloudpickle")
        return str(run.info.run_id)
