"""Pipeline workspaces: the folder `dvc repro` runs in (the project itself, or a copy)."""

from __future__ import annotations

import shutil
from pathlib import Path

from core.settings import PROJECT_ROOT

# What a pipeline run needs: code, params, the DVC definition, the raw data and the feedback
# exported so far (the runner refreshes it from the app database before every run).
WORKSPACE_ITEMS = (
    "core",
    "pipeline",
    "data/raw",
    "data/feedback",
    "dvc.yaml",
    "dvc.lock",
    "params.yaml",
    ".dvcignore",
    ".dvc/config",
)


def create(dest: Path, source: Path = PROJECT_ROOT, params_file: Path | None = None) -> Path:
    """Copy a runnable workspace into dest (no git: DVC runs with core.no_scm)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for item in WORKSPACE_ITEMS:
        src = source / item
        if not src.exists():
            continue
        target = dest / item
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=ignore, dirs_exist_ok=True)
        else:
            shutil.copy2(src, target)
    if params_file is not None:
        shutil.copy2(params_file, dest / "params.yaml")
    (dest / ".dvc" / "config.local").write_text("[core]\n    no_scm = true\n", encoding="utf-8")
    return dest
