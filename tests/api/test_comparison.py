"""GET /models/<name>/comparison: a real app on the session's registries, shadow rows and labels
written straight into its database, every figure checked against a hand computation.

The pinned registry (tests/api/versions_support.py) has a challenger other than the champion for
both models (housing v1 against v6, iris v1 against v2); the plain session registry has none.
The comparison settings come from a params file of the test's own, rewritten between requests
(the API reads it on every call).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, insert
from sqlalchemy.engine import Engine

from app.runtime import get_runtime
from core import db, registry
from core.comparison import load_params
from core.feedback import prediction_feedback
from core.prediction_log import shadow
from core.settings import PROJECT_ROOT
from tests import procs
from tests.api.conftest import start_app
from tests.api.versions_support import PinnedRegistry
from tests.conftest import TrainedRegistry

CLASSES = ("setosa", "versicolor", "virginica")
SETTINGS = {
    "housing": {"window_rows": 1000, "min_labels": 4, "min_improvement": 0.01, "promote": False},
    "iris": {"window_rows": 1000, "min_labels": 4, "min_improvement": 0.25, "promote": False},
}


def write_settings(path: Path, **models: dict[str, Any]) -> None:
    """The project's params.yaml with its comparison section replaced (SETTINGS + overrides)."""
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["comparison"] = {name: {**cfg, **models.get(name, {})} for name, cfg in SETTINGS.items()}
    path.write_text(yaml.safe_dump(params))


@pytest.fixture(scope="module")
def params_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("comparison-params") / "params.yaml"


