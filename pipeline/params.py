"""Loading and checking params.yaml; bad params fail here, before anything touches the registry."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import yaml

from core.specs import MODEL_SPECS
from pipeline.algorithms import ALGORITHMS

PARAMS_FILE = "params.yaml"


class ParamsError(ValueError):
    """params.yaml holds a value the pipeline cannot use."""


def load(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """The whole params file as a dict."""
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


def section(stage: str, model: str, path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """One stage's params for one model, after checking the whole file."""
    params = load(path)
    check(params)
    return dict(params.get(stage, {}).get(model) or {})


def seed(path: str | Path = PARAMS_FILE) -> int:
    """The shared random seed."""
    return int(load(path).get("seed", 0))


def _fraction(where: str, value: Any, low: float = 0.0, high: float = 1.0) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not low < value < high:
        raise ParamsError(f"{where} must be a number between {low} and {high}, got {value!r}")


def _positive(where: str, value: Any, integer: bool = False) -> None:
    kinds = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ParamsError(f"{where} must be {kind}, got {value!r}")


def _non_negative(where: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ParamsError(f"{where} must be a number >= 0, got {value!r}")


def _between(where: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ParamsError(f"{where} must be a number from {low} to {high}, got {value!r}")


# The monitor job's settings: which keys each task accepts and how each one is checked.
_positive_int = partial(_positive, integer=True)
MONITOR_COMMON = {
    "drift_window_rows": _positive_int,
    "drift_min_rows": _positive_int,
    "quality_window_rows": _positive_int,
    "quality_min_rows": _positive_int,
    "max_drift_psi": _positive,
    "cooldown_minutes": _non_negative,
}
MONITOR_KEYS = {
    "regression": {**MONITOR_COMMON, "max_live_rmse": _positive},
    "classification": {
        **MONITOR_COMMON,
        "min_live_accuracy": partial(_between, low=0.0, high=1.0),
    },
}


def check_monitor(params: dict[str, Any]) -> None:
    """Check the monitor section: known models, known keys for each task, values in range."""
    monitor = params.get("monitor") or {}
    if not isinstance(monitor, dict):
        raise ParamsError("monitor must map model names to their settings")
    unknown_models = sorted(set(monitor) - set(MODEL_SPECS))
    if unknown_models:
        raise ParamsError(
            f"monitor: unknown model(s) {unknown_models}; choose from {sorted(MODEL_SPECS)}"
        )
    for model, spec in MODEL_SPECS.items():
        cfg = monitor.get(model) or {}
        if not isinstance(cfg, dict):
            raise ParamsError(f"monitor.{model} must map setting names to values")
        known = MONITOR_KEYS[spec.task]
        for key, value in cfg.items():
            if key not in known:
                raise ParamsError(
                    f"monitor.{model}.{key} is not a monitor setting for a {spec.task} model; "
                    f"choose from {sorted(known)}"
                )
            known[key](f"monitor.{model}.{key}", value)
        for kind in ("drift", "quality"):
            low, high = cfg.get(f"{kind}_min_rows"), cfg.get(f"{kind}_window_rows")
            if low is not None and high is not None and low > high:
                # The window would never hold enough rows: that check could never fire.
                raise ParamsError(
                    f"monitor.{model}.{kind}_min_rows ({low}) must not exceed "
                    f"{kind}_window_rows ({high})"
                )


def check(params: dict[str, Any]) -> None:
    """Raise ParamsError with a clear message for anything out of range or unknown."""
    if not isinstance(params.get("seed", 0), int):
        raise ParamsError(f"seed must be an integer, got {params.get('seed')!r}")
    for model, spec in MODEL_SPECS.items():
        prep = (params.get("prepare") or {}).get(model) or {}
        _fraction(f"prepare.{model}.holdout_fraction", prep.get("holdout_fraction", 0.2), 0.0, 0.9)

        train = (params.get("train") or {}).get(model) or {}
        _positive(f"train.{model}.cv_folds", train.get("cv_folds", 5), integer=True)
        if train.get("cv_folds", 5) < 2:
            raise ParamsError(f"train.{model}.cv_folds must be at least 2")
        _positive(f"train.{model}.max_latency_ms", train.get("max_latency_ms", 1.0))
        _positive(f"train.{model}.max_artifact_mb", train.get("max_artifact_mb", 20))
        candidates = train.get("candidates") or {}
        if not candidates:
            raise ParamsError(f"train.{model}.candidates must name at least one algorithm")
        known = ALGORITHMS[spec.task]
        for algo, hyper in candidates.items():
            if algo not in known:
                raise ParamsError(
                    f"train.{model}.candidates: unknown algorithm {algo!r} for {spec.task}; "
                    f"choose from {sorted(known)}"
                )
            for key, value in (hyper or {}).items():
                if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                    raise ParamsError(
                        f"train.{model}.candidates.{algo}.{key} must not be negative, got {value}"
                    )

        gates = (params.get("validate") or {}).get(model) or {}
        for key, value in gates.items():
            if key.startswith(("min_accuracy", "min_r2", "min_f1")):
                _fraction(
                    f"validate.{model}.{key}", value, -1.0 if key == "min_r2" else 0.0, 1.0001
                )
            else:
                _positive(f"validate.{model}.{key}", value)

        reg = (params.get("register") or {}).get(model) or {}
        _non_negative(f"register.{model}.min_improvement", reg.get("min_improvement", 0.0))

    check_monitor(params)
