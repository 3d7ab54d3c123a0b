"""Stage validate: gates a candidate must pass before it may be registered.

A failing gate exits non-zero with one line per failure, so `dvc repro` stops and nothing is
registered. Every gate is computed from the model and the holdout, never from a clock, so the
report (a dependency of register) is the same bytes whenever the model is."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from core.specs import get_spec
from pipeline import cost, io, params

# Budget gates, checked against the model's structure rather than its metrics.
BUDGET_GATES = {"max_ops_per_row": cost.ops_per_row, "max_artifact_mb": cost.artifact_mb}


def metric_gates(metrics: dict[str, float], cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """min_<metric> / max_<metric> params compared with the evaluated metrics."""
    checks = []
    for key, limit in cfg.items():
        if key in BUDGET_GATES:
            continue
        bound, _, name = key.partition("_")
        value = metrics.get(name)
        if bound not in ("min", "max") or value is None:
            checks.append({"gate": key, "passed": False, "detail": f"unknown gate {key!r}"})
            continue
        passed = value >= limit if bound == "min" else value <= limit
        checks.append({"gate": key, "passed": bool(passed), "value": value, "limit": limit})
    return checks


def behaviour_gates(model: str, estimator: Any, x: np.ndarray, seed: int) -> list[dict[str, Any]]:
    """Contract schema, finite outputs and row-order invariance."""
    spec = get_spec(model)
    checks = []
    width = getattr(estimator, "n_features_in_", None)
    classes = [str(c) for c in getattr(estimator, "classes_", [])]
    schema_ok = width == len(spec.features) and (
        spec.task == "regression" or sorted(classes) == sorted(spec.classes)
    )
    checks.append(
        {
            "gate": "schema_matches_contract",
            "passed": bool(schema_ok),
            "detail": f"inputs={width} expected={len(spec.features)} classes={classes}",
        }
    )
    example = np.array([list(spec.example_row().values())], dtype=float)
    probe = np.vstack([x, example, np.zeros_like(example), example * 10.0])
    if spec.task == "regression":
        outputs = estimator.predict(probe).astype(float)
    else:
        outputs = estimator.predict_proba(probe)
    checks.append({"gate": "finite_outputs", "passed": bool(np.isfinite(outputs).all())})

    order = np.random.default_rng(seed).permutation(len(x))
    straight = estimator.predict(x)
    shuffled = estimator.predict(x[order])
    same = np.array_equal(straight[order], shuffled) or (
        spec.task == "regression" and np.allclose(straight[order], shuffled, rtol=0, atol=1e-9)
    )
    checks.append({"gate": "row_order_invariant", "passed": bool(same)})
    return checks


def main(model: str) -> None:
    """Write reports/<model>/validation.json; exit non-zero when any gate fails."""
    cfg = params.section("validate", model)
    estimator = io.load_object(io.model_dir(model) / "model.pkl")
    metrics = io.read_json(io.metrics_file(model))
    x, _ = io.read_split(model, "holdout")

    checks = metric_gates(metrics, cfg)
    for gate, measure in BUDGET_GATES.items():
        value = measure(estimator)
        checks.append(
            {"gate": gate, "passed": value <= cfg[gate], "value": value, "limit": cfg[gate]}
        )
    checks += behaviour_gates(model, estimator, x, params.seed())
    failed = [c for c in checks if not c["passed"]]
    io.write_json(
        io.reports_dir(model) / "validation.json", {"passed": not failed, "checks": checks}
    )
    for check in checks:
        status = "ok  " if check["passed"] else "FAIL"
        extra = f" value={check['value']:.4g} limit={check['limit']}" if "value" in check else ""
        print(f"validate {model}: {status} {check['gate']}{extra}")
    if failed:
        names = ", ".join(c["gate"] for c in failed)
        raise SystemExit(f"validate {model}: candidate rejected by gate(s): {names}")


if __name__ == "__main__":
    main(sys.argv[1])
