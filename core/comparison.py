"""Champion against challenger on the same live requests: agreement, live quality, a verdict.

Both versions scored the same request rows (core.prediction_log.shadow: one answered the
client, the other scored the row off the request path). Over the newest `window_rows` of those
rows the comparison measures how far the two disagree (classification: how often they give
the same label, and how far their probabilities are; regression: absolute and signed
differences, challenger minus champion), then scores both on the SAME rows that carry a
ground-truth label (core.feedback), and decides like the register gate
(core.specs.ModelSpec.beats): the challenger is better when its primary metric beats the
champion's by at least `min_improvement` (housing: lower RMSE; iris: higher accuracy), the
champion is better in the mirror case, and below `min_labels` labelled rows nothing is
decided.

The settings are the `comparison:` section of params.yaml (load_params), read by the API (GET
/models/<name>/comparison) and by the monitor (gauges, and the optional promotion rule).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from sqlalchemy.engine import Engine

from core import feedback
from core.prediction_log import shadow
from core.specs import MODEL_SPECS, ModelSpec

SECTION = "comparison"

# Verdicts.
NO_CHAMPION = "no_champion"
NO_CHALLENGER = "no_challenger"
INSUFFICIENT_LABELS = "insufficient_labels"
CHALLENGER_BETTER = "challenger_better"
CHAMPION_BETTER = "champion_better"
NO_CLEAR_DIFFERENCE = "no_clear_difference"
VERDICTS = (
    NO_CHAMPION,
    NO_CHALLENGER,
    INSUFFICIENT_LABELS,
    CHALLENGER_BETTER,
    CHAMPION_BETTER,
    NO_CLEAR_DIFFERENCE,
)

# The rule that decided a verdict.
RULE_ALIASES = "aliases"  # no champion, or no challenger distinct from it
RULE_MIN_LABELS = "min_labels"
RULE_MIN_IMPROVEMENT = "min_improvement"
RULES = (RULE_ALIASES, RULE_MIN_LABELS, RULE_MIN_IMPROVEMENT)


class ComparisonParamsError(ValueError):
    """The comparison section of params.yaml holds a value the comparison cannot use."""


@dataclass(frozen=True)
class ComparisonParams:
    """One model's `comparison:` settings (every key is set in params.yaml)."""

    window_rows: int  # newest shadow-scored rows compared
    min_labels: int  # fewer labelled rows among them: no verdict
    min_improvement: float  # a better primary metric by at least this decides
    promote: bool  # the monitor acts on the verdict (promote or reject the challenger)


KEYS = [f.name for f in dataclasses.fields(ComparisonParams)]


