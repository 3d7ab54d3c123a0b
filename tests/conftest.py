"""Session fixtures: one real pipeline run (DVC + MLflow SQLite registry) shared by all tests."""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from core import registry, settings
from core.settings import PROJECT_ROOT
from tests import procs

TEST_PARAMS = Path(__file__).with_name("params.test.yaml")
IN_CI = os.environ.get("CI") == "true"


@dataclass
class TrainedRegistry:
    """Where the session's registry lives and the environment subprocesses need to use it."""

    tracking_uri: str
    state_dir: Path
    workspace: Path
    env: dict[str, str]
    results: dict


def registry_env(state_dir: Path) -> dict[str, str]:
    """Environment that points MLflow, the app database and child processes at state_dir."""
    env = dict(settings.QUIET_ENV)
    env.update(
        {
            "STATE_DIR": str(state_dir),
            "MLFLOW_TRACKING_URI": f"sqlite:///{state_dir / 'mlflow.db'}",
            # mlflow.set_registry_uri() exports this; children must not inherit a stale one.
            "MLFLOW_REGISTRY_URI": f"sqlite:///{state_dir / 'mlflow.db'}",
            "DATABASE_URL": f"sqlite:///{state_dir / 'app.db'}",
            "PYTHONPATH": str(PROJECT_ROOT),
        }
    )
    return env


def stage_env(env: dict[str, str]) -> dict[str, str]:
    """env for running DVC or a stage by hand: stage commands say `python`, meaning this venv's."""
    return {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture(scope="session")
def trained_registry(tmp_path_factory: pytest.TempPathFactory) -> TrainedRegistry:
    """Run the real pipeline once (small params profile); both models get version 1 @champion."""
    from pipeline import workspace
    from pipeline.runner import run_pipeline

    root = tmp_path_factory.mktemp("trained")
    state_dir = root / "state"
    env = registry_env(state_dir)
    with procs.environ(env):
        ws = workspace.create(root / "workspace", params_file=TEST_PARAMS)
        started = time.monotonic()
        results = run_pipeline("all", workspace=ws)
        print(f"\n[trained_registry] pipeline took {time.monotonic() - started:.1f}s")
        yield TrainedRegistry(
            env["MLFLOW_TRACKING_URI"], state_dir, ws, {**os.environ, **env}, results
        )


@pytest.fixture
def registry_copy(
    trained_registry: TrainedRegistry, tmp_path: Path, monkeypatch
) -> TrainedRegistry:
    """A private copy of the trained registry database, for tests that move aliases."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    shutil.copy2(trained_registry.state_dir / "mlflow.db", state_dir / "mlflow.db")
    env = registry_env(state_dir)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    registry.configure(env["MLFLOW_TRACKING_URI"])
    yield TrainedRegistry(
        env["MLFLOW_TRACKING_URI"], state_dir, trained_registry.workspace, {**os.environ, **env}, {}
    )
    registry.configure(trained_registry.tracking_uri)


@pytest.fixture(scope="session")
def pinned_registry(trained_registry: TrainedRegistry, tmp_path_factory: pytest.TempPathFactory):
    """The trained registry plus versions to pin (tests/api/versions_support.py); read-only."""
    from tests.api.versions_support import build_pinned_registry

    return build_pinned_registry(trained_registry, tmp_path_factory.mktemp("pinned"))
