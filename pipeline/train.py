"""Stage train: compare candidate algorithms by cross-validation and keep the best that fits
the serving-cost and size budgets. Every candidate is a nested MLflow run.

The choice depends only on data, params and seed: budgets are computed from the fitted model's
structure (pipeline.cost), and fitting runs on one thread so the bytes of a model do not depend
on the machine's core count. Measured latency is recorded, never used.

The picked candidate's out-of-fold predictions (each row scored by the fold model that did not
see it, from the same cross-validation that ranked it: nothing is refitted) calibrate what is
stored with the version in conformal.json: conformal prediction intervals for regression, the
probability calibration summary (Brier score, reliability bins) for classification."""

from __future__ import annotations

import sys
from typing import Any

import mlflow
import numpy as np
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold, cross_validate
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from core import registry
from core.conformal import CONFORMAL_FILE, KIND_CALIBRATION, Intervals
from core.specs import get_spec
from pipeline import algorithms, cost, io, measure, params
from pipeline.metrics import CV_SCORERS, brier, cv_metrics, reliability
from pipeline.validate import metric_gates

# train.json and MLflow keep everything about a candidate but the fitted objects.
FITTED = "pipeline"
FOLDS = "fold_models"  # (fold estimators, their test indices) from cross_validate
INTERNAL = (FITTED, FOLDS)


def cv_splitter(task: str, folds: int, seed: int):
    """Shuffled K-fold (stratified for classification) with a fixed seed."""
    cls = StratifiedKFold if task == "classification" else KFold
    return cls(n_splits=folds, shuffle=True, random_state=seed)


def evaluate_candidate(
    model: str, algo: str, hyper: dict, features: Any, x: np.ndarray, y: np.ndarray, cfg: dict
) -> dict[str, Any]:
    """Cross-validate one candidate, then fit it on all training rows and cost it."""
    spec = get_spec(model)
    seed = params.seed()
    pipe = Pipeline(
        [("features", clone(features)), ("model", algorithms.build(spec.task, algo, hyper, seed))]
    )
    scores = cross_validate(
        pipe,
        x,
        y,
        cv=cv_splitter(spec.task, cfg["cv_folds"], seed),
        scoring=CV_SCORERS[spec.task],
        # Kept for the out-of-fold predictions of the picked candidate (see oof_predictions):
        # the scores are the same as without them.
        return_estimator=True,
        return_indices=True,
    )
    cv = cv_metrics(spec.task, scores)
    pipe.fit(x, y)
    return {
        "algorithm": algo,
        "params": dict(hyper or {}),
        "cv_metric": cv[spec.primary_metric],
        "cv_std": float(np.std(scores[f"test_{spec.primary_metric}"])),
        "cv_metrics": cv,
        "ops_per_row": cost.ops_per_row(pipe),
        "artifact_mb": cost.artifact_mb(pipe),
        "latency_ms": measure.single_row_latency_ms(pipe, x),  # information only
        FITTED: pipe,
        FOLDS: (scores["estimator"], scores["indices"]["test"]),
    }


def oof_predictions(task: str, result: dict, x: np.ndarray) -> np.ndarray:
    """Each training row predicted by the fold model that did not see it (as cross_val_predict
    would, without refitting): values for regression, class probabilities for classification."""
    estimators, test_indices = result[FOLDS]
    out = None
    for estimator, index in zip(estimators, test_indices, strict=True):
        part = (
            estimator.predict(x[index])
            if task == "regression"
            else estimator.predict_proba(x[index])
        )
        if out is None:
            out = np.empty((len(x), *np.shape(part)[1:]), dtype=float)
        out[index] = part
    assert out is not None
    return out


def calibration(model: str, result: dict, x: np.ndarray, y: np.ndarray, folds: int) -> dict:
    """conformal.json of the picked candidate, from its out-of-fold predictions."""
    spec = get_spec(model)
    oof = oof_predictions(spec.task, result, x)
    if spec.task == "regression":
        return Intervals.fit(y, oof, folds).to_json()
    classes = [str(c) for c in result[FITTED].classes_]
    return {
        "kind": KIND_CALIBRATION,
        "method": f"out-of-fold probabilities ({folds} folds)",
        "n": len(y),
        "folds": folds,
        "classes": classes,
        "brier": round(brier(y, oof, classes), 6),
        "reliability": reliability(y, oof, classes),
    }


def over_budget(result: dict, cfg: dict) -> list[str]:
    """Why a candidate does not fit the budgets (empty when it fits)."""
    reasons = []
    if result["ops_per_row"] > cfg["max_ops_per_row"]:
        reasons.append(
            f"{result['ops_per_row']} ops per row > max_ops_per_row {cfg['max_ops_per_row']}"
        )
    if result["artifact_mb"] > cfg["max_artifact_mb"]:
        reasons.append(f"{result['artifact_mb']:.2f} MB > max_artifact_mb {cfg['max_artifact_mb']}")
    return reasons