def _positive_int(where: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ComparisonParamsError(f"{where} must be a positive integer, got {value!r}")


def _non_negative(where: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ComparisonParamsError(f"{where} must be a number >= 0, got {value!r}")


def _boolean(where: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ComparisonParamsError(f"{where} must be true or false, got {value!r}")


CHECKS = {
    "window_rows": _positive_int,
    "min_labels": _positive_int,
    "min_improvement": _non_negative,
    "promote": _boolean,
}


def check_params(params: Mapping[str, Any]) -> dict[str, ComparisonParams]:
    """Every model's comparison settings from a whole params dict, checked (names the key)."""
    section = params.get(SECTION)
    if not isinstance(section, dict):
        raise ComparisonParamsError(f"{SECTION} is missing: params.yaml must set it per model")
    unknown_models = sorted(set(section) - set(MODEL_SPECS))
    if unknown_models:
        raise ComparisonParamsError(
            f"{SECTION}: unknown model(s) {unknown_models}; choose from {sorted(MODEL_SPECS)}"
        )
    found = {}
    for model in MODEL_SPECS:
        cfg = section.get(model)
        if not isinstance(cfg, dict):
            raise ComparisonParamsError(f"{SECTION}.{model} is missing: params.yaml must set it")
        for key, value in cfg.items():
            if key not in CHECKS:
                raise ComparisonParamsError(
                    f"{SECTION}.{model}.{key} is not a comparison setting; choose from {KEYS}"
                )
            CHECKS[key](f"{SECTION}.{model}.{key}", value)
        missing = [key for key in KEYS if key not in cfg]
        if missing:
            raise ComparisonParamsError(
                f"{SECTION}.{model}.{missing[0]} is missing: params.yaml must set it"
            )
        if cfg["min_labels"] > cfg["window_rows"]:
            # The window would never hold enough labels: no verdict could ever be reached.
            raise ComparisonParamsError(
                f"{SECTION}.{model}.min_labels ({cfg['min_labels']}) must not exceed "
                f"window_rows ({cfg['window_rows']})"
            )
        found[model] = ComparisonParams(**cfg)
    return found


def load_params(path: str | Path) -> dict[str, ComparisonParams]:
    """Every model's comparison settings from a params.yaml file (read on every call, so a
    change applies without a restart)."""
    with open(path, encoding="utf-8") as fh:
        return check_params(yaml.safe_load(fh) or {})


# -- the comparison --------------------------------------------------------------------------------


def _label(output: Any) -> Any:
    return output.get("label") if isinstance(output, dict) else output


def _probabilities(output: Any) -> dict[str, float]:
    if isinstance(output, dict) and isinstance(output.get("probabilities"), dict):
        return output["probabilities"]
    return {}


def agreement(spec: ModelSpec, pairs: Sequence[tuple[Any, Any]]) -> dict[str, Any]:
    """Classification: share of rows with the same label, and mean absolute probability
    difference (over rows and classes). None without rows."""
    if not pairs:
        return {"rate": None, "agreed": 0, "mean_abs_probability_diff": None}
    agreed = sum(_label(a) == _label(b) for a, b in pairs)
    diffs = []
    for a, b in pairs:
        pa, pb = _probabilities(a), _probabilities(b)
        diffs.append(
            np.mean([abs(float(pa.get(c, 0.0)) - float(pb.get(c, 0.0))) for c in spec.classes])
        )
    return {
        "rate": agreed / len(pairs),
        "agreed": int(agreed),
        "mean_abs_probability_diff": float(np.mean(diffs)),
    }


def difference(pairs: Sequence[tuple[Any, Any]]) -> dict[str, Any]:
    """Regression: mean and max absolute difference, and mean signed difference (challenger
    minus champion). None without rows."""
    if not pairs:
        return {"mean_abs": None, "max_abs": None, "mean_signed": None}
    champion = np.asarray([a for a, _ in pairs], dtype=float)
    challenger = np.asarray([b for _, b in pairs], dtype=float)
    delta = challenger - champion
    return {
        "mean_abs": float(np.mean(np.abs(delta))),
        "max_abs": float(np.max(np.abs(delta))),
        "mean_signed": float(np.mean(delta)),
    }


def decide(
    spec: ModelSpec,
    champion: dict[str, Any],
    challenger: dict[str, Any],
    labelled: int,
    params: ComparisonParams,
) -> tuple[str, str, str]:
    """(verdict, rule, reason) from both versions' live metrics on the same labelled rows."""
    if labelled < params.min_labels:
        return (
            INSUFFICIENT_LABELS,
            RULE_MIN_LABELS,
            f"{labelled} labelled rows scored by both versions; min_labels is {params.min_labels}",
        )
    metric, gain = spec.primary_metric, params.min_improvement
    ours, theirs = challenger["metrics"][metric], champion["metrics"][metric]
    where = f"on the same {labelled} labelled rows"
    if spec.beats(ours, theirs, gain):
        return (
            CHALLENGER_BETTER,
            RULE_MIN_IMPROVEMENT,
            f"challenger v{challenger['version']} {metric} {ours:.4f} beats champion "
            f"v{champion['version']} ({theirs:.4f}) by at least min_improvement {gain:g} {where}",
        )
    if spec.beats(theirs, ours, gain):
        return (
            CHAMPION_BETTER,
            RULE_MIN_IMPROVEMENT,
            f"champion v{champion['version']} {metric} {theirs:.4f} beats challenger "
            f"v{challenger['version']} ({ours:.4f}) by at least min_improvement {gain:g} {where}",
        )
    return (
        NO_CLEAR_DIFFERENCE,
        RULE_MIN_IMPROVEMENT,
        f"{metric} {ours:.4f} (challenger v{challenger['version']}) and {theirs:.4f} (champion "
        f"v{champion['version']}) differ by less than min_improvement {gain:g} {where}",
    )


def compare(
    engine: Engine,
    spec: ModelSpec,
    champion_version: str,
    challenger_version: str,
    params: ComparisonParams,
) -> dict[str, Any]:
    """Compare the two versions over the newest `params.window_rows` rows both scored.

    Returns {"model", "champion": {"version", "served_rows"}, "challenger": {...},
    "rows_compared", "agreement" (classification) or "difference" (regression),
    "live_quality": {"labelled", "metric", "min_labels", "min_improvement", "champion":
    metrics, "challenger": metrics}, "verdict", "rule", "reason", "window"}. Live metrics are
    None below one labelled row.
    """
    rows = shadow.window(
        engine, spec.name, champion_version, challenger_version, params.window_rows
    )
    pairs = [(r["champion_output"], r["challenger_output"]) for r in rows]
    labelled = [r for r in rows if r["actual"] is not None]
    actuals = [r["actual"] for r in labelled]
    sides = {}
    for side, version in (("champion", champion_version), ("challenger", challenger_version)):
        outputs = [r[f"{side}_output"] for r in labelled]
        metrics = feedback.score(spec, outputs, actuals) if labelled else feedback.no_metrics(spec)
        served = sum(r["served"] == side for r in rows)
        sides[side] = {"version": version, "served_rows": served, "metrics": metrics}
    verdict, rule, reason = decide(
        spec, sides["champion"], sides["challenger"], len(labelled), params
    )
    out: dict[str, Any] = {
        "model": spec.name,
        "champion": {k: sides["champion"][k] for k in ("version", "served_rows")},
        "challenger": {k: sides["challenger"][k] for k in ("version", "served_rows")},
        "rows_compared": len(rows),
        "window": params.window_rows,
    }
    if spec.task == "classification":
        out["agreement"] = agreement(spec, pairs)
    else:
        out["difference"] = difference(pairs)
    out["live_quality"] = {
        "labelled": len(labelled),
        "metric": spec.primary_metric,
        "min_labels": params.min_labels,
        "min_improvement": params.min_improvement,
        "champion": sides["champion"]["metrics"],
        "challenger": sides["challenger"]["metrics"],
    }
    out.update(verdict=verdict, rule=rule, reason=reason)
    return out


def without_challenger(
    spec: ModelSpec, champion_version: str | None, params: ComparisonParams
) -> dict[str, Any]:
    """The comparison's answer when there is nothing to compare: no champion, or no
    @challenger other than the champion."""
    if champion_version is None:
        verdict, reason = NO_CHAMPION, "no version is @champion: nothing is served"
    else:
        verdict = NO_CHALLENGER
        reason = f"no @challenger other than the champion v{champion_version}"
    return {
        "model": spec.name,
        "champion": None if champion_version is None else {"version": champion_version},
        "challenger": None,
        "rows_compared": 0,
        "window": params.window_rows,
        "live_quality": None,
        "verdict": verdict,
        "rule": RULE_ALIASES,
        "reason": reason,
    }
