"""Where each stage reads and writes, relative to the pipeline workspace (DVC's working dir)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from core.registry import DRIFT_REFERENCE_ARTIFACT
from core.specs import get_spec
from pipeline.data import TARGET


def prepared_dir(model: str) -> Path:
    """Folder holding train.csv and holdout.csv."""
    return Path("data/prepared") / model


def feedback_file(model: str) -> Path:
    """Labelled live rows exported from the app database (extra training data)."""
    return Path("data/feedback") / f"{model}.csv"


def model_dir(model: str) -> Path:
    """Folder holding fitted artefacts of one model."""
    return Path("models") / model


def compiled_dir(model: str) -> Path:
    """Folder holding the compiled form of the fitted model (core.compiled.Manifest + artefact)."""
    return model_dir(model) / "compiled"


def read_compiled(model: str) -> dict[str, bytes]:
    """Every file of compiled_dir(model) by name (what register logs with the version)."""
    return {p.name: p.read_bytes() for p in sorted(compiled_dir(model).iterdir()) if p.is_file()}


def drift_reference_file(model: str) -> Path:
    """Training-data drift reference; the file name is also its MLflow artifact name."""
    return model_dir(model) / DRIFT_REFERENCE_ARTIFACT


def metrics_file(model: str) -> Path:
    """Holdout metrics JSON (a DVC metric)."""
    return Path("metrics") / f"{model}.json"


def plots_dir(model: str) -> Path:
    """PNG plots folder (a DVC plot)."""
    return Path("plots") / model


def reports_dir(model: str) -> Path:
    """Validation and registration reports."""
    return Path("reports") / model


def read_split(model: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Features (contract column order) and target of the train or holdout split."""
    frame = pd.read_csv(prepared_dir(model) / f"{split}.csv")
    x = frame[get_spec(model).feature_names].to_numpy(dtype=float)
    return x, frame[TARGET].to_numpy()


def write_json(path: Path, payload: dict[str, Any], sort_keys: bool = True) -> None:
    """Write pretty JSON, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=2, sort_keys=sort_keys)
    path.write_text(text + "\n", encoding="utf-8")


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_object(path: Path, obj: Any) -> None:
    """Persist a fitted object between stages."""
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(obj, path)


def load_object(path: Path) -> Any:
    """Load an object saved by save_object (stage outputs of this same workspace only)."""
    return joblib.load(path)
