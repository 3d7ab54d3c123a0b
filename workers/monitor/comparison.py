"""Champion against challenger in the periodic check: gauges, and the optional promotion rule.

Every check compares @champion with @challenger on the rows both scored
(core.comparison.compare), exports the figures as gauges and saves a `comparison` report.
With `comparison.<model>.promote: true` it also acts on the verdict: `challenger_better`
promotes the challenger through the same alias moves as an admin promotion (champion ->
previous, challenger -> champion); `champion_better` rejects it as the register gate does
(tags `promoted=false` and `rejected_reason`) and removes @challenger, so shadow scoring and
any canary stop. Nothing happens without a verdict (too few labels, no clear difference).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

from sqlalchemy.engine import Engine

from core import comparison, monitor_reports, registry
from core.comparison import ComparisonParams
from core.metrics import (
    MODEL_COMPARISON_ABS_DIFF,
    MODEL_COMPARISON_ACTIONS,
    MODEL_COMPARISON_AGREEMENT,
    MODEL_COMPARISON_LABELLED,
    MODEL_COMPARISON_LIVE_METRIC,
    MODEL_COMPARISON_ROWS,
)
from core.registry import VersionInfo
from core.specs import ALIAS_CHALLENGER, ModelSpec

log = logging.getLogger(__name__)

PROMOTED = "promoted"
REJECTED = "rejected"
ACTIONS = (PROMOTED, REJECTED)
SIDES = ("champion", "challenger")
METRICS = {"regression": ("rmse", "mae"), "classification": ("accuracy",)}


def check_comparison(
    engine: Engine, spec: ModelSpec, cp: ComparisonParams, champion: VersionInfo | None
) -> dict[str, Any]:
    """Compare champion and challenger, export the gauges, act when promote is on; the report
    (also saved) is the comparison plus `action`: None, or what was done and why."""
    challenger = registry.get_alias(spec.registered_name, ALIAS_CHALLENGER)
    if champion is None or challenger is None or challenger.version == champion.version:
        result = comparison.without_challenger(spec, champion.version if champion else None, cp)
    else:
        result = comparison.compare(engine, spec, champion.version, challenger.version, cp)
    set_gauges(spec, result)
    result["promote"] = cp.promote
    result["action"] = act(spec, result) if cp.promote else None
    monitor_reports.save(engine, monitor_reports.COMPARISON, spec.name, result)
    return result


def act(spec: ModelSpec, result: dict[str, Any]) -> dict[str, Any] | None:
    """Promote a better challenger or reject a worse one; None for any other verdict."""
    verdict = result["verdict"]
    if verdict not in (comparison.CHALLENGER_BETTER, comparison.CHAMPION_BETTER):
        return None
    name, version = spec.registered_name, result["challenger"]["version"]
    # The aliases may have moved since the comparison read them (a retrain registered a newer
    # candidate, an admin promoted): act only on the version that was judged.
    now = registry.get_alias(name, ALIAS_CHALLENGER)
    current = registry.champion(name)
    if now is None or now.version != version or current is None:
        return _skipped(version, "@challenger moved during the check")
    if current.version != result["champion"]["version"]:
        return _skipped(version, "@champion moved during the check")
    reason = result["reason"]
    if verdict == comparison.CHALLENGER_BETTER:
        try:
            registry.promote(name, version)
        except registry.Conflict as exc:
            return _skipped(version, str(exc))
        action = PROMOTED
    else:
        registry.set_tags(
            name,
            version,
            {registry.TAG_PROMOTED: "false", registry.TAG_REJECTED_REASON: reason[:500]},
        )
        registry.clear_challenger(name, version)
        action = REJECTED
    MODEL_COMPARISON_ACTIONS.labels(model=spec.name, action=action).inc()
    log.warning("comparison rule %s %s version %s: %s", action, name, version, reason)
    return {"action": action, "version": version, "reason": reason}


def _skipped(version: str, why: str) -> dict[str, Any]:
    log.info("comparison rule: nothing done to version %s: %s", version, why)
    return {"action": "skipped", "version": version, "reason": why}


def set_gauges(spec: ModelSpec, result: dict[str, Any]) -> None:
    """Export the comparison (NaN where a figure is undefined: no challenger, no labels)."""
    model = spec.name
    nan = math.nan
    MODEL_COMPARISON_ROWS.labels(model=model).set(result["rows_compared"])
    quality = result.get("live_quality") or {}
    MODEL_COMPARISON_LABELLED.labels(model=model).set(quality.get("labelled", 0))
    if spec.task == "classification":
        agreement = result.get("agreement") or {}
        MODEL_COMPARISON_AGREEMENT.labels(model=model).set(_number(agreement.get("rate")))
        diff = agreement.get("mean_abs_probability_diff")
    else:
        diff = (result.get("difference") or {}).get("mean_abs")
    MODEL_COMPARISON_ABS_DIFF.labels(model=model).set(_number(diff))
    for side in SIDES:
        metrics = quality.get(side) or {}
        for metric in METRICS[spec.task]:
            MODEL_COMPARISON_LIVE_METRIC.labels(model=model, alias=side, metric=metric).set(
                _number(metrics.get(metric, nan))
            )


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)


def initialise_metrics(models: Iterable[str]) -> None:
    """Export the action counters at 0 from the start, so increase() sees the first one."""
    for name in models:
        for action in ACTIONS:
            MODEL_COMPARISON_ACTIONS.labels(model=name, action=action)
