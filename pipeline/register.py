"""Stage register: log the candidate to MLflow, register a version, set @challenger, then apply
the promotion gate: @champion moves only if the candidate beats it on the same holdout rows."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from importlib.metadata import version as pkg_version
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import infer_signature

from core import compiled, registry
from core.conformal import CONFORMAL_FILE
from core.specs import get_spec
from pipeline import io, params
from pipeline.metrics import holdout_metrics

SERVING_PACKAGES = ("scikit-learn", "numpy", "scipy", "skops", "pandas")


def data_hash(model: str) -> str:
    """sha256 over the prepared train and holdout files."""
    digest = hashlib.sha256()
    for split in ("train", "holdout"):
        digest.update((io.prepared_dir(model) / f"{split}.csv").read_bytes())
    return digest.hexdigest()


def git_commit() -> str:
    """GIT_COMMIT (an image records the commit it was built from: it has no .git), else the
    workspace's git commit, else 'unknown'."""
    if os.environ.get("GIT_COMMIT"):
        return os.environ["GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def gate(model: str, metrics: dict[str, float], min_improvement: float) -> dict[str, Any]:
    """Decide promotion against the current champion, re-scored on this holdout."""
    spec = get_spec(model)
    metric = spec.primary_metric
    champ = registry.champion(spec.registered_name)
    if champ is None:
        return {"promote": True, "reason": "first candidate passing validation: no champion yet"}
    x, y = io.read_split(model, "holdout")
    try:
        champ_metrics = holdout_metrics(
            model, registry.load_model(spec.registered_name, champ.version), x, y
        )
    except Exception as exc:
        return {
            "promote": True,
            "reason": f"champion v{champ.version} could not be scored ({type(exc).__name__})",
            "champion_version": champ.version,
        }
    cand, ref = metrics[metric], champ_metrics[metric]
    result = {"champion_version": champ.version, "champion_metrics": champ_metrics}
    if spec.beats(cand, ref, min_improvement):
        result.update(
            promote=True,
            reason=f"{metric} {cand:.4f} beats champion v{champ.version} ({ref:.4f})",
        )
    else:
        result.update(
            promote=False,
            reason=(
                f"{metric} {cand:.4f} does not beat champion v{champ.version} ({ref:.4f}) "
                f"by min_improvement {min_improvement}"
            ),
        )
    return result


def compiled_files(model: str, serving: dict[str, Any]) -> list[str]:
    """The compiled form's files to store with the version: none unless it serves."""
    if serving.get("runtime", compiled.RUNTIME_SKLEARN) == compiled.RUNTIME_SKLEARN:
        return []
    return [str(path) for path in sorted(io.compiled_dir(model).iterdir()) if path.is_file()]


def log_candidate(
    model: str, estimator: Any, train: dict, metrics: dict, tags: dict, extra_files: list[str]
) -> str:
    """Log params, metrics, plots, drift reference and model to the train run; returns its URI.

    extra_files (conformal.json, the compiled form) go into the logged model's folder, so they
    belong to the version exactly as its scikit-learn model does.
    """
    import skops.io

    spec = get_spec(model)
    x, _ = io.read_split(model, "holdout")
    example = pd.DataFrame(x[:3], columns=spec.feature_names)
    signature = infer_signature(example, estimator.predict(x[:3]))
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(estimator))
    try:
        run = mlflow.start_run(run_id=train["run_id"])
    except Exception:
        run = mlflow.start_run(run_name=f"register-{model}")
    with run:
        mlflow.set_tags({**tags, "stage": "register"})
        mlflow.log_params({"algorithm": train["algorithm"]})
        mlflow.log_params({f"model.{k}": v for k, v in train["params"].items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        mlflow.log_artifacts(str(io.plots_dir(model)), artifact_path="plots")
        mlflow.log_artifact(str(io.reports_dir(model) / "validation.json"), artifact_path="reports")
        # At the run's root, under the name registry.load_drift_reference reads.
        mlflow.log_artifact(str(io.drift_reference_file(model)))
        info = mlflow.sklearn.log_model(
            estimator,
            name="model",
            signature=signature,
            input_example=example,
            serialization_format="skops",
            skops_trusted_types=trusted,
            pip_requirements=[f"{p}=={pkg_version(p)}" for p in SERVING_PACKAGES],
            extra_files=extra_files or None,
        )
    return info.model_uri


def main(model: str) -> None:
    """Register the candidate, gate it, and write reports/<model>/registration.json."""
    cfg = params.section("register", model)
    spec = get_spec(model)
    validation = io.read_json(io.reports_dir(model) / "validation.json")
    if not validation.get("passed"):
        raise SystemExit(f"register {model}: validation did not pass; nothing registered")
    registry.ensure_store()
    estimator = io.load_object(io.model_dir(model) / "model.pkl")
    train = io.read_json(io.model_dir(model) / "train.json")
    metrics = {k: v for k, v in io.read_json(io.metrics_file(model)).items() if k != "holdout_rows"}

    run_id = os.environ.get("PIPELINE_RUN_ID") or uuid.uuid4().hex
    # Reports written before the compile stage existed have no serving section.
    serving = validation.get("serving") or {"reason": "validated without a compiled form"}
    runtime = serving.get("runtime", compiled.RUNTIME_SKLEARN)
    tags = {
        "model": model,
        "algorithm": train["algorithm"],
        "params": json.dumps(train["params"], sort_keys=True),
        "metrics": json.dumps(metrics, sort_keys=True),
        "features": json.dumps(spec.feature_names),
        "data_hash": data_hash(model),
        "git_commit": git_commit(),
        "pipeline_run_id": run_id,
        compiled.TAG_RUNTIME: runtime,
    }
    if serving.get("reason"):
        tags[compiled.TAG_RUNTIME_REASON] = serving["reason"][:500]
    # conformal.json goes with every version, whatever runtime serves it: the API's intervals
    # (housing) and the monitor's live coverage read it from there.
    extra = [str(io.model_dir(model) / CONFORMAL_FILE), *compiled_files(model, serving)]
    uri = log_candidate(model, estimator, train, metrics, tags, extra)
    candidate = registry.register(uri, spec.registered_name, tags)
    registry.set_challenger(spec.registered_name, candidate.version)

    decision = gate(model, metrics, float(cfg["min_improvement"]))
    if decision["promote"]:
        registry.promote(spec.registered_name, candidate.version)
    else:
        registry.set_tags(
            spec.registered_name,
            candidate.version,
            {registry.TAG_PROMOTED: "false", registry.TAG_REJECTED_REASON: decision["reason"]},
        )
    io.write_json(
        io.reports_dir(model) / "registration.json",
        {
            "model": model,
            "registered_name": spec.registered_name,
            "candidate_version": candidate.version,
            "promoted": decision["promote"],
            "reason": decision["reason"],
            "metrics": metrics,
            "champion_metrics": decision.get("champion_metrics"),
            "champion_version": decision.get("champion_version"),
            "pipeline_run_id": run_id,
        },
    )
    verdict = "promoted to @champion" if decision["promote"] else "kept as @challenger"
    print(f"register {model}: version {candidate.version} {verdict}: {decision['reason']}")
    print(f"register {model}: version {candidate.version} is served by {runtime}")


if __name__ == "__main__":
    main(sys.argv[1])