@pytest.fixture(scope="module")
def app(
    pinned_registry: PinnedRegistry,
    trained_registry: TrainedRegistry,
    params_file: Path,
    tmp_path_factory,
) -> Iterator[Flask]:
    """A warmed app on the pinned registry (read only: nothing here moves an alias)."""
    write_settings(params_file)
    keys = ("STATE_DIR", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    with procs.environ({k: pinned_registry.env[k] for k in keys}):
        app = start_app(
            MLFLOW_TRACKING_URI=pinned_registry.tracking_uri,
            DATABASE_URL=f"sqlite:///{tmp_path_factory.mktemp('comparison-db') / 'app.db'}",
            PARAMS_FILE=str(params_file),
        )
        yield app
        get_runtime(app).stop()
    registry.configure(trained_registry.tracking_uri)


@pytest.fixture
def client(app: Flask, pinned_registry: PinnedRegistry) -> FlaskClient:
    """A client of the pinned app (the registry URI is process-wide: this one's, now)."""
    registry.configure(pinned_registry.tracking_uri)
    return app.test_client()


@pytest.fixture
def session_client(
    api_app: Flask, trained_registry: TrainedRegistry, pinned_registry: PinnedRegistry
) -> Iterator[FlaskClient]:
    """A client of the session registry's app (tests/api/conftest.py)."""
    registry.configure(trained_registry.tracking_uri)
    yield api_app.test_client()
    registry.configure(pinned_registry.tracking_uri)


@pytest.fixture
def engine(app: Flask, params_file: Path) -> Iterator[Engine]:
    """The app's database, without shadow rows or labels; the settings back to SETTINGS."""
    engine = get_runtime(app).database()
    with engine.begin() as conn:
        conn.execute(delete(shadow.prediction_shadow))
        conn.execute(delete(prediction_feedback))
    write_settings(params_file)
    yield engine
    write_settings(params_file)


@pytest.fixture
def versions(pinned_registry: PinnedRegistry) -> dict[str, tuple[str, str]]:
    """(champion, challenger) per model in the pinned registry."""
    found = pinned_registry.versions
    return {"housing": ("1", found["housing"]["rejected"]), "iris": ("1", found["iris"]["passed"])}


def iris_output(label: str, p: float) -> dict[str, Any]:
    """label with probability p, the rest shared evenly by the other two classes."""
    rest = (1.0 - p) / 2
    return {"label": label, "probabilities": {c: p if c == label else rest for c in CLASSES}}


def add_shadow(
    engine: Engine,
    model: str,
    pair: tuple[str, str],
    outputs: list[tuple[Any, Any]],
    request_id: str = "req",
    served: list[str] | None = None,
) -> None:
    """One shadow row per (champion output, challenger output), row_index = position."""
    shadow.record(
        engine,
        [
            {
                "request_id": request_id,
                "row_index": i,
                "model": model,
                "served": served[i] if served else "champion",
                "champion_version": pair[0],
                "champion_output": champ,
                "challenger_version": pair[1],
                "challenger_output": chall,
                "shadow_ms": 0.5,
            }
            for i, (champ, chall) in enumerate(outputs)
        ],
    )


def add_labels(
    engine: Engine, model: str, version: str, actuals: dict[int, Any], request_id: str = "req"
) -> None:
    """Labels for rows of request_id (as POST /feedback stores them)."""
    now = db.utcnow()
    rows = [
        {
            "request_id": request_id,
            "row_index": i,
            "model": model,
            "version": version,
            "inputs": {},
            "prediction": None,
            "actual": actual,
            "predicted_at": now,
            "created_at": now,
        }
        for i, actual in actuals.items()
    ]
    with engine.begin() as conn:
        conn.execute(insert(prediction_feedback), rows)


def comparison(client: FlaskClient, model: str) -> dict[str, Any]:
    response = client.get(f"/models/{model}/comparison")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


# -- iris: agreement and accuracy -----------------------------------------------------------------
# Eight rows. The champion says setosa (p 0.9) everywhere; the challenger agrees on rows 0-4
# (p 0.8) and says versicolor (p 0.6) on rows 5-7. Rows 2-7 are labelled: setosa on 2 and 3,
# versicolor on 4-7. Champion right on 2 of 6 (0.3333), challenger on 2 + 3 = 5 of 6 (0.8333).
IRIS_OUTPUTS = [(iris_output("setosa", 0.9), iris_output("setosa", 0.8))] * 5 + [
    (iris_output("setosa", 0.9), iris_output("versicolor", 0.6))
] * 3
IRIS_LABELS = {2: "setosa", 3: "setosa", 4: "versicolor", 5: "versicolor"}
IRIS_LABELS |= {6: "versicolor", 7: "versicolor"}


def test_iris_agreement_and_accuracy_on_the_same_labelled_rows(client, engine, versions):
    pair = versions["iris"]
    add_shadow(engine, "iris", pair, IRIS_OUTPUTS, served=["champion"] * 6 + ["challenger"] * 2)
    add_labels(engine, "iris", pair[0], IRIS_LABELS)
    # Not counted: another version pair, another model, a label of a row nobody shadowed.
    add_shadow(engine, "iris", ("1", "99"), IRIS_OUTPUTS, request_id="other")
    add_shadow(engine, "housing", versions["housing"], [(1.0, 2.0)], request_id="h")
    add_labels(engine, "iris", pair[0], {0: "virginica"}, request_id="unshadowed")

    body = comparison(client, "iris")

    # Probability differences: |0.9-0.8| and 2 x |0.05-0.1| over 3 classes on agreeing rows;
    # |0.9-0.2|, |0.05-0.6|, |0.05-0.2| on the others.
    agree_diff, disagree_diff = (0.1 + 0.05 + 0.05) / 3, (0.7 + 0.55 + 0.15) / 3
    assert body["agreement"] == {
        "rate": pytest.approx(5 / 8),
        "agreed": 5,
        "mean_abs_probability_diff": pytest.approx((5 * agree_diff + 3 * disagree_diff) / 8),
    }
    assert "difference" not in body
    assert body["model"] == "iris" and body["rows_compared"] == 8 and body["window"] == 1000
    assert body["champion"] == {"version": pair[0], "served_rows": 6}
    assert body["challenger"] == {"version": pair[1], "served_rows": 2}
    assert body["live_quality"] == {
        "labelled": 6,
        "metric": "accuracy",
        "min_labels": 4,
        "min_improvement": 0.25,
        "champion": {"accuracy": pytest.approx(2 / 6)},
        "challenger": {"accuracy": pytest.approx(5 / 6)},
    }
    assert body["verdict"] == "challenger_better" and body["rule"] == "min_improvement"
    assert (
        f"challenger v{pair[1]} accuracy 0.8333 beats champion v{pair[0]} (0.3333)"
        in (body["reason"])
    )
    assert "same 6 labelled rows" in body["reason"]


def test_the_verdict_follows_min_labels_and_min_improvement(client, engine, params_file, versions):
    pair = versions["iris"]
    add_shadow(engine, "iris", pair, IRIS_OUTPUTS)
    add_labels(engine, "iris", pair[0], IRIS_LABELS)

    # Accuracy gap 0.5: decided at min_improvement 0.5 (at least), not at 0.51.
    write_settings(params_file, iris={"min_improvement": 0.5})
    assert comparison(client, "iris")["verdict"] == "challenger_better"
    write_settings(params_file, iris={"min_improvement": 0.51})
    body = comparison(client, "iris")
    assert (body["verdict"], body["rule"]) == ("no_clear_difference", "min_improvement")
    assert "differ by less than min_improvement 0.51" in body["reason"]
    # Six labelled rows: 7 are needed, whatever the gap.
    write_settings(params_file, iris={"min_labels": 7})
    body = comparison(client, "iris")
    assert (body["verdict"], body["rule"]) == ("insufficient_labels", "min_labels")
    assert body["reason"] == "6 labelled rows scored by both versions; min_labels is 7"
    assert body["live_quality"]["labelled"] == 6  # the figures are still shown


def test_a_worse_challenger_makes_the_champion_better(client, engine, versions):
    pair = versions["iris"]
    add_shadow(engine, "iris", pair, IRIS_OUTPUTS)
    add_labels(engine, "iris", pair[0], {i: "setosa" for i in range(8)})

    body = comparison(client, "iris")

    assert body["live_quality"]["champion"] == {"accuracy": 1.0}
    assert body["live_quality"]["challenger"] == {"accuracy": pytest.approx(5 / 8)}
    assert (body["verdict"], body["rule"]) == ("champion_better", "min_improvement")
    assert body["reason"].startswith(f"champion v{pair[0]} accuracy 1.0000 beats challenger")


def test_only_the_newest_window_rows_are_compared(client, engine, params_file, versions):
    pair = versions["iris"]
    add_shadow(engine, "iris", pair, IRIS_OUTPUTS[5:], request_id="old")  # disagree
    add_shadow(engine, "iris", pair, IRIS_OUTPUTS[:3], request_id="new")  # agree
    write_settings(params_file, iris={"window_rows": 3, "min_labels": 1})

    body = comparison(client, "iris")

    assert body["window"] == 3 and body["rows_compared"] == 3
    assert body["agreement"]["rate"] == 1.0
    assert body["live_quality"]["labelled"] == 0
    assert body["live_quality"]["champion"] == {"accuracy": None}
    assert body["verdict"] == "insufficient_labels"


# -- housing: differences, rmse and mae ------------------------------------------------------------
def test_housing_differences_and_errors_on_the_same_labelled_rows(client, engine, versions):
    pair = versions["housing"]
    champion = [2.0, 2.0, 2.0, 2.0, 2.0]
    challenger = [2.5, 1.0, 2.0, 3.0, 2.2]
    add_shadow(engine, "housing", pair, list(zip(champion, challenger, strict=True)))
    truth = {0: 2.5, 1: 1.5, 2: 2.0, 3: 3.0}  # row 4 unlabelled
    add_labels(engine, "housing", pair[0], truth)

    body = comparison(client, "housing")

    deltas = [b - a for a, b in zip(champion, challenger, strict=True)]
    assert body["difference"] == {
        "mean_abs": pytest.approx(sum(abs(d) for d in deltas) / 5),
        "max_abs": pytest.approx(1.0),
        "mean_signed": pytest.approx(sum(deltas) / 5),
    }
    assert "agreement" not in body
    champ_err = [champion[i] - truth[i] for i in truth]  # -0.5, 0.5, 0, -1
    chall_err = [challenger[i] - truth[i] for i in truth]  # 0, -0.5, 0, 0
    quality = body["live_quality"]
    assert quality["labelled"] == 4 and quality["metric"] == "rmse"
    assert quality["champion"] == {
        "rmse": pytest.approx(math.sqrt(sum(e * e for e in champ_err) / 4)),
        "mae": pytest.approx(sum(abs(e) for e in champ_err) / 4),
    }
    assert quality["challenger"] == {
        "rmse": pytest.approx(math.sqrt(sum(e * e for e in chall_err) / 4)),
        "mae": pytest.approx(sum(abs(e) for e in chall_err) / 4),
    }
    assert body["verdict"] == "challenger_better"
    assert body["reason"].startswith(f"challenger v{pair[1]} rmse 0.2500 beats champion")


def test_rows_older_than_retention_are_pruned_with_the_log(client, engine, versions):
    pair = versions["housing"]
    add_shadow(engine, "housing", pair, [(1.0, 1.5)] * 3)
    cutoff = db.utcnow() + timedelta(seconds=1)  # every row so far is "old"
    add_shadow(engine, "housing", pair, [(1.0, 1.5)] * 2, request_id="new")
    with engine.begin() as conn:
        conn.execute(
            shadow.prediction_shadow.update()
            .where(shadow.prediction_shadow.c.request_id == "new")
            .values(created_at=cutoff + timedelta(days=1))
        )

    pruned = shadow.prune(engine, cutoff, batch_rows=2)

    assert (pruned.deleted, pruned.batches) == (3, 2)
    assert comparison(client, "housing")["rows_compared"] == 2


# -- no challenger, errors, documentation ---------------------------------------------------------
def test_no_challenger_other_than_the_champion(session_client):
    # The session registry: the pipeline's only version is @champion and @challenger.
    body = comparison(session_client, "iris")
    assert body == {
        "model": "iris",
        "champion": {"version": "1"},
        "challenger": None,
        "rows_compared": 0,
        "window": load_params(PROJECT_ROOT / "params.yaml")["iris"].window_rows,
        "live_quality": None,
        "verdict": "no_challenger",
        "rule": "aliases",
        "reason": "no @challenger other than the champion v1",
    }


def test_unknown_model_is_404(client):
    response = client.get("/models/wine/comparison")
    assert response.status_code == 404
    assert response.get_json()["code"] == 404 and "wine" in response.get_json()["message"]


def test_registry_down_is_503(client, monkeypatch):
    def down(*_args: Any) -> None:
        raise ConnectionError("registry unreachable")

    monkeypatch.setattr(registry, "get_alias", down)
    response = client.get("/models/iris/comparison")
    assert response.status_code == 503
    assert response.get_json()["message"] == "The model registry is unavailable; retry later."


def test_invalid_settings_are_a_500_naming_the_key(client, engine, params_file):
    write_settings(params_file, iris={"min_labels": 0})
    response = client.get("/models/iris/comparison")
    assert response.status_code == 500
    assert (
        "comparison.iris.min_labels must be a positive integer" in (response.get_json()["message"])
    )


def test_openapi_documents_the_comparison(client):
    spec = client.get("/openapi.json").get_json()
    operation = spec["paths"]["/models/{name}/comparison"]["get"]
    assert {"200", "404", "503"} <= set(operation["responses"])
    assert "min_improvement" in operation["description"]
    content = operation["responses"]["200"]["content"]["application/json"]
    assert content["schema"] == {"$ref": "#/components/schemas/Comparison"}
    assert set(content["examples"]) == {"classification", "regression", "no_challenger"}
    verdicts = spec["components"]["schemas"]["Comparison"]["properties"]["verdict"]["enum"]
    assert "challenger_better" in verdicts and "insufficient_labels" in verdicts
