"""The real pipeline end to end: DVC stages, MLflow SQLite registry, aliases and the gate."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import mlflow
import pytest
import yaml

from core import registry
from core.specs import ALIAS_CHALLENGER, ALIAS_CHAMPION, ALIAS_PREVIOUS, MODEL_SPECS
from pipeline.runner import run_pipeline

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REQUIRED_TAGS = ("data_hash", "params", "git_commit", "pipeline_run_id", "metrics", "algorithm")


def _workspace_with(trained_registry, tmp_path, edit) -> object:
    """A copy of the trained workspace (outputs and DVC cache included) with edited params."""
    ws = tmp_path / "ws"
    shutil.copytree(trained_registry.workspace, ws, symlinks=True)
    params = yaml.safe_load((ws / "params.yaml").read_text())
    edit(params)
    (ws / "params.yaml").write_text(yaml.safe_dump(params))
    return ws


@pytest.mark.parametrize("model", sorted(MODEL_SPECS))
def test_first_run_registers_a_tagged_champion(trained_registry, model):
    spec = MODEL_SPECS[model]
    result = trained_registry.results[model]
    assert result["promoted"] is True
    assert result["candidate_version"] == "1"
    champ = registry.champion(spec.registered_name)
    assert champ is not None and champ.version == "1"
    for tag in REQUIRED_TAGS:
        assert champ.tags.get(tag), f"version 1 of {model} lacks tag {tag}"
    assert champ.tag_json("metrics")[spec.primary_metric] == pytest.approx(
        result["metrics"][spec.primary_metric]
    )
    assert len(champ.tags["data_hash"]) == 64
    # Logged to the project's experiment, so the artefacts are in the state dir, not ./mlruns.
    artifacts = (trained_registry.state_dir / "mlartifacts").as_uri()
    assert mlflow.get_run(champ.run_id).info.artifact_uri.startswith(artifacts)
    ws = trained_registry.workspace
    metrics = json.loads((ws / "metrics" / f"{model}.json").read_text())
    assert spec.primary_metric in metrics
    plots = sorted((ws / "plots" / model).glob("*.png"))
    assert plots, "no PNG plots written"
    for plot in plots:
        assert plot.read_bytes()[:8] == PNG_MAGIC


def test_registered_model_loads_and_predicts(trained_registry):
    import numpy as np

    for spec in MODEL_SPECS.values():
        model = registry.load_model(spec.registered_name, "1")
        row = np.array([list(spec.example_row().values())])
        out = model.predict(row)
        assert out.shape == (1,)
        if spec.task == "classification":
            assert out[0] in spec.classes


def test_second_repro_is_a_no_op(trained_registry):
    before = {m: len(registry.list_versions(s.registered_name)) for m, s in MODEL_SPECS.items()}
    results = run_pipeline("all", workspace=trained_registry.workspace)
    for res in results.values():
        assert res["up_to_date"] is True
        assert res["candidate_version"] is None
        assert res["reason"].startswith("up to date")
    after = {m: len(registry.list_versions(s.registered_name)) for m, s in MODEL_SPECS.items()}
    assert after == before


def test_dvc_metrics_show_prints_both_models(trained_registry):
    out = subprocess.run(
        [sys.executable, "-m", "dvc", "metrics", "show"],
        cwd=trained_registry.workspace,
        env=trained_registry.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "metrics/housing.json" in out and "rmse" in out
    assert "metrics/iris.json" in out and "accuracy" in out


def test_weak_candidate_is_registered_but_not_promoted(registry_copy, trained_registry, tmp_path):
    def weaken(params):
        params["train"]["housing"]["candidates"] = {"ridge": {"alpha": 1.0}}
        params["validate"]["housing"]["max_rmse"] = 1.0  # ridge passes validation, then loses
        params["validate"]["housing"]["min_r2"] = 0.5

    ws = _workspace_with(trained_registry, tmp_path, weaken)
    result = run_pipeline("housing", workspace=ws)["housing"]
    name = MODEL_SPECS["housing"].registered_name
    assert result["promoted"] is False
    assert result["candidate_version"] == "2"
    assert "does not beat champion v1" in result["reason"]
    assert result["metrics"]["rmse"] > result["champion_metrics"]["rmse"]
    v2 = registry.get_version(name, "2")
    assert v2.tags[registry.TAG_REJECTED_REASON] == result["reason"]
    assert ALIAS_CHALLENGER in registry.list_versions(name)[0].aliases
    assert registry.champion(name).version == "1"


def test_better_candidate_is_promoted_then_rolled_back(registry_copy, trained_registry, tmp_path):
    def strengthen(params):
        params["train"]["housing"]["candidates"] = {
            "hist_gradient_boosting": {"max_iter": 120, "max_leaf_nodes": 63}
        }

    ws = _workspace_with(trained_registry, tmp_path, strengthen)
    result = run_pipeline("housing", workspace=ws)["housing"]
    name = MODEL_SPECS["housing"].registered_name
    assert result["promoted"] is True, result["reason"]
    assert result["metrics"]["rmse"] < result["champion_metrics"]["rmse"]
    assert registry.champion(name).version == "2"
    assert registry.get_alias(name, ALIAS_PREVIOUS).version == "1"

    back = registry.rollback(name)
    assert back.version == "1"
    assert registry.champion(name).version == "1"
    assert registry.get_alias(name, ALIAS_PREVIOUS) is None
    with pytest.raises(registry.Conflict):
        registry.rollback(name)


def test_promote_moves_aliases_and_refuses_nonsense(registry_copy):
    name = MODEL_SPECS["iris"].registered_name
    source = registry.get_version(name, "1").source
    v2 = registry.register(source, name, {"note": "copy of v1"})
    assert v2.version == "2"
    with pytest.raises(registry.Conflict):
        registry.promote(name, "1")  # already champion
    with pytest.raises(registry.NotFound):
        registry.promote(name, "99")
    with pytest.raises(registry.NotFound):
        registry.promote(name, "../1")
    registry.promote(name, "2")
    assert registry.champion(name).version == "2"
    assert registry.get_alias(name, ALIAS_PREVIOUS).version == "1"
    assert registry.get_version(name, "2").tags[registry.TAG_PREVIOUS_CHAMPION] == "1"
    assert ALIAS_CHAMPION in registry.list_versions(name)[0].aliases
