"""Stage train: compare candidate algorithms by cross-validation and keep the best that fits
the latency and size budgets. Every candidate is a nested MLflow run."""

from __future__ import annotations

import sys
from typing import Any

import mlflow
import numpy as np
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline

from core import registry
from core.specs import get_spec
from pipeline import algorithms, io, measure, params

SCORING = {"regression": "neg_root_mean_squared_error", "classification": "accuracy"}


def cv_splitter(task: str, folds: int, seed: int):
    """Shuffled K-fold (stratified for classification) with a fixed seed."""
    cls = StratifiedKFold if task == "classification" else KFold
    return cls(n_splits=folds, shuffle=True, random_state=seed)


def evaluate_candidate(
    model: str, algo: str, hyper: dict, features: Any, x: np.ndarray, y: np.ndarray, cfg: dict
) -> dict[str, Any]:
    """Cross-validate one candidate, then fit it on all training rows and measure serving cost."""
    spec = get_spec(model)
    seed = params.seed()
    pipe = Pipeline(
        [("features", clone(features)), ("model", algorithms.build(spec.task, algo, hyper, seed))]
    )
    scores = cross_val_score(
        pipe, x, y, cv=cv_splitter(spec.task, cfg["cv_folds"], seed), scoring=SCORING[spec.task]
    )
    # Report positive RMSE for regression: sklearn's scorer is negated so bigger is better.
    cv_metric = float(-scores.mean()) if spec.task == "regression" else float(scores.mean())
    pipe.fit(x, y)
    return {
        "algorithm": algo,
        "params": dict(hyper or {}),
        "cv_metric": cv_metric,
        "cv_std": float(scores.std()),
        "latency_ms": measure.single_row_latency_ms(pipe, x),
        "artifact_mb": measure.artifact_mb(pipe),
        "pipeline": pipe,
    }


def pick(results: list[dict], cfg: dict, greater_is_better: bool) -> dict:
    """Best CV metric among candidates within the latency and size budgets."""
    fitting = [
        r
        for r in results
        if r["latency_ms"] <= cfg["max_latency_ms"] and r["artifact_mb"] <= cfg["max_artifact_mb"]
    ]
    if not fitting:
        raise SystemExit(
            "train: no candidate fits the budgets "
            f"(max_latency_ms={cfg['max_latency_ms']}, max_artifact_mb={cfg['max_artifact_mb']})"
        )
    return (max if greater_is_better else min)(fitting, key=lambda r: r["cv_metric"])


def main(model: str) -> None:
    """Write models/<model>/model.pkl and train.json."""
    cfg = {"cv_folds": 5, "max_latency_ms": 1.0, "max_artifact_mb": 20.0}
    cfg.update(params.section("train", model))
    spec = get_spec(model)
    x, y = io.read_split(model, "train")
    features = io.load_object(io.model_dir(model) / "features.pkl")

    registry.ensure_store()
    metric = f"cv_{spec.primary_metric}"
    results = []
    with mlflow.start_run(run_name=f"train-{model}") as parent:
        mlflow.set_tags({"model": model, "stage": "train"})
        for algo, hyper in cfg["candidates"].items():
            with mlflow.start_run(run_name=f"{model}-{algo}", nested=True):
                result = evaluate_candidate(model, algo, hyper, features, x, y, cfg)
                mlflow.set_tags({"model": model, "algorithm": algo})
                mlflow.log_params({f"model.{k}": v for k, v in result["params"].items()})
                mlflow.log_metrics(
                    {
                        metric: result["cv_metric"],
                        f"{metric}_std": result["cv_std"],
                        "latency_ms": result["latency_ms"],
                        "artifact_mb": result["artifact_mb"],
                    }
                )
            results.append(result)
            print(
                f"train {model}: {algo:<24} {metric}={result['cv_metric']:.4f} "
                f"latency={result['latency_ms']:.3f}ms size={result['artifact_mb']:.2f}MB"
            )
        best = pick(results, cfg, spec.greater_is_better)
        mlflow.log_metric(metric, best["cv_metric"])
        mlflow.set_tag("best_algorithm", best["algorithm"])

    io.save_object(io.model_dir(model) / "model.pkl", best["pipeline"])
    summary = {k: v for k, v in best.items() if k != "pipeline"}
    summary["run_id"] = parent.info.run_id
    summary["candidates"] = [{k: v for k, v in r.items() if k != "pipeline"} for r in results]
    io.write_json(io.model_dir(model) / "train.json", summary)
    print(f"train {model}: picked {best['algorithm']}")


if __name__ == "__main__":
    main(sys.argv[1])
