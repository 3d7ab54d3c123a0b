"""The monitor's comparison rule against a real SQLite app database and a private copy of the
session's MLflow registry: gauges and reports of champion against challenger, promotion of a
better challenger and rejection of a worse one when `comparison.<model>.promote` is on, nothing
without enough labels or with the rule off; retention prunes the shadow rows.

Shadow rows and labels are written straight into the database (as the API's shadow scoring and
POST /feedback store them); publishing is the one seam replaced, as in test_monitor.py.
"""

from __future__ import annotations

import math
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from core import db, monitor_reports, registry
from core.feedback import prediction_feedback
from core.prediction_log import prediction_log, shadow
from core.specs import ALIAS_CHALLENGER, ALIAS_PREVIOUS, HOUSING, IRIS, ModelSpec
from tests.conftest import TrainedRegistry
from tests.workers.test_monitor import MONITOR_PARAMS, sample, write_params
from workers import config, monitor
from workers.config import WorkerSettings

# Live quality never asks for a retrain here: the comparison is what is tested.
QUIET_MONITOR = {
    name: {**cfg, "quality_min_rows": cfg["quality_window_rows"]}
    for name, cfg in MONITOR_PARAMS.items()
}
COMPARISON = {
    "housing": {"window_rows": 500, "min_labels": 4, "min_improvement": 0.05, "promote": True},
    "iris": {"window_rows": 500, "min_labels": 4, "min_improvement": 0.1, "promote": True},
}


def settings_with(
    trained: TrainedRegistry, dest: Path, **overrides: dict[str, Any]
) -> WorkerSettings:
    """Worker settings whose workspace params.yaml has COMPARISON (+ overrides per model)."""
    workspace = write_params(trained, dest, QUIET_MONITOR)
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["comparison"] = {m: {**cfg, **overrides.get(m, {})} for m, cfg in COMPARISON.items()}
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    return config.load().model_copy(update={"workspace": workspace})


def new_challenger(spec: ModelSpec, artifacts: Path) -> str:
    """Register a new version (the champion's model, its own run) and make it @challenger."""
    client = MlflowClient()
    experiment = client.create_experiment(
        f"comparison-test-{uuid.uuid4().hex[:8]}", artifact_location=artifacts.as_uri()
    )
    run_id = client.create_run(experiment).info.run_id
    client.set_terminated(run_id)
    source = registry.champion(spec.registered_name).source
    version = client.create_model_version(spec.registered_name, source, run_id=run_id).version
    registry.set_challenger(spec.registered_name, str(version))
    return str(version)


def scored(
    engine: Engine,
    spec: ModelSpec,
    pair: tuple[str, str],
    rows: list[tuple[Any, Any, Any]],
    created_at: Any = None,
) -> None:
    """Shadow rows (champion output, challenger output) and, where given, their labels."""
    request_id = uuid.uuid4().hex
    shadow.record(
        engine,
        [
            {
                "request_id": request_id,
                "row_index": i,
                "model": spec.name,
                "served": "champion",
                "champion_version": pair[0],
                "champion_output": champ,
                "challenger_version": pair[1],
                "challenger_output": chall,
                "shadow_ms": 0.4,
                **({"created_at": created_at} if created_at else {}),
            }
            for i, (champ, chall, _) in enumerate(rows)
        ],
    )
    now = db.utcnow()
    labels = [
        {
            "request_id": request_id,
            "row_index": i,
            "model": spec.name,
            "version": pair[0],
            "inputs": {},
            "prediction": champ,
            "actual": actual,
            "predicted_at": now,
            "created_at": now,
        }
        for i, (champ, _, actual) in enumerate(rows)
        if actual is not None
    ]
    if labels:
        with engine.begin() as conn:
            conn.execute(insert(prediction_feedback), labels)


def iris(label: str) -> dict[str, Any]:
    return {"label": label, "probabilities": {c: float(c == label) for c in IRIS.classes}}