def pick(results: list[dict], cfg: dict, greater_is_better: bool) -> tuple[dict, list[dict]]:
    """Best CV metric within the budgets, and every better candidate it passed over, with why."""
    # Stable sort: on a tie the candidate listed first in params.yaml wins.
    ranked = sorted(results, key=lambda r: r["cv_metric"], reverse=greater_is_better)
    excluded = []
    for result in ranked:
        reasons = over_budget(result, cfg)
        if not reasons:
            return result, excluded
        excluded.append(
            {"algorithm": result["algorithm"], "cv_metric": result["cv_metric"], "why": reasons}
        )
    raise SystemExit(f"train: no candidate fits the budgets: {describe(excluded)}")


def describe(excluded: list[dict]) -> str:
    """One line naming each excluded candidate and why."""
    return "; ".join(
        f"{e['algorithm']} (cv {e['cv_metric']:.4f}) excluded: {', '.join(e['why'])}"
        for e in excluded
    )


def check_fallback(model: str, best: dict, excluded: list[dict], gates: dict) -> None:
    """A fallback whose CV figures already fail validate's thresholds is an error now."""
    if not excluded:
        return
    # Only thresholds on figures cross-validation produces: a holdout-only one (brier) or the
    # coverage gate is validate's alone to check.
    comparable = {k: v for k, v in gates.items() if k.partition("_")[2] in best["cv_metrics"]}
    failing = [g for g in metric_gates(best["cv_metrics"], comparable) if not g["passed"]]
    if failing:
        causes = ", ".join(
            f"cv {g['gate'].partition('_')[2]} {g['value']:.4f} vs {g['gate']} {g['limit']}"
            if "value" in g
            else g.get("detail", g["gate"])
            for g in failing
        )
        raise SystemExit(
            f"train {model}: {describe(excluded)}; the fallback {best['algorithm']} cannot pass "
            f"validate ({causes}): raise the budget or change the candidates"
        )


def main(model: str) -> None:
    """Write models/<model>/model.pkl, conformal.json and train.json."""
    cfg = params.section("train", model)
    # Read to fail early on a hopeless fallback only: the fitted model never depends on it, so
    # it is not a DVC param of this stage (validate re-checks on the holdout anyway).
    gates = params.section("validate", model)
    spec = get_spec(model)
    x, y = io.read_split(model, "train")
    features = io.load_object(io.model_dir(model) / "features.pkl")

    registry.ensure_store()
    metric = f"cv_{spec.primary_metric}"
    results = []
    with mlflow.start_run(run_name=f"train-{model}") as parent, threadpool_limits(limits=1):
        mlflow.set_tags({"model": model, "stage": "train"})
        for algo, hyper in cfg["candidates"].items():
            with mlflow.start_run(run_name=f"{model}-{algo}", nested=True):
                result = evaluate_candidate(model, algo, hyper, features, x, y, cfg)
                mlflow.set_tags({"model": model, "algorithm": algo})
                mlflow.log_params({f"model.{k}": v for k, v in result["params"].items()})
                mlflow.log_metrics(
                    {
                        **{f"cv_{k}": v for k, v in result["cv_metrics"].items()},
                        f"{metric}_std": result["cv_std"],
                        "ops_per_row": result["ops_per_row"],
                        "artifact_mb": result["artifact_mb"],
                        "latency_ms": result["latency_ms"],
                    }
                )
            results.append(result)
            print(
                f"train {model}: {algo:<24} {metric}={result['cv_metric']:.4f} "
                f"ops/row={result['ops_per_row']} size={result['artifact_mb']:.2f}MB "
                f"(measured {result['latency_ms']:.3f}ms, not used)"
            )
        best, excluded = pick(results, cfg, spec.greater_is_better)
        if excluded:
            print(f"train {model}: {describe(excluded)}")
        check_fallback(model, best, excluded, gates)
        # On one thread too: the file's bytes depend on data, params and seed only.
        conformal = calibration(model, best, x, y, cfg["cv_folds"])
        mlflow.log_metric(metric, best["cv_metric"])
        mlflow.log_metric("latency_ms", best["latency_ms"])
        mlflow.set_tag("best_algorithm", best["algorithm"])
        if excluded:
            mlflow.set_tag("excluded_candidates", describe(excluded))

    io.save_object(io.model_dir(model) / "model.pkl", best[FITTED])
    io.write_json(io.model_dir(model) / CONFORMAL_FILE, conformal)
    summary = {k: v for k, v in best.items() if k not in INTERNAL}
    summary["run_id"] = parent.info.run_id
    summary["excluded"] = excluded
    summary["candidates"] = [{k: v for k, v in r.items() if k not in INTERNAL} for r in results]
    io.write_json(io.model_dir(model) / "train.json", summary)
    print(f"train {model}: picked {best['algorithm']}; {CONFORMAL_FILE}: {conformal['method']}")


if __name__ == "__main__":
    main(sys.argv[1])
