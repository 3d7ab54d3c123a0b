"""Compiled inference: every candidate algorithm converts, its compiled form agrees with
scikit-learn row for row, the same model always gives the same bytes, and whenever conversion
fails or disagrees scikit-learn serves with the reason recorded."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import (
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from core import compiled, registry
from core.features import HousingFeatures
from core.specs import HOUSING, IRIS, MODEL_SPECS
from pipeline import compile as compile_stage
from pipeline import io, validate
from pipeline.data import TARGET
from tests.conftest import TrainedRegistry


def _split(ws: Path, model: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    frame = pd.read_csv(ws / io.prepared_dir(model) / f"{split}.csv")
    return frame[MODEL_SPECS[model].feature_names].to_numpy(float), frame[TARGET].to_numpy()


@pytest.fixture(scope="module")
def data(trained_registry: TrainedRegistry) -> dict[str, tuple[np.ndarray, ...]]:
    """Each model's prepared train split and holdout inputs from the session's pipeline run."""
    ws = trained_registry.workspace
    return {m: (*_split(ws, m, "train"), _split(ws, m, "holdout")[0]) for m in MODEL_SPECS}


def housing(estimator) -> Pipeline:
    return Pipeline([("features", HousingFeatures()), ("model", estimator)])


def iris(estimator) -> Pipeline:
    return Pipeline([("features", StandardScaler()), ("model", estimator)])


# Every candidate algorithm of params.yaml, small, and the runtime that must serve it.
CANDIDATES = [
    ("housing", "ridge", housing(Ridge()), compiled.RUNTIME_ONNX, "skl2onnx"),
    (
        "housing",
        "hist_gradient_boosting",
        housing(HistGradientBoostingRegressor(max_iter=40, max_leaf_nodes=15, random_state=0)),
        compiled.RUNTIME_ONNX,
        "treelite+onnx",
    ),
    (
        "housing",
        "random_forest",
        housing(RandomForestRegressor(n_estimators=8, max_depth=6, random_state=0)),
        compiled.RUNTIME_ONNX,
        "treelite+onnx",
    ),
    (
        "iris",
        "logistic_regression",
        iris(LogisticRegression(max_iter=500)),
        compiled.RUNTIME_ONNX,
        "skl2onnx",
    ),
    (
        "iris",
        "svc",
        iris(CalibratedClassifierCV(SVC(random_state=0), ensemble=False)),
        compiled.RUNTIME_ONNX,
        "skl2onnx",
    ),
    (
        "iris",
        "random_forest",
        iris(RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0)),
        compiled.RUNTIME_TREELITE,
        "treelite",
    ),
]


def _files(manifest: compiled.Manifest, artefact: bytes | None) -> dict[str, bytes]:
    files = {compiled.MANIFEST_FILE: manifest.to_json().encode()}
    if artefact is not None:
        files[manifest.artefact] = artefact
    return files


@pytest.mark.parametrize(
    ("model", "algo", "pipeline", "runtime", "converter"),
    CANDIDATES,
    ids=[f"{m}-{a}" for m, a, *_ in CANDIDATES],
)
def test_every_candidate_compiles_and_agrees_on_every_row(
    data, model, algo, pipeline, runtime, converter
):
    x_train, y_train, x_holdout = data[model]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # SVC probA_ deprecation, via skl2onnx
        fitted = clone(pipeline).fit(x_train, y_train)
    task = MODEL_SPECS[model].task
    manifest, artefact = compile_stage.convert(task, fitted)
    assert (manifest.runtime, manifest.converter) == (runtime, converter), manifest.reason

    form = compiled.load(fitted, _files(manifest, artefact))
    expected = compiled.sklearn_outputs(task, fitted, x_holdout)
    batch = compiled.agreement(task, expected, form.run(x_holdout))
    rows = np.concatenate([form.run(x_holdout[i : i + 1]) for i in range(len(x_holdout))])
    one_by_one = compiled.agreement(task, expected, rows)
    assert batch.agrees and one_by_one.agrees, (batch, one_by_one)
    assert batch.rows == len(x_holdout)
    if task == "regression":
        assert batch.max_difference <= compiled.REGRESSION_RTOL
        np.testing.assert_allclose(form.predict(x_holdout), expected, rtol=1e-6)
    else:
        assert batch.label_mismatches == 0
        assert list(form.classes_) == list(fitted.classes_)
        assert list(form.predict(x_holdout)) == list(fitted.classes_[expected.argmax(axis=1)])

    again, artefact_again = compile_stage.convert(task, fitted)
    assert again == manifest and artefact_again == artefact  # same model, same bytes


def test_the_pipeline_run_compiled_both_models_and_registered_the_forms(trained_registry):
    for model, spec in MODEL_SPECS.items():
        report = json.loads(
            (trained_registry.workspace / "reports" / model / "validation.json").read_text()
        )
        serving = report["serving"]
        assert serving["runtime"] == compiled.RUNTIME_ONNX and serving["reason"] is None
        assert serving["checked"]["holdout one by one"]["rows"] == report_rows(
            model, trained_registry
        )
        info = registry.get_version(spec.registered_name, "1")
        assert info.tags[compiled.TAG_RUNTIME] == compiled.RUNTIME_ONNX
        pipeline, files = registry.load_model_and_files(spec.registered_name, "1")
        assert {compiled.MANIFEST_FILE, "model.onnx"} <= set(files)
        probe = np.asarray([list(spec.example_row().values())] * 2, dtype=np.float64)
        serving_form = compiled.for_serving(spec.task, pipeline, files, info.tags, probe)
        assert serving_form.runtime == compiled.RUNTIME_ONNX and serving_form.reason is None


def report_rows(model: str, trained: TrainedRegistry) -> int:
    metrics = json.loads((trained.workspace / "metrics" / f"{model}.json").read_text())
    return metrics["holdout_rows"]


def _raise(task, pipeline):
    raise RuntimeError("converter exploded on purpose")


def test_a_failed_conversion_leaves_scikit_learn_serving_with_the_reason(data, monkeypatch):
    x_train, y_train, x_holdout = data["iris"]
    fitted = iris(LogisticRegression(max_iter=500)).fit(x_train, y_train)
    monkeypatch.setattr(
        compile_stage,
        "CONVERTERS",
        tuple((name, applies, _raise) for name, applies, _ in compile_stage.CONVERTERS),
    )
    manifest, artefact = compile_stage.convert(IRIS.task, fitted)
    assert manifest.runtime == compiled.RUNTIME_SKLEARN and artefact is None
    assert "LogisticRegression" in manifest.reason
    assert "skl2onnx: RuntimeError: converter exploded on purpose" in manifest.reason

    gate = validate.serving_gate(
        "iris", fitted, _files(manifest, None), [("holdout", x_holdout, False)]
    )
    assert gate == {"runtime": compiled.RUNTIME_SKLEARN, "reason": manifest.reason}


def test_a_compiled_form_that_disagrees_is_not_served(data):
    x_train, y_train, x_holdout = data["housing"]
    small = HistGradientBoostingRegressor(max_iter=10, max_leaf_nodes=7, random_state=0)
    model_a = housing(small).fit(x_train, y_train)
    model_b = housing(clone(small).set_params(max_iter=11)).fit(x_train, y_train)
    manifest, artefact = compile_stage.convert(HOUSING.task, model_a)
    rows = [("holdout", x_holdout, False)]
    # A's compiled form checked against B: a different model, so it must not serve.
    gate = validate.serving_gate("housing", model_b, _files(manifest, artefact), rows)
    assert gate["runtime"] == compiled.RUNTIME_SKLEARN
    assert gate["reason"].startswith("onnxruntime disagrees with scikit-learn on ")
    assert gate["reason"].endswith("(holdout)")
    assert validate.serving_gate("housing", model_a, _files(manifest, artefact), rows) == {
        "runtime": compiled.RUNTIME_ONNX,
        "reason": None,
        "checked": {
            "holdout": {"rows": len(x_holdout), "max_difference": pytest.approx(0, abs=1e-12)}
        },
    }


def test_at_load_time_a_broken_or_foreign_form_falls_back_with_the_reason(data):
    x_train, y_train, x_holdout = data["iris"]
    fitted = iris(LogisticRegression(max_iter=500)).fit(x_train, y_train)
    other = iris(LogisticRegression(C=0.01, max_iter=500)).fit(x_train, y_train)
    manifest, artefact = compile_stage.convert(IRIS.task, fitted)
    tags = {compiled.TAG_RUNTIME: compiled.RUNTIME_ONNX}
    probe = x_holdout[:5]

    ok = compiled.for_serving(IRIS.task, fitted, _files(manifest, artefact), tags, probe)
    assert ok.runtime == compiled.RUNTIME_ONNX and isinstance(ok.model, compiled.CompiledModel)

    broken = _files(manifest, b"not an onnx model")
    served = compiled.for_serving(IRIS.task, fitted, broken, tags, probe)
    assert served.runtime == compiled.RUNTIME_SKLEARN and served.model is fitted
    assert served.reason.startswith("the onnxruntime form failed to load (")

    foreign = compiled.for_serving(IRIS.task, other, _files(manifest, artefact), tags, probe)
    assert foreign.runtime == compiled.RUNTIME_SKLEARN and foreign.model is other
    assert "disagrees with scikit-learn" in foreign.reason and foreign.reason.endswith("load time")

    untagged = compiled.for_serving(IRIS.task, fitted, {}, {}, probe)
    assert untagged.runtime == compiled.RUNTIME_SKLEARN
    assert untagged.reason == "the version has no compiled form"
    tagged = {compiled.TAG_RUNTIME: "sklearn", compiled.TAG_RUNTIME_REASON: "why not"}
    assert compiled.for_serving(IRIS.task, fitted, {}, tagged, probe).reason == "why not"


def test_agreement_tolerances():
    values = np.array([1.0, 2.0, 4.0])
    assert compiled.agreement("regression", values, values * (1 + 5e-7)).agrees
    off = compiled.agreement("regression", values, values * np.array([1, 1 + 2e-6, 1]))
    assert off.disagreeing_rows == 1 and off.max_difference == pytest.approx(2e-6, rel=1e-3)
    assert not compiled.agreement("regression", values, np.array([1.0, np.nan, 4.0])).agrees
    proba = np.array([[0.5, 0.3, 0.2], [0.1, 0.45, 0.45]])
    assert compiled.agreement("classification", proba, proba + 5e-7).agrees
    shifted = proba + np.array([[0, 0, 0], [0, 2e-6, -2e-6]])
    flipped = compiled.agreement("classification", proba, shifted)
    assert flipped.disagreeing_rows == 1 and flipped.label_mismatches == 0
    swapped = compiled.agreement("classification", proba, proba[:, ::-1])
    assert swapped.label_mismatches == 2


CONVERT_IN_A_PROCESS = """
import hashlib, pickle, sys
from pipeline import compile as compile_stage
fitted = pickle.load(open(sys.argv[1], "rb"))
print(hashlib.md5(compile_stage.convert("classification", fitted)[1]).hexdigest())
"""


def test_the_same_model_converts_to_the_same_bytes_in_every_process(data, tmp_path):
    # Each process has its own string hash seed; set order must not reach the artefact.
    x_train, y_train, _ = data["iris"]
    fitted = iris(CalibratedClassifierCV(SVC(random_state=0), ensemble=False)).fit(x_train, y_train)
    path = tmp_path / "iris.pkl"
    path.write_bytes(pickle.dumps(fitted))
    digests = {
        subprocess.run(
            [sys.executable, "-c", CONVERT_IN_A_PROCESS, str(path)],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout.strip()
        for seed in range(1, 6)
    }
    assert len(digests) == 1, digests
    _, artefact = compile_stage.convert(IRIS.task, fitted)
    domains = [o.domain for o in onnx.load_from_string(artefact).opset_import]
    assert domains == sorted(domains)
