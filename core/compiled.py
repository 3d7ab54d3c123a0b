"""Compiled inference: a fitted scikit-learn pipeline answered by a compiled runtime.

The pipeline's compile stage converts the fitted pipeline (to ONNX: tree ensembles through
treelite, everything else through skl2onnx; or to treelite itself; a feature step with no
converter stays in numpy), validate proves on every holdout row that the compiled form agrees
with scikit-learn (agreement() below), and register stores it with the version as MLflow extra
files: the artefact and its manifest (compiled.json), plus the tags TAG_RUNTIME and
TAG_RUNTIME_REASON. The API loads it here (for_serving); whenever a
version has no compiled form, or it fails to load or to agree at load time, scikit-learn
serves and the reason is kept.

Both runtimes run on one thread, as scikit-learn does in the API (one per gunicorn worker).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

RUNTIME_SKLEARN = "sklearn"
RUNTIME_TREELITE = "treelite"
RUNTIME_ONNX = "onnxruntime"
RUNTIMES = (RUNTIME_SKLEARN, RUNTIME_TREELITE, RUNTIME_ONNX)

MANIFEST_FILE = "compiled.json"
ARTEFACT_FILES = {RUNTIME_TREELITE: "model.treelite", RUNTIME_ONNX: "model.onnx"}
# Version tags: which runtime serves it, and why scikit-learn does when it does.
TAG_RUNTIME = "serving_runtime"
TAG_RUNTIME_REASON = "serving_runtime_reason"

# Agreement with scikit-learn that a compiled form must show on every holdout row: regression
# outputs within this relative difference; identical labels, probabilities within this much.
REGRESSION_RTOL = 1e-6
PROBABILITY_ATOL = 1e-6


class CompileError(Exception):
    """A compiled artefact cannot be loaded or does not match its manifest."""


@dataclass(frozen=True)
class Manifest:
    """What the compile stage produced for one fitted pipeline."""

    runtime: str  # RUNTIMES: which runtime answers; "sklearn" when there is no compiled form
    artefact: str | None = None  # file name of the compiled model next to the manifest
    converter: str | None = None  # what produced it, e.g. "skl2onnx"
    sklearn_steps: int = 0  # leading pipeline steps computed by scikit-learn (feature steps)
    output: str | None = None  # ONNX output holding the predictions or probabilities
    reason: str | None = None  # why scikit-learn answers (runtime "sklearn")
    # Round inputs to float32 first, as scikit-learn's own trees do before comparing.
    float32_inputs: bool = False

    def to_json(self) -> str:
        """The manifest file's text (sorted keys: the same manifest is the same bytes)."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Read a manifest written by to_json(); CompileError when it is not one."""
        try:
            data = json.loads(text)
            manifest = cls(**data)
        except (ValueError, TypeError) as exc:
            raise CompileError(f"unreadable {MANIFEST_FILE}: {exc}") from None
        if manifest.runtime not in RUNTIMES:
            raise CompileError(f"{MANIFEST_FILE} names an unknown runtime {manifest.runtime!r}")
        return manifest


def _treelite_runner(artefact: bytes) -> Callable[[np.ndarray], np.ndarray]:
    import treelite
    import treelite.gtil

    model = treelite.Model.deserialize_bytes(artefact)

    def run(x: np.ndarray) -> np.ndarray:
        return treelite.gtil.predict(model, x, nthread=1)

    return run


