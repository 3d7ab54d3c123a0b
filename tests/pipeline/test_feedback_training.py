"""Labelled live predictions become training rows of the next version, never holdout rows."""

from __future__ import annotations

import csv
import hashlib
import os
import uuid

import numpy as np
import pandas as pd

from core import db, feedback, registry
from core.prediction_log import PredictionLogWriter
from core.specs import HOUSING, IRIS, MODEL_SPECS
from pipeline import feedback_data, workspace
from pipeline.runner import export_feedback, run_pipeline
from tests.conftest import TEST_PARAMS

# Live iris rows (none is a row of the bundled data set) and their true classes.
IRIS_ROWS = [
    ([5.05, 3.45, 1.45, 0.25], "setosa"),
    ([6.05, 2.75, 4.45, 1.35], "versicolor"),
    ([6.65, 3.05, 5.65, 2.15], "virginica"),
    ([5.0, 3.0, 1.5, -1.0], "setosa"),  # impossible width: cleaning must drop it
]
KEPT = IRIS_ROWS[:3]


def _log_and_label(engine, model: str, rows: list[tuple[list[float], object]]) -> None:
    """Log one answered request of rows for version 1, then store a label for each row."""
    spec = MODEL_SPECS[model]
    request_id = uuid.uuid4().hex
    inputs = np.array([x for x, _ in rows], dtype=float)
    if spec.task == "classification":
        index = np.array([spec.classes.index(label) for _, label in rows], dtype=float)
        outputs = np.column_stack([np.eye(len(spec.classes))[index.astype(int)], index])
    else:
        outputs = np.full(len(rows), 2.0)
    writer = PredictionLogWriter(engine, MODEL_SPECS.values(), flush_seconds=60)
    writer.record(request_id, model, "1", inputs, outputs, latency_ms=1.0)
    assert writer.flush() == len(rows)
    labels = [feedback.Label(request_id, i, actual) for i, (_, actual) in enumerate(rows)]
    outcome = feedback.record(engine, labels, MODEL_SPECS)
    assert outcome.stored, outcome


def _data_hash(ws) -> str:
    digest = hashlib.sha256()
    for split in ("train", "holdout"):
        digest.update((ws / "data" / "prepared" / "iris" / f"{split}.csv").read_bytes())
    return digest.hexdigest()


def test_feedback_export_is_deterministic_and_ordered(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'app.db'}")
    db.ensure_schema(engine)
    _log_and_label(engine, "iris", IRIS_ROWS[:2])
    _log_and_label(engine, "iris", IRIS_ROWS[2:])
    path = feedback_data.export(engine, "iris", tmp_path)
    with path.open(newline="") as fh:
        lines = list(csv.reader(fh))
    assert lines[0] == [*IRIS.feature_names, "target"]
    assert [[float(v) for v in line[:4]] for line in lines[1:]] == [x for x, _ in IRIS_ROWS]
    assert [line[4] for line in lines[1:]] == [label for _, label in IRIS_ROWS]
    before = path.read_bytes()
    stamp = path.stat().st_mtime_ns
    feedback_data.export(engine, "iris", tmp_path)
    assert path.read_bytes() == before
    assert path.stat().st_mtime_ns == stamp  # unchanged labels do not even touch the file
    engine.dispose()


def test_unreachable_database_keeps_the_existing_files(tmp_path, monkeypatch, caplog):
    (tmp_path / "data" / "feedback").mkdir(parents=True)
    kept = tmp_path / "data" / "feedback" / "iris.csv"
    kept.write_text("sepal_length,sepal_width,petal_length,petal_width,target\n1.0,1.0,1.0,1.0,a\n")
    before = kept.read_bytes()
    # A directory is not a database file: SQLite cannot open it.
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}")
    export_feedback(tmp_path, ["iris", "housing"])
    assert kept.read_bytes() == before
    header = (tmp_path / "data" / "feedback" / "housing.csv").read_text()
    assert header == ",".join([*HOUSING.feature_names, "target"]) + "\n"  # DVC needs the file
    assert "feedback export failed" in caplog.text


def test_feedback_rows_join_the_train_split_of_the_next_version(
    registry_copy, trained_registry, tmp_path
):
    name = IRIS.registered_name
    ws = workspace.create(tmp_path / "ws", params_file=TEST_PARAMS)
    engine = db.make_engine(os.environ["DATABASE_URL"])  # registry_copy's private app database
    db.ensure_schema(engine)
    _log_and_label(engine, "iris", IRIS_ROWS)
    _log_and_label(engine, "housing", [([3.0, 20.0, 5.0, 1.0, 900.0, 3.0, 36.0, -120.0], 1.5)])
    engine.dispose()
    v1 = registry.get_version(name, "1")

    result = run_pipeline("iris", workspace=ws)["iris"]

    assert result["candidate_version"] == "2", result
    assert result["up_to_date"] is False
    base = trained_registry.workspace / "data" / "prepared" / "iris"
    new = ws / "data" / "prepared" / "iris"
    assert (new / "holdout.csv").read_bytes() == (base / "holdout.csv").read_bytes()
    # The raw split is untouched: the old train file is a prefix, the labelled rows follow.
    old_train = (base / "train.csv").read_bytes()
    assert (new / "train.csv").read_bytes().startswith(old_train)
    train = pd.read_csv(new / "train.csv")
    assert len(train) == len(pd.read_csv(base / "train.csv")) + len(KEPT)
    tail = train.tail(len(KEPT))
    assert tail[IRIS.feature_names].to_numpy().tolist() == [x for x, _ in KEPT]
    assert tail["target"].tolist() == [label for _, label in KEPT]
    # Only the models being run are exported: housing's file stays header-only.
    housing_csv = (ws / "data" / "feedback" / "housing.csv").read_text()
    assert housing_csv == ",".join([*HOUSING.feature_names, "target"]) + "\n"

    v2 = registry.get_version(name, "2")
    assert v2.tags["data_hash"] == _data_hash(ws)
    assert v2.tags["data_hash"] != v1.tags["data_hash"]
    reference = registry.load_drift_reference(name, "2")
    assert reference is not None and reference["rows"] == len(train)

    again = run_pipeline("iris", workspace=ws)["iris"]
    assert again["up_to_date"] is True, again
    assert sorted(v.version for v in registry.list_versions(name)) == ["1", "2"]