def aliases(spec: ModelSpec) -> dict[str, str | None]:
    found = {}
    for alias in ("champion", ALIAS_PREVIOUS, ALIAS_CHALLENGER):
        info = registry.get_alias(spec.registered_name, alias)
        found[alias] = info.version if info else None
    return found


def actions(model: str, action: str) -> float:
    return sample("model_comparison_actions_total", {"model": model, "action": action}) or 0.0


@pytest.fixture
def published() -> list[str]:
    return []


def test_a_better_challenger_is_promoted_and_the_check_reports_it(
    registry_copy, sqlite_engine, tmp_path, published
):
    champion = registry.champion(IRIS.registered_name).version
    challenger = new_challenger(IRIS, tmp_path / "artifacts")
    # 8 rows, all labelled setosa: the champion says versicolor on 4 (accuracy 0.5), the
    # challenger on none (1.0); they agree on 4 of 8.
    rows = [(iris("setosa"), iris("setosa"), "setosa")] * 4
    rows += [(iris("versicolor"), iris("setosa"), "setosa")] * 4
    scored(sqlite_engine, IRIS, (champion, challenger), rows)
    before = actions("iris", "promoted")
    ws = settings_with(registry_copy, tmp_path / "ws")

    summary = monitor.check_all(sqlite_engine, ws, published.append)

    done = summary["iris"]["comparison"]
    assert done["verdict"] == "challenger_better" and done["rows_compared"] == 8
    assert done["action"] == {"action": "promoted", "version": challenger, "reason": done["reason"]}
    assert "accuracy 1.0000 beats champion" in done["reason"]
    assert aliases(IRIS) == {"champion": challenger, "previous": champion, "challenger": challenger}
    assert registry.get_version(IRIS.registered_name, challenger).tags["promoted"] == "true"
    assert actions("iris", "promoted") == before + 1
    report = monitor_reports.latest(sqlite_engine, monitor_reports.COMPARISON, "iris")
    assert report["action"]["action"] == "promoted" and report["promote"] is True
    assert report["live_quality"]["challenger"] == {"accuracy": 1.0}
    # The gauges Grafana shows.
    assert sample("model_comparison_agreement", {"model": "iris"}) == 0.5
    assert sample("model_comparison_abs_diff", {"model": "iris"}) == pytest.approx(0.5 * 2 / 3)
    assert sample("model_comparison_labelled", {"model": "iris"}) == 8
    assert sample("model_comparison_rows", {"model": "iris"}) == 8
    live = {"model": "iris", "metric": "accuracy"}
    assert sample("model_comparison_live_metric", {**live, "alias": "champion"}) == 0.5
    assert sample("model_comparison_live_metric", {**live, "alias": "challenger"}) == 1.0
    # Housing has no challenger: nothing compared, nothing done.
    assert summary["housing"]["comparison"]["verdict"] == "no_challenger"
    assert sample("model_comparison_rows", {"model": "housing"}) == 0
    assert math.isnan(sample("model_comparison_abs_diff", {"model": "housing"}))

    # The next check finds the promoted version as both champion and challenger: at rest.
    again = monitor.check_all(sqlite_engine, ws, published.append)
    assert again["iris"]["comparison"]["verdict"] == "no_challenger"
    assert again["iris"]["comparison"]["action"] is None
    assert actions("iris", "promoted") == before + 1
    assert published == []


