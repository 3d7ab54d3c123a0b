"""A registry with more versions than the pipeline's one: what pinning is tested against.

Each extra version is registered the way the register stage does it (a run with the validate
stage's report at reports/validation.json, the model logged in it, the version registered from
it), or deliberately not: a failed report, no report, a model that fails the load-time checks.
The extra models are constants, so an answer tells which version computed it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import mlflow.sklearn
import numpy as np
from flask import Flask
from mlflow import MlflowClient
from sklearn.dummy import DummyClassifier, DummyRegressor

from app.runtime import get_runtime
from core import registry
from core.specs import ALIAS_CHALLENGER, ALIAS_PREVIOUS, HOUSING, IRIS, ModelSpec
from tests import procs
from tests.api.conftest import start_app
from tests.conftest import TrainedRegistry, registry_env

PASSED = {
    "passed": True,
    "checks": [{"gate": "max_rmse", "passed": True, "value": 0.4, "limit": 0.47}],
}
FAILED = {
    "passed": False,
    "checks": [
        {"gate": "max_rmse", "passed": False, "value": 0.93, "limit": 0.47},
        {"gate": "finite_outputs", "passed": True},
    ],
}
HOUSING_CONSTANT = 2.5  # housing v2 (@previous) predicts this for every row
HOUSING_REJECTED_CONSTANT = 3.5  # housing v6 (@challenger, rejected by the gate)
IRIS_CONSTANT = "virginica"  # iris v2 (@challenger)


@dataclass
class PinnedRegistry:
    """Where the registry with extra versions lives; versions[model][role] = number."""

    tracking_uri: str
    state_dir: Path
    env: dict[str, str]
    versions: dict[str, dict[str, str]] = field(default_factory=dict)


def regressor(value: float, features: int = len(HOUSING.features)) -> DummyRegressor:
    """A housing model predicting value for every row (features: its input width)."""
    x = np.ones((3, features))
    return DummyRegressor(strategy="constant", constant=value).fit(x, [value] * 3)


def classifier(label: str) -> DummyClassifier:
    """An iris model predicting label (probability 1) for every row."""
    x = np.ones((3, len(IRIS.features)))
    return DummyClassifier(strategy="constant", constant=label).fit(x, list(IRIS.classes))


def add_version(
    spec: ModelSpec,
    estimator: Any,
    report: dict[str, Any] | None,
    experiment_id: str,
    tags: dict[str, str] | None = None,
) -> str:
    """Log estimator (and report, when given) in a run and register it; the new number."""
    with mlflow.start_run(experiment_id=experiment_id):
        if report is not None:
            mlflow.log_dict(report, registry.VALIDATION_REPORT_ARTIFACT)
        info = mlflow.sklearn.log_model(
            estimator,
            name="model",
            serialization_format="cloudpickle",
            pip_requirements=["scikit-learn"],
        )
    return str(mlflow.register_model(info.model_uri, spec.registered_name, tags=tags).version)


def build_pinned_registry(trained: TrainedRegistry, root: Path) -> PinnedRegistry:
    """A copy of the trained registry (v1 of each model @champion) with these versions added.

    housing: 2 passed (@previous, predicts 2.5), 3 failed its report, 4 has no report,
    5 fails the load-time check (3 input features), 6 passed but was rejected by the gate
    (@challenger, predicts 3.5). iris: 2 passed (@challenger, predicts virginica), 3 failed.
    """
    state_dir = root / "state"
    state_dir.mkdir(parents=True)
    shutil.copy2(trained.state_dir / "mlflow.db", state_dir / "mlflow.db")
    env = registry_env(state_dir)
    with procs.environ(env):
        registry.configure(env["MLFLOW_TRACKING_URI"])
        try:
            experiment = mlflow.create_experiment(
                "pinned-versions", artifact_location=(root / "artifacts").as_uri()
            )
            rejected = {
                registry.TAG_PROMOTED: "false",
                registry.TAG_REJECTED_REASON: "rmse 0.45 does not beat champion v1 (0.44)",
            }
            housing = {
                "passed": add_version(HOUSING, regressor(HOUSING_CONSTANT), PASSED, experiment),
                "failed": add_version(HOUSING, regressor(1.0), FAILED, experiment),
                "unvalidated": add_version(HOUSING, regressor(1.0), None, experiment),
                "load_check": add_version(HOUSING, regressor(1.0, features=3), PASSED, experiment),
                "rejected": add_version(
                    HOUSING, regressor(HOUSING_REJECTED_CONSTANT), PASSED, experiment, rejected
                ),
            }
            iris = {
                "passed": add_version(IRIS, classifier(IRIS_CONSTANT), PASSED, experiment),
                "failed": add_version(IRIS, classifier("setosa"), FAILED, experiment),
            }
            client = MlflowClient()
            client.set_registered_model_alias(
                HOUSING.registered_name, ALIAS_PREVIOUS, housing["passed"]
            )
            client.set_registered_model_alias(
                HOUSING.registered_name, ALIAS_CHALLENGER, housing["rejected"]
            )
            client.set_registered_model_alias(
                IRIS.registered_name, ALIAS_CHALLENGER, iris["passed"]
            )
        finally:
            registry.configure(trained.tracking_uri)
    return PinnedRegistry(
        env["MLFLOW_TRACKING_URI"],
        state_dir,
        {**os.environ, **env},
        {"housing": {"champion": "1", **housing}, "iris": {"champion": "1", **iris}},
    )


def copy_pinned_registry(source: PinnedRegistry, root: Path) -> PinnedRegistry:
    """A private copy of the database (artifacts are shared, read-only) for alias moves."""
    state_dir = root / "state"
    state_dir.mkdir(parents=True)
    shutil.copy2(source.state_dir / "mlflow.db", state_dir / "mlflow.db")
    env = registry_env(state_dir)
    return PinnedRegistry(
        env["MLFLOW_TRACKING_URI"], state_dir, {**os.environ, **env}, source.versions
    )


@contextlib.contextmanager
def app_on(pins: PinnedRegistry, db_dir: Path, restore: str, **overrides: Any) -> Iterator[Flask]:
    """A warmed app on pins' registry (its environment set, for MLflow calls of the test too),
    its database in db_dir; stopped afterwards, and the registry module pointed back at
    restore (the session registry's URI)."""
    keys = ("STATE_DIR", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    with procs.environ({k: pins.env[k] for k in keys}):
        app = start_app(
            MLFLOW_TRACKING_URI=pins.tracking_uri,
            DATABASE_URL=f"sqlite:///{db_dir / 'app.db'}",
            **overrides,
        )
        try:
            yield app
        finally:
            get_runtime(app).stop()
    registry.configure(restore)
