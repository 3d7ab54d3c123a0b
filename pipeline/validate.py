"""Stage validate: gates a candidate must pass before it may be registered.

Regression candidates also pass a coverage gate: the conformal intervals of conformal.json
(calibrated by train on training rows only) must cover the holdout targets at each of
`interval_levels` within `max_coverage_gap` of the nominal level.

A failing gate exits non-zero with one line per failure, so `dvc repro` stops and nothing is
registered. Every gate is computed from the model and the holdout, never from a clock, so the
report (a dependency of register) is the same bytes whenever the model is.

Once every gate passed, the candidate is compiled for serving (pipeline/compile.py) and the
serving gate decides which runtime serves it: the compiled form only when it agrees with
scikit-learn on every holdout row, in one batch and row by row, and on every training row;
otherwise scikit-learn serves and the report says why. It never rejects the candidate:
scikit-learn is always there to serve it."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from core import compiled
from core.conformal import CONFORMAL_FILE, Intervals, level_name
from core.specs import get_spec
from pipeline import cost, io, params
from pipeline.compile import compile_model

# Budget gates, checked against the model's structure rather than its metrics.
BUDGET_GATES = {"max_ops_per_row": cost.ops_per_row, "max_artifact_mb": cost.artifact_mb}
# Params of the coverage gate (regression), not min_/max_ metric thresholds.
COVERAGE_PARAMS = ("interval_levels", "max_coverage_gap")


def metric_gates(metrics: dict[str, float], cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """min_<metric> / max_<metric> params compared with the evaluated metrics."""
    checks = []
    for key, limit in cfg.items():
        if key in BUDGET_GATES or key in COVERAGE_PARAMS:
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


def coverage_gates(
    intervals: Intervals, pred: np.ndarray, y: np.ndarray, levels: list[float], gap: float
) -> list[dict[str, Any]]:
    """One check per level: holdout coverage within gap of the nominal level."""
    checks = []
    for level in levels:
        coverage = float(intervals.covered(pred, y, level).mean())
        low, high = round(level - gap, 6), round(level + gap, 6)
        checks.append(
            {
                "gate": f"coverage_{level_name(level)}",
                "passed": bool(low <= coverage <= high),
                "value": coverage,
                "limit": [low, high],
                "detail": f"{intervals.method}, n={intervals.n}; holdout rows={len(y)}",
            }
        )
    return checks


def serving_gate(model: str, estimator: Any, files: dict[str, bytes], rows: list) -> dict:
    """Which runtime serves the candidate, and why (see the module docstring).

    rows: (name, matrix, one_by_one) triples; every row of each is compared.
    """
    task = get_spec(model).task
    manifest = compiled.Manifest.from_json(files[compiled.MANIFEST_FILE])
    if manifest.runtime == compiled.RUNTIME_SKLEARN:
        return {"runtime": compiled.RUNTIME_SKLEARN, "reason": manifest.reason}
    try:
        form = compiled.load(estimator, files)
    except Exception as exc:  # a compiled form that does not load cannot serve
        reason = f"the {manifest.runtime} form failed to load: {type(exc).__name__}: {exc}"
        return {"runtime": compiled.RUNTIME_SKLEARN, "reason": reason[:300]}
    checked = {}
    for name, x, one_by_one in rows:
        expected = compiled.sklearn_outputs(task, estimator, x)
        got = form.run(x)
        if one_by_one:  # a single-row call may take another code path than a batch
            got = np.concatenate([form.run(x[i : i + 1]) for i in range(len(x))])
        result = compiled.agreement(task, expected, got)
        checked[name] = {"rows": result.rows, "max_difference": result.max_difference}
        if not result.agrees:
            reason = f"{result.describe(manifest.runtime)} ({name})"
            return {"runtime": compiled.RUNTIME_SKLEARN, "reason": reason, "checked": checked}
    return {"runtime": manifest.runtime, "reason": None, "checked": checked}


def main(model: str) -> None:
    """Write reports/<model>/validation.json; exit non-zero when any gate fails."""
    cfg = params.section("validate", model)
    estimator = io.load_object(io.model_dir(model) / "model.pkl")
    metrics = io.read_json(io.metrics_file(model))
    x, y = io.read_split(model, "holdout")

    checks = metric_gates(metrics, cfg)
    if get_spec(model).task == "regression":
        intervals = Intervals.from_json((io.model_dir(model) / CONFORMAL_FILE).read_bytes())
        levels = [float(level) for level in cfg["interval_levels"]]
        gap = float(cfg["max_coverage_gap"])
        checks += coverage_gates(intervals, estimator.predict(x), y, levels, gap)
    for gate, measure in BUDGET_GATES.items():
        value = measure(estimator)
        checks.append(
            {"gate": gate, "passed": value <= cfg[gate], "value": value, "limit": cfg[gate]}
        )
    checks += behaviour_gates(model, estimator, x, params.seed())
    failed = [c for c in checks if not c["passed"]]
    report: dict[str, Any] = {"passed": not failed, "checks": checks}
    for check in checks:
        status = "ok  " if check["passed"] else "FAIL"
        extra = f" value={check['value']:.4g} limit={check['limit']}" if "value" in check else ""
        print(f"validate {model}: {status} {check['gate']}{extra}")
    if not failed:
        files = compile_model(model, estimator, params.section("compile", model)["enabled"])
        x_train, _ = io.read_split(model, "train")
        rows = [("holdout", x, False), ("holdout one by one", x, True), ("train", x_train, False)]
        report["serving"] = serving = serving_gate(model, estimator, files, rows)
        runtime = serving["runtime"]
        why = serving["reason"] or "agrees with scikit-learn"
        print(f"validate {model}: serving runtime {runtime}: {why}")
    io.write_json(io.reports_dir(model) / "validation.json", report)
    if failed:
        names = ", ".join(c["gate"] for c in failed)
        raise SystemExit(f"validate {model}: candidate rejected by gate(s): {names}")


if __name__ == "__main__":
    main(sys.argv[1])
