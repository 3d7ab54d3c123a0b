"""What a pipeline run produces depends on data, params and seed only: a clean run whose every
latency measurement is slowed x3 picks the same algorithms and writes the same bytes, and
re-running a stage whose inputs did not change registers nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core import registry
from core.specs import MODEL_SPECS
from pipeline import measure, workspace
from pipeline.runner import run_pipeline
from tests import procs
from tests.conftest import TEST_PARAMS, registry_env, stage_env

# Information, not decisions: measured latency (train.json) and run ids (registration.json).
INFORMATIONAL = ("train.json", "registration.json")


def decided_outputs(ws: Path) -> dict[str, str]:
    """md5 of every DVC output of the workspace except the informational ones."""
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    return {
        f"{stage}:{out['path']}": out["md5"]
        for stage, entry in lock["stages"].items()
        for out in entry.get("outs", [])
        if not out["path"].endswith(INFORMATIONAL)
    }


def picked(ws: Path) -> dict[str, str]:
    """The algorithm train picked per model."""
    return {
        m: json.loads((ws / "models" / m / "train.json").read_text())["algorithm"]
        for m in MODEL_SPECS
    }


# A whole clean pipeline run (plus the session's, when this test is the first to need it) on a
# loaded 2-core machine.
@pytest.mark.timeout(1800)
def test_a_slowed_clock_picks_and_produces_the_same_models(trained_registry, tmp_path):
    state = tmp_path / "state"
    env = {**registry_env(state), measure.TIMING_SCALE_ENV: "3"}
    try:
        with procs.environ(env):
            registry.configure(env["MLFLOW_TRACKING_URI"])
            ws = workspace.create(tmp_path / "ws", params_file=TEST_PARAMS)
            results = run_pipeline("all", workspace=ws)
            slowed = {
                m: registry.get_version(s.registered_name, "1").tags for m, s in MODEL_SPECS.items()
            }
    finally:
        registry.configure(trained_registry.tracking_uri)

    normal = trained_registry.workspace
    assert picked(ws) == picked(normal)
    assert decided_outputs(ws) == decided_outputs(normal)
    outputs = decided_outputs(ws)
    for model in MODEL_SPECS:
        assert f"train@{model}:models/{model}/model.pkl" in outputs
        # The calibration stored with the version: out-of-fold residuals or probabilities.
        assert f"train@{model}:models/{model}/conformal.json" in outputs
        assert (ws / "models" / model / "conformal.json").read_bytes() == (
            normal / "models" / model / "conformal.json"
        ).read_bytes()
        assert (ws / "metrics" / f"{model}.json").read_bytes() == (
            normal / "metrics" / f"{model}.json"
        ).read_bytes()
        assert results[model]["metrics"] == trained_registry.results[model]["metrics"]
        first = registry.get_version(MODEL_SPECS[model].registered_name, "1").tags
        for tag in ("algorithm", "metrics", "data_hash", "params"):
            assert slowed[model][tag] == first[tag], tag
    # The slowed figures were really recorded (x3 of a real measurement is well above zero).
    for model in MODEL_SPECS:
        assert json.loads((ws / "models" / model / "train.json").read_text())["latency_ms"] > 0


def test_rerunning_train_and_validate_registers_nothing(registry_copy, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(registry_copy.workspace, ws, symlinks=True)
    before_outputs = decided_outputs(ws)
    versions = {m: len(registry.list_versions(s.registered_name)) for m, s in MODEL_SPECS.items()}

    # Forced, one stage each: a new timing in train.json and a re-measured validation report.
    stages = ["train@iris", "validate@housing", "validate@iris"]
    subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "--force", "--single-item", *stages],
        cwd=ws,
        env=stage_env(registry_copy.env),
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert decided_outputs(ws) == before_outputs
    results = run_pipeline("all", workspace=ws)
    for model, result in results.items():
        assert result["up_to_date"] is True, (model, result)
    after = {m: len(registry.list_versions(s.registered_name)) for m, s in MODEL_SPECS.items()}
    assert after == versions
