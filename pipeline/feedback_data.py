"""Labelled live predictions as training data: data/feedback/<model>.csv from the app database.

The file is a DVC dependency of the prepare stage, so its bytes must depend only on the stored
labels: same labels -> same file -> the pipeline stays up to date and no new version appears.
"""

from __future__ import annotations

import csv
import io as stdio
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from core import feedback
from core.specs import ModelSpec, get_spec
from pipeline import io
from pipeline.data import TARGET


def columns(spec: ModelSpec) -> list[str]:
    """CSV header: the contract features in input order, then the target."""
    return [*spec.feature_names, TARGET]


def to_csv(spec: ModelSpec, rows: Iterable[dict[str, Any]]) -> bytes:
    """CSV bytes of training rows; floats as repr so a value always prints the same way."""
    buffer = stdio.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns(spec))
    for row in rows:
        features = [repr(float(row[name])) for name in spec.feature_names]
        target = row[TARGET]
        label = str(target) if spec.task == "classification" else repr(float(target))
        writer.writerow([*features, label])
    return buffer.getvalue().encode("utf-8")


def write_if_changed(path: Path, content: bytes) -> bool:
    """Replace path atomically with content unless it already holds exactly that."""
    if path.exists() and path.read_bytes() == content:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_bytes(content)
    os.replace(partial, path)  # a concurrent reader sees the old file or the new, never half
    return True


def export(engine: Engine, model: str, workspace: Path) -> Path:
    """Write <workspace>/data/feedback/<model>.csv from every stored label, oldest first."""
    spec = get_spec(model)
    path = Path(workspace) / io.feedback_file(model)
    write_if_changed(path, to_csv(spec, feedback.training_rows(engine, spec)))
    return path


def ensure(model: str, workspace: Path) -> Path:
    """Create a header-only feedback file when none exists (DVC needs the dependency)."""
    path = Path(workspace) / io.feedback_file(model)
    if not path.exists():
        write_if_changed(path, to_csv(get_spec(model), []))
    return path
