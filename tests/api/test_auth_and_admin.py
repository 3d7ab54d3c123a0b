"""Admin endpoints: bearer token (401/403), promote and rollback through the API."""

from __future__ import annotations

import mlflow
import pytest

from app import create_app
from app.runtime import get_runtime
from core import registry
from core.specs import IRIS
from tests.api.conftest import ADMIN, config_with, example

ADMIN_CALLS = [
    ("post", "/models/iris/promote", {"version": "1"}),
    ("post", "/models/iris/rollback", None),
    ("get", "/predictions", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Missing bearer token."),
        ({"Authorization": "Bearer wrong-token"}, "Invalid bearer token."),
        ({"Authorization": "Basic dGVzdC1hZG1pbi10b2tlbg=="}, "Missing bearer token."),
        ({"Authorization": "Bearer"}, "Missing bearer token."),
        ({"Authorization": "Bearer test-admin-token-and-more"}, "Invalid bearer token."),
    ],
)
def test_missing_or_wrong_token_is_401(client, method, path, body, headers, message):
    response = getattr(client, method)(path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.get_json() == {"code": 401, "status": "Unauthorized", "message": message}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
def test_no_configured_token_is_403(trained_registry, method, path, body):
    app = create_app(config_with(API_ADMIN_TOKEN=None))
    client = app.test_client()
    # Even the right-looking token is refused: admin endpoints never run open.
    response = getattr(client, method)(path, json=body, headers=ADMIN)
    assert response.status_code == 403
    assert response.get_json()["code"] == 403
    assert "API_ADMIN_TOKEN" in response.get_json()["message"]


def test_auth_is_checked_before_the_body(client):
    response = client.post("/models/iris/promote", json={"version": "not-a-number"})
    assert response.status_code == 401


def _second_version() -> str:
    champion = registry.champion(IRIS.registered_name)
    return str(mlflow.register_model(champion.source, IRIS.registered_name).version)


def test_promote_and_rollback(app_on_copy):
    client = app_on_copy.test_client()
    new = _second_version()
    response = client.post("/models/iris/promote", json={"version": new}, headers=ADMIN)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["champion"]["version"] == new and "champion" in body["champion"]["aliases"]
    assert registry.champion(IRIS.registered_name).version == new
    # promote pokes this worker's refresher: it serves the new version promptly.
    cache = get_runtime(app_on_copy).cache
    assert _wait_for(lambda: cache.get("iris").version == new)
    assert client.post("/predict/iris", json=example("iris")).get_json()["model"]["version"] == new

    again = client.post("/models/iris/promote", json={"version": new}, headers=ADMIN)
    assert again.status_code == 409

    back = client.post("/models/iris/rollback", headers=ADMIN)
    assert back.status_code == 200
    assert back.get_json()["champion"]["version"] == "1"
    assert registry.champion(IRIS.registered_name).version == "1"
    assert _wait_for(lambda: cache.get("iris").version == "1")
    # Nothing left to roll back to.
    assert client.post("/models/iris/rollback", headers=ADMIN).status_code == 409


def test_promote_errors(app_on_copy):
    client = app_on_copy.test_client()
    cases = [
        ("/models/iris/promote", {"version": "999"}, 404),
        ("/models/wine/promote", {"version": "1"}, 404),
        ("/models/iris/promote", {"version": "abc"}, 422),
        ("/models/iris/promote", {"version": True}, 422),
        ("/models/iris/promote", {}, 422),
        ("/models/iris/promote", {"version": "1", "force": True}, 422),
        ("/models/iris/promote", {"version": "1"}, 409),  # already champion
        ("/models/wine/rollback", None, 404),
        ("/models/iris/promote", {"version": "9" * 30}, 422),
    ]
    for path, body, status in cases:
        response = client.post(path, json=body, headers=ADMIN)
        assert response.status_code == status, (path, body, response.get_json())
        assert response.get_json()["code"] == status
    invalid = client.post("/models/iris/promote", json={"version": "abc"}, headers=ADMIN)
    assert "version" in invalid.get_json()["errors"]
    not_json = client.post(
        "/models/iris/promote", data="version=2", content_type="text/plain", headers=ADMIN
    )
    assert not_json.status_code == 415
    malformed = client.post(
        "/models/iris/promote", data="{", content_type="application/json", headers=ADMIN
    )
    assert malformed.status_code == 400 and malformed.get_json()["code"] == 400


def _wait_for(check, timeout: float = 15.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False
