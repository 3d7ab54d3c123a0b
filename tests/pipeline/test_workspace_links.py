"""`init-workspace`: a container's workspace holds data and state only; code and params are links
into the image, so a new image's code and params apply at its next start."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core import settings
from core.settings import PROJECT_ROOT
from pipeline import cli, workspace


def image(root: Path, version: str) -> Path:
    """A stand-in for an image's /app: the project's pipeline sources, params marked version."""
    for item in workspace.SOURCE_ITEMS:
        src = PROJECT_ROOT / item
        dest = root / item
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest)
    params = root / "params.yaml"
    params.write_text(f"# image {version}\n" + params.read_text())
    return root


def test_workspace_links_code_and_params_and_keeps_only_state(tmp_path):
    app = image(tmp_path / "app", "1")
    ws = workspace.link(tmp_path / "ws", source=app)
    for item in workspace.SOURCE_ITEMS:
        assert (ws / item).is_symlink(), item
        assert (ws / item).resolve() == (app / item).resolve()
    assert "no_scm = true" in (ws / ".dvc" / "config.local").read_text()
    files = [p.relative_to(ws) for p in ws.rglob("*") if p.is_file() and not p.is_symlink()]
    assert files == [Path(".dvc/config.local")]


def test_a_new_image_is_picked_up_and_state_is_kept(tmp_path):
    old, new = image(tmp_path / "old", "1"), image(tmp_path / "new", "2")
    # A workspace as the previous layout left it: copies of the code and params, plus state.
    ws = workspace.create(tmp_path / "ws", source=old)
    (ws / "models" / "iris").mkdir(parents=True)
    (ws / "models" / "iris" / "model.pkl").write_bytes(b"state")
    (ws / "dvc.lock").write_text("schema: '2.0'\n")

    assert cli.main(["init-workspace", str(ws)]) == 0  # as the entrypoint does at every start
    workspace.link(ws, source=new)
    assert (ws / "params.yaml").read_text().startswith("# image 2\n")
    assert (ws / "pipeline").resolve() == (new / "pipeline").resolve()
    assert (ws / "models" / "iris" / "model.pkl").read_bytes() == b"state"
    assert (ws / "dvc.lock").read_text() == "schema: '2.0'\n"
    workspace.link(ws, source=new)  # idempotent
    assert (ws / "params.yaml").resolve() == (new / "params.yaml").resolve()


@pytest.mark.slow
def test_dvc_runs_in_a_linked_workspace_and_writes_only_there(tmp_path):
    app = image(tmp_path / "app", "1")  # in the image, the app user cannot write here
    ws = workspace.link(tmp_path / "ws", source=app)
    (ws / "data" / "feedback").mkdir(parents=True)
    shutil.copy2(PROJECT_ROOT / "data" / "feedback" / "iris.csv", ws / "data" / "feedback")
    env = {**os.environ, **settings.QUIET_ENV, "PYTHONPATH": str(app)}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    res = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "--single-item", "prepare@iris"],
        cwd=ws,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert (ws / "dvc.lock").is_file() and not (ws / "dvc.lock").is_symlink()
    assert "prepare@iris" in (ws / "dvc.lock").read_text()
    assert (ws / "data" / "prepared" / "iris").is_dir()
    assert not (app / "dvc.lock").exists()
