"""Table-driven bad input: status, the one error shape, and the named field; never a 5xx."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from app.runtime import get_runtime
from tests.api.conftest import example

H = example("housing")
I = example("iris")  # noqa: E741 - short names keep the table readable


def without(row: dict, key: str) -> dict:
    return {k: v for k, v in row.items() if k != key}


def raw(text: str) -> tuple[str, str]:
    """A body sent verbatim (not JSON-encoded by the client)."""
    return ("raw", text)


# (id, model, body, expected status, path into "errors" that must exist, or None)
CASES: list[tuple[str, str, Any, int, tuple[str, ...] | None]] = [
    ("housing-missing-field", "housing", without(H, "MedInc"), 422, ("MedInc",)),
    ("housing-unknown-field", "housing", {**H, "Rooms": 3}, 422, ("Rooms",)),
    ("housing-string-number", "housing", {**H, "HouseAge": "41"}, 422, ("HouseAge",)),
    ("housing-bool", "housing", {**H, "AveRooms": True}, 422, ("AveRooms",)),
    ("housing-null", "housing", {**H, "AveBedrms": None}, 422, ("AveBedrms",)),
    ("housing-list-value", "housing", {**H, "Population": [322]}, 422, ("Population",)),
    ("housing-object-value", "housing", {**H, "AveOccup": {"v": 1}}, 422, ("AveOccup",)),
    ("housing-negative-income", "housing", {**H, "MedInc": -0.1}, 422, ("MedInc",)),
    ("housing-negative-population", "housing", {**H, "Population": -5}, 422, ("Population",)),
    ("housing-latitude-high", "housing", {**H, "Latitude": 90.5}, 422, ("Latitude",)),
    ("housing-latitude-low", "housing", {**H, "Latitude": -91}, 422, ("Latitude",)),
    ("housing-longitude", "housing", {**H, "Longitude": 181}, 422, ("Longitude",)),
    ("housing-nan", "housing", raw(json.dumps(H).replace("8.3252", "NaN")), 422, ("MedInc",)),
    (
        "housing-infinity",
        "housing",
        raw(json.dumps(H).replace("322.0", "Infinity")),
        422,
        ("Population",),
    ),
    (
        "housing-huge-number",
        "housing",
        raw(json.dumps(H).replace("41.0", "1e999")),
        422,
        ("HouseAge",),
    ),
    (
        "housing-huge-int",
        "housing",
        raw(json.dumps(H).replace("41.0", "9" * 400)),
        422,
        ("HouseAge",),
    ),
    ("housing-top-level-list", "housing", [H], 422, ("_schema",)),
    ("housing-top-level-number", "housing", 3, 422, ("_schema",)),
    ("housing-empty-object", "housing", {}, 422, ("MedInc",)),
    ("housing-batch-empty", "housing", {"instances": []}, 422, ("instances",)),
    ("housing-batch-not-list", "housing", {"instances": H}, 422, ("instances",)),
    ("housing-batch-extra-key", "housing", {"instances": [H], "debug": 1}, 422, ("debug",)),
    (
        "housing-batch-row-3",
        "housing",
        {"instances": [H, H, H, {**H, "MedInc": "x"}]},
        422,
        ("instances", "3", "MedInc"),
    ),
    (
        "housing-batch-row-not-object",
        "housing",
        {"instances": [H, 7]},
        422,
        ("instances", "1", "_schema"),
    ),
    (
        "housing-batch-row-missing",
        "housing",
        {"instances": [without(H, "Latitude"), H]},
        422,
        ("instances", "0", "Latitude"),
    ),
    ("housing-batch-too-large", "housing", {"instances": [H] * 10_001}, 422, ("instances",)),
    ("iris-missing-field", "iris", without(I, "petal_width"), 422, ("petal_width",)),
    ("iris-unknown-field", "iris", {**I, "species": "setosa"}, 422, ("species",)),
    ("iris-negative-length", "iris", {**I, "sepal_length": -1}, 422, ("sepal_length",)),
    ("iris-string", "iris", {**I, "petal_length": "long"}, 422, ("petal_length",)),
    ("iris-false", "iris", {**I, "sepal_width": False}, 422, ("sepal_width",)),
    (
        "iris-nan-in-batch",
        "iris",
        raw(json.dumps({"instances": [I, I]}).replace("0.2}]", "NaN}]")),
        422,
        ("instances", "1", "petal_width"),
    ),
    (
        "iris-batch-row-2-two-fields",
        "iris",
        {"instances": [I, I, {**I, "sepal_length": -2, "petal_width": "w"}]},
        422,
        ("instances", "2", "petal_width"),
    ),
    ("iris-lone-surrogate-key", "iris", raw('{"\\ud800": 1}'), 422, ("\ud800",)),
    ("iris-malformed-json", "iris", raw('{"sepal_length": 5.1,'), 400, None),
    ("iris-empty-body", "iris", raw(""), 400, None),
    ("iris-not-json-syntax", "iris", raw("sepal_length=5.1"), 400, None),
    ("iris-trailing-garbage", "iris", raw(json.dumps(I) + " }"), 400, None),
    ("iris-deeply-nested", "iris", raw("[" * 100_000 + "]" * 100_000), 400, None),
]


@pytest.mark.parametrize(
    ("model", "body", "status", "path"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input(client, model: str, body: Any, status: int, path: tuple[str, ...] | None):
    if isinstance(body, tuple) and body[0] == "raw":
        response = client.post(f"/predict/{model}", data=body[1], content_type="application/json")
    else:
        response = client.post(f"/predict/{model}", json=body)
    payload = response.get_json()
    assert response.status_code == status, payload
    assert set(payload) <= {"code", "status", "message", "errors"}
    assert payload["code"] == status and payload["status"] and payload["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    if path is not None:
        node = payload["errors"]
        for key in path:
            assert key in node, (key, payload["errors"])
            node = node[key]
        assert node and all(isinstance(m, str) for m in node) if isinstance(node, list) else node


def test_none_of_the_table_is_5xx_nor_fewer_than_30():
    assert len(CASES) >= 30
    assert all(status < 500 for *_, status, _path in CASES)


@pytest.mark.parametrize(
    ("content_type", "status"),
    [("text/plain", 415), ("application/x-www-form-urlencoded", 415), (None, 415)],
)
def test_non_json_content_type_is_415(client, content_type, status):
    kwargs = {"content_type": content_type} if content_type else {}
    response = client.post("/predict/iris", data=json.dumps(I), **kwargs)
    assert response.status_code == status
    assert response.get_json()["code"] == 415


def test_json_suffix_media_type_is_accepted(client):
    response = client.post(
        "/predict/iris", data=json.dumps(I), content_type="application/vnd.api+json"
    )
    assert response.status_code == 200


def test_body_over_the_limit_is_413(api_app):
    limit = api_app.config["MAX_CONTENT_LENGTH"]
    body = json.dumps({"instances": [I] * (limit // 60 + 1)})
    assert len(body) > limit
    response = api_app.test_client().post(
        "/predict/iris", data=body, content_type="application/json"
    )
    assert response.status_code == 413
    assert response.get_json()["status"] == "Request Entity Too Large"


def test_unknown_route_and_method(client):
    missing = client.get("/predict/wine")
    assert missing.status_code == 404 and missing.get_json()["code"] == 404
    wrong_method = client.get("/predict/iris")
    assert wrong_method.status_code == 405
    assert wrong_method.get_json()["code"] == 405
    assert "POST" in wrong_method.headers["Allow"]


def test_batch_errors_are_capped(client):
    bad = {**I, "sepal_length": "x"}
    response = client.post("/predict/iris", json={"instances": [bad] * 500})
    body = response.get_json()
    assert response.status_code == 422
    assert len(body["errors"]["instances"]) == 100
    assert "first 100" in body["message"]


def test_unexpected_error_is_a_bare_500(api_app, monkeypatch):
    from app import prediction

    def explode(*_args, **_kwargs):
        raise RuntimeError("secret /etc/path detail")

    monkeypatch.setattr(prediction, "predict", explode)
    response = api_app.test_client().post("/predict/iris", json=I)
    text = response.get_data(as_text=True)
    assert response.status_code == 500
    assert response.get_json()["code"] == 500
    assert "secret" not in text and "/etc/path" not in text and "Traceback" not in text


def test_inputs_that_overflow_the_model_are_422_not_null(api_app, client, monkeypatch):
    class Overflowing:
        def predict(self, x):
            with np.errstate(over="ignore"):  # what a linear model does with huge inputs
                return x[:, 0] * 1e308 * 10

    cache = get_runtime(api_app).cache
    served = cache.get("housing")
    monkeypatch.setitem(cache._served, "housing", replace(served, model=Overflowing()))
    rows = {"instances": [{**H, "MedInc": 1.0}, {**H, "MedInc": 0.0}]}
    response = client.post("/predict/housing", json=rows)
    assert response.status_code == 422
    assert list(response.get_json()["errors"]["instances"]) == ["0"]