def _onnx_runner(artefact: bytes, output: str | None) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    session = onnxruntime.InferenceSession(artefact, options, providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise CompileError(f"the ONNX model has {len(inputs)} inputs, expected 1")
    names = [o.name for o in session.get_outputs()]
    if output not in names:
        raise CompileError(f"the ONNX model has no output {output!r} (it has {names})")
    feed, fetch = inputs[0].name, [output]
    run_session = session.run

    def run(x: np.ndarray) -> np.ndarray:
        return run_session(fetch, {feed: x})[0]

    return run


class CompiledModel:
    """Predicts like the scikit-learn pipeline it was compiled from: same inputs, same classes
    in the same column order, outputs within the agreement tolerances."""

    def __init__(self, pipeline: Any, manifest: Manifest, artefact: bytes) -> None:
        if manifest.runtime == RUNTIME_TREELITE:
            self._run = _treelite_runner(artefact)
        elif manifest.runtime == RUNTIME_ONNX:
            self._run = _onnx_runner(artefact, manifest.output)
        else:
            raise CompileError(f"{manifest.runtime!r} is not a compiled runtime")
        steps = list(getattr(pipeline, "steps", []))
        if not 0 <= manifest.sklearn_steps < max(len(steps), 1):
            raise CompileError(
                f"the manifest keeps {manifest.sklearn_steps} steps in scikit-learn; "
                f"the pipeline has {len(steps)}"
            )
        self.runtime = manifest.runtime
        self.converter = manifest.converter
        # Feature steps called directly: Pipeline.transform adds its own per-call checks.
        self._features = tuple(step for _, step in steps[: manifest.sklearn_steps])
        self._float32 = manifest.float32_inputs
        self.n_features_in_ = pipeline.n_features_in_
        classes = getattr(pipeline, "classes_", None)
        self.classes_ = None if classes is None else np.asarray(classes)
        if self.classes_ is not None:
            self.predict_proba = self._predict_proba  # classifiers only, as in scikit-learn

    def run(self, x: np.ndarray) -> np.ndarray:
        """The compiled runtime's outputs for x, whatever its size: regression values (n,),
        or class probabilities (n, classes) in the order of classes_."""
        for step in self._features:
            x = step.transform(x)
        if self._float32:
            x = x.astype(np.float32)
        raw = np.asarray(self._run(np.ascontiguousarray(x, dtype=np.float64)), dtype=np.float64)
        if self.classes_ is None:
            return raw.reshape(len(raw))
        proba = raw.reshape(len(raw), -1)
        if proba.shape[1] == 1 and len(self.classes_) == 2:  # one column: P(second class)
            proba = np.hstack([1.0 - proba, proba])
        return proba

    def _predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.run(x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Regression outputs, or the most probable class of each row."""
        if self.classes_ is not None:
            return self.classes_[self.run(x).argmax(axis=1)]
        return self.run(x)


@dataclass(frozen=True)
class Agreement:
    """How a compiled form's outputs compare with scikit-learn's on the same rows."""

    rows: int
    disagreeing_rows: int
    max_difference: float  # relative (regression) or absolute on probabilities
    label_mismatches: int = 0

    @property
    def agrees(self) -> bool:
        """True when every row is within the tolerances."""
        return self.disagreeing_rows == 0

    def describe(self, runtime: str) -> str:
        """One line saying how the runtime compares (the reason when it does not agree)."""
        if self.agrees:
            return f"{runtime} agrees with scikit-learn on all {self.rows} rows"
        labels = f", {self.label_mismatches} different labels" if self.label_mismatches else ""
        return (
            f"{runtime} disagrees with scikit-learn on {self.disagreeing_rows} of {self.rows} "
            f"rows (largest difference {self.max_difference:.3g}{labels})"
        )


def agreement(task: str, expected: np.ndarray, got: np.ndarray) -> Agreement:
    """Compare outputs row by row: regression values, or class probabilities (labels are
    their argmax, which is how the API labels a row)."""
    expected = np.asarray(expected, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    rows = len(expected)
    if got.shape != expected.shape:
        return Agreement(rows, rows, float("inf"))
    if task == "regression":
        scale = np.maximum(np.abs(expected), np.finfo(np.float64).tiny)
        diff = np.abs(got - expected) / scale
        bad = ~(diff <= REGRESSION_RTOL)  # NaN counts as disagreement
        worst = float(np.nanmax(diff, initial=0.0)) if rows else 0.0
        return Agreement(rows, int(bad.sum()), worst if np.isfinite(diff).all() else float("inf"))
    diff = np.abs(got - expected).reshape(rows, -1)
    labels = expected.reshape(rows, -1).argmax(axis=1) != got.reshape(rows, -1).argmax(axis=1)
    bad = ~(diff <= PROBABILITY_ATOL).all(axis=1) | labels
    worst = float(np.nanmax(diff, initial=0.0)) if rows else 0.0
    return Agreement(
        rows,
        int(bad.sum()),
        worst if np.isfinite(diff).all() else float("inf"),
        int(labels.sum()),
    )


def sklearn_outputs(task: str, pipeline: Any, x: np.ndarray) -> np.ndarray:
    """What agreement() compares a compiled form's run() with: values, or probabilities."""
    return pipeline.predict(x) if task == "regression" else pipeline.predict_proba(x)


def load(pipeline: Any, files: dict[str, bytes]) -> CompiledModel:
    """The compiled form of pipeline from its manifest and artefact (CompileError if unusable)."""
    if MANIFEST_FILE not in files:
        raise CompileError(f"no {MANIFEST_FILE} among the version's files")
    manifest = Manifest.from_json(files[MANIFEST_FILE])
    if manifest.runtime == RUNTIME_SKLEARN or not manifest.artefact:
        raise CompileError(manifest.reason or "the manifest names no compiled artefact")
    if manifest.artefact not in files:
        raise CompileError(f"the artefact {manifest.artefact} is missing")
    return CompiledModel(pipeline, manifest, files[manifest.artefact])


@dataclass(frozen=True)
class Serving:
    """What answers a version's predictions: the model object, its runtime, and why not a
    compiled one when scikit-learn answers."""

    model: Any
    runtime: str
    reason: str | None = None


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]


def for_serving(
    task: str, pipeline: Any, files: dict[str, bytes], tags: dict[str, str], probe: np.ndarray
) -> Serving:
    """The compiled form of a registered version when it has one that loads and agrees with
    scikit-learn on probe rows; scikit-learn otherwise, with the reason."""
    runtime = tags.get(TAG_RUNTIME, RUNTIME_SKLEARN)
    if runtime == RUNTIME_SKLEARN:
        reason = tags.get(TAG_RUNTIME_REASON) or "the version has no compiled form"
        return Serving(pipeline, RUNTIME_SKLEARN, reason)
    try:
        compiled = load(pipeline, files)
        if compiled.runtime != runtime:
            raise CompileError(f"the manifest says {compiled.runtime}, the tag {runtime}")
        check = agreement(task, sklearn_outputs(task, pipeline, probe), compiled.run(probe))
    except Exception as exc:  # any failure of the compiled form leaves scikit-learn serving
        reason = f"the {runtime} form failed to load ({_short(exc)})"
        log.warning("%s; scikit-learn serves", reason)
        return Serving(pipeline, RUNTIME_SKLEARN, reason)
    if not check.agrees:
        reason = check.describe(runtime) + " at load time"
        log.warning("%s; scikit-learn serves", reason)
        return Serving(pipeline, RUNTIME_SKLEARN, reason)
    return Serving(compiled, runtime)