def test_a_worse_challenger_is_rejected_and_loses_its_alias(
    registry_copy, sqlite_engine, tmp_path, published
):
    champion = registry.champion(HOUSING.registered_name).version
    challenger = new_challenger(HOUSING, tmp_path / "artifacts")
    # The champion is exact; the challenger is 0.5 off on every row (rmse 0.5 against 0).
    rows = [(float(v), float(v) + 0.5, float(v)) for v in (1, 2, 3, 4, 5)]
    scored(sqlite_engine, HOUSING, (champion, challenger), rows)
    before = actions("housing", "rejected")
    ws = settings_with(registry_copy, tmp_path / "ws")

    summary = monitor.check_all(sqlite_engine, ws, published.append)

    done = summary["housing"]["comparison"]
    assert done["verdict"] == "champion_better"
    assert done["action"] == {"action": "rejected", "version": challenger, "reason": done["reason"]}
    assert aliases(HOUSING) == {"champion": champion, "previous": None, "challenger": None}
    tags = registry.get_version(HOUSING.registered_name, challenger).tags
    assert tags["promoted"] == "false" and tags["rejected_reason"] == done["reason"]
    assert done["reason"].startswith(f"champion v{champion} rmse 0.0000 beats challenger")
    assert actions("housing", "rejected") == before + 1
    assert sample("model_comparison_abs_diff", {"model": "housing"}) == pytest.approx(0.5)
    labels = {"model": "housing", "alias": "challenger", "metric": "rmse"}
    assert sample("model_comparison_live_metric", labels) == pytest.approx(0.5)

    again = monitor.check_all(sqlite_engine, ws, published.append)
    assert again["housing"]["comparison"]["verdict"] == "no_challenger"


def test_nothing_is_done_with_too_few_labels_or_the_rule_off(
    registry_copy, sqlite_engine, tmp_path, published
):
    champion = registry.champion(IRIS.registered_name).version
    challenger = new_challenger(IRIS, tmp_path / "artifacts")
    # A clearly better challenger, on 3 labelled rows of 6.
    rows = [(iris("versicolor"), iris("setosa"), "setosa")] * 3
    rows += [(iris("versicolor"), iris("setosa"), None)] * 3
    scored(sqlite_engine, IRIS, (champion, challenger), rows)
    at_rest = aliases(IRIS)
    ws = settings_with(registry_copy, tmp_path / "ws")

    few = monitor.check_all(sqlite_engine, ws, published.append)["iris"]["comparison"]

    assert few["verdict"] == "insufficient_labels" and few["action"] is None
    assert few["reason"] == "3 labelled rows scored by both versions; min_labels is 4"
    assert sample("model_comparison_labelled", {"model": "iris"}) == 3

    # Enough labels now, but promote is off: the verdict is reported, the aliases stay.
    ws = settings_with(registry_copy, tmp_path / "ws-off", iris={"min_labels": 3, "promote": False})
    off = monitor.check_all(sqlite_engine, ws, published.append)["iris"]["comparison"]
    assert off["verdict"] == "challenger_better" and off["action"] is None
    report = monitor_reports.latest(sqlite_engine, monitor_reports.COMPARISON, "iris")
    assert report["verdict"] == "challenger_better" and report["promote"] is False
    assert aliases(IRIS) == at_rest
    assert "promoted" not in registry.get_version(IRIS.registered_name, challenger).tags


def test_bad_comparison_settings_stop_the_check_naming_the_key(
    registry_copy, sqlite_engine, tmp_path, published
):
    ws = settings_with(registry_copy, tmp_path / "ws", housing={"min_labels": 600})
    with pytest.raises(ValueError, match=r"comparison.housing.min_labels \(600\) must not exceed"):
        monitor.check_all(sqlite_engine, ws, published.append)


def test_retention_prunes_old_shadow_rows_with_the_log(sqlite_engine):
    now = db.utcnow()
    old, new = now - timedelta(days=40), now - timedelta(days=1)
    pair = ("1", "2")
    for at in (old, new, old, old):
        scored(sqlite_engine, HOUSING, pair, [(1.0, 1.2, None)] * 2, created_at=at)
    ws = config.load().model_copy(update={"retention_days": 30, "retention_batch_rows": 4})

    result = monitor.retention.run(sqlite_engine, ws, now=now)

    assert result["shadow_deleted"] == 6 and result["deleted"] == 0
    with sqlite_engine.connect() as conn:
        left = conn.execute(select(shadow.prediction_shadow.c.created_at)).scalars().all()
        logged = conn.execute(select(func.count()).select_from(prediction_log)).scalar()
    assert [db.as_utc(at) for at in left] == [new, new] and logged == 0
    report = monitor_reports.latest(sqlite_engine, monitor_reports.RETENTION, "*")
    assert report["shadow_deleted"] == 6
