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
    return int(load(path)["seed"])


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


def _stage(params: dict[str, Any], stage: str, model: str) -> dict[str, Any]:
    cfg = (params.get(stage) or {}).get(model)
    if not isinstance(cfg, dict):
        raise ParamsError(f"{stage}.{model} is missing: params.yaml must set it")
    return cfg


def _required(cfg: dict[str, Any], where: str, key: str) -> Any:
    # Defaults live in params.yaml only: a stage never guesses a value the file does not hold.
    if key not in cfg:
        raise ParamsError(f"{where}.{key} is missing: params.yaml must set it")
    return cfg[key]


# Keys each stage reads, by task, and how each one is checked.
FEATURE_KEYS = {"regression": ("geo", "ratios"), "classification": ("scale",)}
BUDGET_KEYS = {"max_ops_per_row": _positive_int, "max_artifact_mb": _positive}


# The coverage gate of regression models (validate): conformal intervals on the holdout.
COVERAGE_KEYS = ("interval_levels", "max_coverage_gap")


def _check_coverage(where: str, gates: dict[str, Any]) -> None:
    levels = _required(gates, where, "interval_levels")
    if not isinstance(levels, list) or not levels:
        raise ParamsError(f"{where}.interval_levels must be a non-empty list, got {levels!r}")
    for level in levels:
        _fraction(f"{where}.interval_levels", level)
    _fraction(f"{where}.max_coverage_gap", _required(gates, where, "max_coverage_gap"), 0, 0.5)


def check(params: dict[str, Any]) -> None:
    """Raise ParamsError with a clear message for anything missing, out of range or unknown."""
    if not isinstance(params.get("seed"), int) or isinstance(params.get("seed"), bool):
        raise ParamsError(f"seed must be an integer, got {params.get('seed')!r}")
    for model, spec in MODEL_SPECS.items():
        where = f"prepare.{model}"
        prep = _stage(params, "prepare", model)
        _fraction(f"{where}.holdout_fraction", _required(prep, where, "holdout_fraction"), 0, 0.9)

        where = f"features.{model}"
        feats = _stage(params, "features", model)
        for key in FEATURE_KEYS[spec.task]:
            if not isinstance(_required(feats, where, key), bool):
                raise ParamsError(f"{where}.{key} must be true or false, got {feats[key]!r}")

        where = f"train.{model}"
        train = _stage(params, "train", model)
        _positive(f"{where}.cv_folds", _required(train, where, "cv_folds"), integer=True)
        if train["cv_folds"] < 2:
            raise ParamsError(f"{where}.cv_folds must be at least 2")
        for key, checker in BUDGET_KEYS.items():
            checker(f"{where}.{key}", _required(train, where, key))
        candidates = train.get("candidates") or {}
        if not candidates:
            raise ParamsError(f"{where}.candidates must name at least one algorithm")
        known = ALGORITHMS[spec.task]
        for algo, hyper in candidates.items():
            if algo not in known:
                raise ParamsError(
                    f"{where}.candidates: unknown algorithm {algo!r} for {spec.task}; "
                    f"choose from {sorted(known)}"
                )
            for key, value in (hyper or {}).items():
                if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                    raise ParamsError(
                        f"{where}.candidates.{algo}.{key} must not be negative, got {value}"
                    )

        where = f"compile.{model}"
        if not isinstance(_required(_stage(params, "compile", model), where, "enabled"), bool):
            raise ParamsError(f"{where}.enabled must be true or false")

        if spec.task == "classification":
            where = f"evaluate.{model}"
            folds = _required(_stage(params, "evaluate", model), where, "cv_folds")
            _positive(f"{where}.cv_folds", folds, integer=True)

        where = f"validate.{model}"
        gates = _stage(params, "validate", model)
        for key, checker in BUDGET_KEYS.items():
            checker(f"{where}.{key}", _required(gates, where, key))
        if spec.task == "regression":
            _check_coverage(where, gates)
        for key, value in gates.items():
            if key in BUDGET_KEYS or (spec.task == "regression" and key in COVERAGE_KEYS):
                continue
            if key.startswith(("min_accuracy", "min_r2", "min_macro_f1")):
                _fraction(f"{where}.{key}", value, -1.0 if key == "min_r2" else 0.0, 1.0001)
            else:
                _positive(f"{where}.{key}", value)

        where = f"register.{model}"
        reg = _stage(params, "register", model)
        _non_negative(f"{where}.min_improvement", _required(reg, where, "min_improvement"))

    check_monitor(params)
