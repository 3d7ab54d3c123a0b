"""Success shapes of every endpoint, in-process, against models trained by the real pipeline."""

from __future__ import annotations

import math

import pytest

from core.specs import HOUSING, IRIS
from tests.api.conftest import example
from tests.contract import CONTRACT_METRICS


def _model_ref(body: dict, spec) -> None:
    assert body["model"]["name"] == spec.name
    assert body["model"]["registered_name"] == spec.registered_name
    assert body["model"]["alias"] == "champion"
    assert body["model"]["version"] == "1"


def test_predict_housing_single(client):
    response = client.post("/predict/housing", json=example("housing"))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == {"prediction", "unit", "model", "request_id"}
    assert isinstance(body["prediction"], float) and math.isfinite(body["prediction"])
    assert 0.1 < body["prediction"] < 10  # 100k USD; the example block is a pricey one
    assert body["unit"] == "100k USD"
    _model_ref(body, HOUSING)
    assert response.headers["X-Request-ID"] == body["request_id"]


def test_predict_housing_batch_matches_single(client):
    rows = [example("housing"), {**example("housing"), "MedInc": 1.5, "HouseAge": 12}]
    batch = client.post("/predict/housing", json={"instances": rows}).get_json()
    assert len(batch["predictions"]) == 2
    _model_ref(batch, HOUSING)
    singles = [client.post("/predict/housing", json=r).get_json()["prediction"] for r in rows]
    assert batch["predictions"] == pytest.approx(singles)
    assert batch["predictions"][0] != batch["predictions"][1]


def test_predict_iris_single(client):
    response = client.post("/predict/iris", json=example("iris"))
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"prediction", "probabilities", "model", "request_id"}
    assert body["prediction"] == "setosa"  # the example row is a textbook setosa
    assert set(body["probabilities"]) == set(IRIS.classes)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)
    assert max(body["probabilities"], key=body["probabilities"].get) == body["prediction"]
    _model_ref(body, IRIS)


def test_predict_iris_batch(client):
    virginica = {"sepal_length": 7.7, "sepal_width": 3.0, "petal_length": 6.1, "petal_width": 2.3}
    body = client.post("/predict/iris", json={"instances": [example("iris"), virginica]}).get_json()
    labels = [p["label"] for p in body["predictions"]]
    assert labels == ["setosa", "virginica"]
    for row in body["predictions"]:
        assert set(row) == {"label", "probabilities"}
        assert sum(row["probabilities"].values()) == pytest.approx(1.0)
    _model_ref(body, IRIS)


def test_integers_are_numbers(client):
    row = {"sepal_length": 5, "sepal_width": 3, "petal_length": 1, "petal_width": 0}
    assert client.post("/predict/iris", json=row).status_code == 200


def test_request_id_is_echoed_generated_or_replaced(client):
    sent = client.post("/predict/iris", json=example("iris"), headers={"X-Request-ID": "abc-123"})
    assert sent.headers["X-Request-ID"] == "abc-123"
    assert sent.get_json()["request_id"] == "abc-123"
    generated = client.get("/health/live")
    assert len(generated.headers["X-Request-ID"]) == 32
    unsafe = client.get("/health/live", headers={"X-Request-ID": "bad id;<script>"})
    assert unsafe.headers["X-Request-ID"] != "bad id;<script>"
    assert len(unsafe.headers["X-Request-ID"]) == 32
    too_long = client.get("/health/live", headers={"X-Request-ID": "a" * 300})
    assert len(too_long.headers["X-Request-ID"]) == 32
    error = client.post("/predict/iris", json={}, headers={"X-Request-ID": "err-1"})
    assert error.status_code == 422 and error.headers["X-Request-ID"] == "err-1"


def test_models_info(client):
    body = client.get("/models/info").get_json()
    by_name = {m["name"]: m for m in body["models"]}
    assert set(by_name) == {"housing", "iris"}
    for spec in (HOUSING, IRIS):
        info = by_name[spec.name]
        assert info["registered_name"] == spec.registered_name
        assert info["version"] == "1" and info["alias"] == "champion" and info["status"] == "ok"
        assert info["run_id"] and info["algorithm"] and info["loaded_at"].endswith("Z")
        assert info["features"] == spec.feature_names
        assert spec.primary_metric in info["metrics"]
        assert isinstance(info["params"], dict)
    assert by_name["iris"]["classes"] == list(IRIS.classes)


def test_model_detail_lists_registry_versions(client):
    body = client.get("/models/iris").get_json()
    assert body["name"] == "iris" and body["registered_name"] == IRIS.registered_name
    assert body["served"]["version"] == "1"
    assert body["versions"][0]["version"] == "1"
    assert "champion" in body["versions"][0]["aliases"]
    assert client.get("/models/wine").status_code == 404


def test_health_endpoints(client):
    live = client.get("/health/live")
    assert live.status_code == 200 and live.get_json() == {"status": "alive"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ready", "models": {"housing": "1", "iris": "1"}}
    response = client.get("/health")
    health = response.get_json()
    assert response.status_code == 200
    assert health["checks"]["models"]["iris"]["version"] == "1"
    assert health["checks"]["models"]["housing"]["status"] == "ok"
    assert health["checks"]["prediction_log"]["status"] == "ok"
    # "ok" only when every check is; any failing dependency makes it "degraded", not down.
    all_ok = all(
        check.get("status") in ("ok", "disabled")
        for name, check in health["checks"].items()
        if name not in ("models", "process")
    )
    assert health["status"] == ("ok" if all_ok else "degraded")


def test_docs_are_served_locally(client):
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/docs/assets/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower() and "unpkg" not in html.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        response = client.get(f"/docs/assets/{asset}")
        assert response.status_code == 200 and len(response.data) > 1000


def test_openapi_document_has_examples_and_security(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    for path in (
        "/predict/housing",
        "/predict/iris",
        "/models/info",
        "/models/{name}",
        "/models/{name}/promote",
        "/models/{name}/rollback",
        "/predictions",
        "/health",
        "/health/live",
        "/health/ready",
        "/metrics",
    ):
        assert path in spec["paths"], path
    predict = spec["paths"]["/predict/iris"]["post"]
    examples = predict["requestBody"]["content"]["application/json"]["examples"]
    assert examples["single"]["value"] == example("iris")
    assert examples["batch"]["value"]["instances"][0] == example("iris")
    ok = predict["responses"]["200"]["content"]["application/json"]
    assert ok["examples"]["single"]["value"]["prediction"] == "setosa"
    assert {"400", "413", "415", "422", "503"} <= set(predict["responses"])
    assert "bearerAuth" in spec["components"]["securitySchemes"]
    assert spec["paths"]["/models/{name}/promote"]["post"]["security"] == [{"bearerAuth": []}]
    record = spec["components"]["schemas"]["HousingRecord"]
    assert set(record["required"]) == set(HOUSING.feature_names)
    assert record["properties"]["Latitude"]["minimum"] == -90


def test_metrics_endpoints(client):
    client.post("/predict/iris", json=example("iris"))
    client.post("/predict/housing", json={"instances": [example("housing")] * 3})
    for path in ("/metrics", "/metrics/prometheus"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.content_type.startswith("text/plain")
        text = response.get_data(as_text=True)
        for name in CONTRACT_METRICS:
            assert name in text, name
    assert 'model_info{algorithm="' in text
    assert 'model_reloads_total{model="iris",outcome="success"}' in text
    assert 'model_predicted_class_total{class="setosa",model="iris"}' in text
