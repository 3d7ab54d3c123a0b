"""The API serves each version in the runtime its validation chose, says which, and answers
what scikit-learn answers; a version whose conversion failed is served by scikit-learn with the
reason, end to end through validate, register and a hot swap."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import compiled, registry
from core.specs import HOUSING, IRIS, MODEL_SPECS
from pipeline import compile as compile_stage
from pipeline import io, register, validate
from tests import procs


def _holdout(workspace: Path, model: str, rows: int) -> np.ndarray:
    frame = pd.read_csv(workspace / io.prepared_dir(model) / "holdout.csv")
    return frame[MODEL_SPECS[model].feature_names].to_numpy(float)[:rows]


def test_models_info_and_metrics_name_the_runtime(client):
    info = {m["name"]: m for m in client.get("/models/info").get_json()["models"]}
    for name in MODEL_SPECS:
        assert info[name]["runtime"] == compiled.RUNTIME_ONNX
        assert info[name]["runtime_reason"] is None
    versions = client.get("/models/iris").get_json()["versions"]
    assert versions[-1]["runtime"] == compiled.RUNTIME_ONNX
    metrics = client.get("/metrics").get_data(as_text=True)
    served = [line for line in metrics.splitlines() if line.startswith("model_info{")]
    for name in MODEL_SPECS:
        assert any(
            f'model="{name}"' in line and 'runtime="onnxruntime"' in line and line.endswith(" 1.0")
            for line in served
        ), served


def test_the_api_answers_what_scikit_learn_answers(client, trained_registry):
    for spec in (HOUSING, IRIS):
        x = _holdout(trained_registry.workspace, spec.name, 25)
        sklearn_model = registry.load_model(spec.registered_name, "1")
        rows = [dict(zip(spec.feature_names, row, strict=True)) for row in x.tolist()]
        batch = client.post(f"/predict/{spec.name}", json={"instances": rows}).get_json()
        singles = [client.post(f"/predict/{spec.name}", json=row).get_json() for row in rows[:5]]
        if spec.task == "regression":
            expected = sklearn_model.predict(x)
            np.testing.assert_allclose(batch["predictions"], expected, rtol=1e-6)
            got = [s["prediction"] for s in singles]
            np.testing.assert_allclose(got, expected[:5], rtol=1e-6)
        else:
            proba = sklearn_model.predict_proba(x)
            classes = [str(c) for c in sklearn_model.classes_]
            labels = [classes[i] for i in proba.argmax(axis=1)]
            assert [p["label"] for p in batch["predictions"]] == labels
            got = [[p["probabilities"][c] for c in classes] for p in batch["predictions"]]
            np.testing.assert_allclose(got, proba, atol=1e-6, rtol=0)
            assert [s["prediction"] for s in singles] == labels[:5]


def _raise(task, pipeline):
    raise RuntimeError("converter exploded on purpose")


@pytest.fixture
def workspace_copy(trained_registry, tmp_path: Path, monkeypatch) -> Path:
    """A copy of the session's pipeline workspace, made the current directory."""
    ws = tmp_path / "ws"
    shutil.copytree(trained_registry.workspace, ws, ignore=shutil.ignore_patterns("tmp", "cache"))
    monkeypatch.chdir(ws)
    return ws


def test_a_version_whose_conversion_failed_serves_with_scikit_learn_and_says_why(
    app_on_copy, workspace_copy, monkeypatch
):
    client = app_on_copy.test_client()
    monkeypatch.setattr(
        compile_stage,
        "CONVERTERS",
        tuple((name, applies, _raise) for name, applies, _ in compile_stage.CONVERTERS),
    )
    validate.main("iris")  # the real stages, in process, with every converter failing
    register.main("iris")
    report = io.read_json(io.reports_dir("iris") / "registration.json")
    version = str(report["candidate_version"])
    info = registry.get_version(IRIS.registered_name, version)
    assert info.tags[compiled.TAG_RUNTIME] == compiled.RUNTIME_SKLEARN
    reason = info.tags[compiled.TAG_RUNTIME_REASON]
    assert "converter exploded on purpose" in reason
    _pipeline, files = registry.load_model_and_files(IRIS.registered_name, version)
    assert set(files) == {"conformal.json"}  # nothing compiled is stored with it

    registry.promote(IRIS.registered_name, version)

    def serving_new() -> dict | None:
        models = client.get("/models/info").get_json()["models"]
        iris_info = next(m for m in models if m["name"] == "iris")
        return iris_info if iris_info["version"] == version else None

    served = procs.wait_until(serving_new, 30, f"iris version {version} to serve")
    assert served["runtime"] == compiled.RUNTIME_SKLEARN
    assert served["runtime_reason"] == reason
    answer = client.post("/predict/iris", json=IRIS.example_row())
    assert answer.status_code == 200 and answer.get_json()["model"]["version"] == version
    housing = next(
        m for m in client.get("/models/info").get_json()["models"] if m["name"] == "housing"
    )
    assert housing["runtime"] == compiled.RUNTIME_ONNX  # the other model is untouched
    metrics = client.get("/metrics").get_data(as_text=True)
    assert any(
        line.startswith("model_info{")
        and f'version="{version}"' in line
        and 'runtime="sklearn"' in line
        and line.endswith(" 1.0")
        for line in metrics.splitlines()
    )
