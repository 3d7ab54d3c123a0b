"""Pipeline workspaces: the folder `dvc repro` runs in (the project itself, a copy, or links)."""

from __future__ import annotations

import shutil
from pathlib import Path

from core.settings import PROJECT_ROOT

# What a pipeline run reads from the project: code, params, the DVC definition, the raw data.
SOURCE_ITEMS = (
    "core",
    "pipeline",
    "data/raw",
    "dvc.yaml",
    "params.yaml",
    ".dvcignore",
    ".dvc/config",
)
# A copied workspace also starts from the project's lock file and the feedback exported so far
# (the runner refreshes the feedback from the app database before every run).
WORKSPACE_ITEMS = (*SOURCE_ITEMS, "data/feedback", "dvc.lock")
NO_SCM = "[core]\n    no_scm = true\n"


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
    (dest / ".dvc" / "config.local").write_text(NO_SCM, encoding="utf-8")
    return dest


def _replace_with_link(target: Path, src: Path) -> None:
    if target.is_symlink() and target.readlink() == src:
        return
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():  # a copy made by an older image: it would freeze the old code
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(src)


def link(dest: Path, source: Path = PROJECT_ROOT) -> Path:
    """Make dest a workspace of data and state only: code, params, the DVC definition and the raw
    data are symbolic links into source, so a new image's code and params apply from its first
    run, while DVC's outputs, lock file and cache stay in dest."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for item in SOURCE_ITEMS:
        if (source / item).exists():
            _replace_with_link(dest / item, (source / item).resolve())
    (dest / ".dvc" / "config.local").write_text(NO_SCM, encoding="utf-8")
    return dest
