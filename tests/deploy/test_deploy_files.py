"""Deployment files checked by every tool that runs without a Docker engine: hadolint, the
compose-spec and GitHub-workflow JSON schemas, and cross-references into the repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.settings import PROJECT_ROOT

BIN = Path(sys.executable).parent
COMPOSE = PROJECT_ROOT / "docker-compose.yml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
WORKFLOW = PROJECT_ROOT / ".github" / "workflows" / "ci.yml"
ENV_EXAMPLE = PROJECT_ROOT / "deploy" / "env.example"


def tool(name: str) -> str:
    """Path of a tool from the venv or PATH; a missing tool fails the test."""
    found = shutil.which(name, path=f"{BIN}:{os.environ.get('PATH', '')}")
    assert found, f"{name} is not installed (requirements.txt pins it)"
    return found


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)


def test_hadolint_reports_nothing():
    res = run(tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == ""


@pytest.mark.parametrize(
    ("schema", "path"),
    [("vendor.compose-spec", COMPOSE), ("vendor.github-workflows", WORKFLOW)],
)
def test_files_match_their_json_schema(schema, path):
    res = run(tool("check-jsonschema"), "--builtin-schema", schema, str(path))
    assert res.returncode == 0, res.stdout + res.stderr


def test_compose_has_the_full_stack_with_healthchecks_and_volumes():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    for name in ("redis", "postgres", "mlflow", "init", "api", "worker", "prometheus", "grafana"):
        assert name in services, name
    for name in ("redis", "postgres", "mlflow", "api", "worker"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    assert "--appendonly" in services["redis"]["command"]
    assert "--serve-artifacts" in services["mlflow"]["command"]
    assert services["api"]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert services["prometheus"]["profiles"] == ["monitoring"]
    env = services["api"]["environment"]
    assert env["DATABASE_URL"].startswith("postgresql")
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "ports" not in services["api"], "a fixed host port would break --scale api=2"
    for volume in ("redis-data", "postgres-data", "mlflow-artifacts", "pipeline-workspace"):
        assert volume in compose["volumes"]
    grafana_env = services["grafana"]["environment"]
    assert "GRAFANA_ADMIN_PASSWORD" in grafana_env["GF_SECURITY_ADMIN_PASSWORD"]


def test_every_path_the_compose_file_mounts_exists():
    compose = yaml.safe_load(COMPOSE.read_text())
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (PROJECT_ROOT / source).exists(), f"{name} mounts missing {source}"


def test_dockerfile_references_exist_and_runs_as_non_root():
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:\d+\.\d+\.\d+-slim-\w+ AS build", text, re.M)
    assert re.search(r"^USER \d+:\d+$", text, re.M)
    assert "HEALTHCHECK" in text and "/health/live" in text
    for src in re.findall(r"^COPY (?!--from)(?:--\S+ )*(\S+) ", text, re.M):
        assert (PROJECT_ROOT / src).exists(), f"COPY source {src} is missing"
    entry = re.search(r'^ENTRYPOINT \["([^"]+)"\]', text, re.M).group(1)
    assert (PROJECT_ROOT / entry.removeprefix("/app/")).exists()


def test_entrypoint_and_procfile_commands_point_at_real_modules():
    for text in (
        (PROJECT_ROOT / "deploy" / "entrypoint.sh").read_text(),
        (PROJECT_ROOT / "deploy" / "Procfile").read_text(),
    ):
        assert "deploy/gunicorn.conf.py" in text and '"app:create_app()"' in text
        assert "workers.make_celery" in text
    assert (PROJECT_ROOT / "deploy" / "gunicorn.conf.py").exists()
    assert (PROJECT_ROOT / "workers" / "make_celery.py").exists()
    assert (PROJECT_ROOT / "app" / "__init__.py").exists()


def test_every_env_name_used_by_compose_is_documented():
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.M))
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", COMPOSE.read_text()))
    assert used <= documented, f"undocumented in deploy/env.example: {used - documented}"
    app_env = yaml.safe_load(COMPOSE.read_text())["x-app"]["environment"]
    assert set(app_env) <= documented | {"PIPELINE_WORKSPACE"}


def test_actionlint_accepts_the_workflow_and_catches_a_broken_one(tmp_path):
    exe = tool("actionlint")
    res = run(exe, str(WORKFLOW))
    assert res.returncode == 0, res.stdout + res.stderr
    broken = tmp_path / "ci.yml"
    broken.write_text(WORKFLOW.read_text().replace("needs: lint", "needs: lnit"))
    res = run(exe, str(broken))
    assert res.returncode != 0 and 'needs job "lnit"' in res.stdout
