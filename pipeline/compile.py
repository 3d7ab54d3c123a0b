"""Compiling the fitted pipeline for serving (run by the validate stage, after its gates).

Converters are tried in order (CONVERTERS), the first that succeeds wins:
1. tree ensembles: treelite imports scikit-learn's trees exactly, and its model (public JSON
   dump) becomes one ONNX TreeEnsemble node in double precision for ONNX Runtime. skl2onnx's
   own tree converters fail with the protobuf that MLflow pins, and treelite's reference
   interpreter (GTIL) is several times slower than ONNX Runtime, single rows and batches alike
   (bench/bench_api.py prints the in-process latency of each runtime);
2. tree ensembles that cannot be one TreeEnsemble (class-probability leaves, categorical
   splits): treelite itself, run by GTIL;
3. everything else: skl2onnx (double precision), the whole pipeline when every step converts,
   else the final estimator with the feature steps kept in numpy.
A conversion that fails is not an error: the manifest says scikit-learn serves, and why.
validate then proves that the compiled form agrees with scikit-learn on every holdout row
before register stores it with the version.

Writes models/<model>/compiled/: compiled.json (core.compiled.Manifest) and the artefact. The
same fitted pipeline always gives the same bytes (no timestamps, fixed graph names). It runs
inside validate rather than as a stage of its own: a stage is one more process importing
scikit-learn for each model, seconds of every pipeline run on a busy machine.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)

from core import compiled
from core.compiled import ARTEFACT_FILES, RUNTIME_ONNX, RUNTIME_SKLEARN, RUNTIME_TREELITE
from core.specs import get_spec
from pipeline import io

# scikit-learn's own trees (not HistGradientBoosting's) cast their input to float32 before
# comparing it with float64 thresholds: the compiled form must see the same rounded values.
FLOAT32_TREES = (
    RandomForestRegressor,
    RandomForestClassifier,
    ExtraTreesRegressor,
    ExtraTreesClassifier,
    GradientBoostingRegressor,
    GradientBoostingClassifier,
)
TREE_ENSEMBLES = (*FLOAT32_TREES, HistGradientBoostingRegressor, HistGradientBoostingClassifier)
ONNX_OPSET = 18
# ONNX output names skl2onnx gives a classifier's probabilities and a regressor's values.
ONNX_OUTPUTS = {"classification": "probabilities", "regression": "variable"}

Converted = tuple[compiled.Manifest, bytes]


def _steps(pipeline: Any) -> list[tuple[str, Any]]:
    return list(getattr(pipeline, "steps", [("model", pipeline)]))


def _final_trees(pipeline: Any) -> tuple[list[tuple[str, Any]], Any]:
    steps = _steps(pipeline)
    final = steps[-1][1]
    if not isinstance(final, TREE_ENSEMBLES):
        raise TypeError(f"treelite imports tree ensembles, not {type(final).__name__}")
    return steps, final


def to_treelite(task: str, pipeline: Any) -> Converted:
    """The final tree ensemble as a treelite model (GTIL); the feature steps stay in numpy."""
    import treelite.sklearn

    steps, final = _final_trees(pipeline)
    artefact = treelite.sklearn.import_model(final).serialize_bytes()
    manifest = compiled.Manifest(
        RUNTIME_TREELITE,
        ARTEFACT_FILES[RUNTIME_TREELITE],
        converter="treelite",
        sklearn_steps=len(steps) - 1,
        float32_inputs=isinstance(final, FLOAT32_TREES),
    )
    return manifest, artefact


# ONNX TreeEnsemble (ai.onnx.ml opset 5) encodings of treelite's comparisons and aggregations.
TREE_MODES = {"<=": 0, "<": 1, ">=": 2, ">": 3}
AGGREGATE = {False: 1, True: 0}  # average_tree_output -> SUM (1) or AVERAGE (0)
ONNX_IR_VERSION = 9  # what ONNX Runtime reads (the onnx package would write a newer one)


def treelite_to_onnx(dump: dict[str, Any], width: int, output: str) -> bytes:
    """One ONNX TreeEnsemble node (double thresholds, leaves and output) plus the base score,
    from treelite's JSON dump of a single-target regression ensemble."""
    from onnx import TensorProto, helper, numpy_helper

    single = dump["num_target"] == 1 and dump["num_class"] == [1]
    if not single or dump["postprocessor"] != "identity":
        raise ValueError(
            f"only single-output ensembles without a postprocessor become one TreeEnsemble "
            f"(this one: {dump['num_target']} targets, classes {dump['num_class']}, "
            f"postprocessor {dump['postprocessor']})"
        )
    nodes: dict[str, list] = {
        k: [] for k in ("feature", "split", "mode", "true", "true_leaf", "false", "false_leaf")
    }
    missing: list[int] = []
    roots: list[int] = []
    leaves: list[float] = []
    for tree in dump["trees"]:
        by_id = {node["node_id"]: node for node in tree["nodes"]}
        inner = sorted(i for i, node in by_id.items() if "leaf_value" not in node)
        outer = sorted(i for i, node in by_id.items() if "leaf_value" in node)
        position = {i: len(nodes["feature"]) + k for k, i in enumerate(inner)}
        leaf_at = {i: len(leaves) + k for k, i in enumerate(outer)}
        leaves.extend(float(by_id[i]["leaf_value"]) for i in outer)
        if not inner:  # a tree that is one leaf: a node whose branches both reach it
            by_id = {-1: {"split_feature_id": 0, "threshold": 0.0, "comparison_op": "<="}}
            by_id[-1].update(left_child=outer[0], right_child=outer[0], default_left=True)
            by_id[-1]["node_type"] = "numerical_test_node"
            inner, position = [-1], {-1: len(nodes["feature"])}
        roots.append(position[inner[0]])
        for i in inner:
            node = by_id[i]
            if node.get("node_type") != "numerical_test_node":
                raise ValueError(f"{node.get('node_type')} nodes have no TreeEnsemble form")
            nodes["feature"].append(int(node["split_feature_id"]))
            nodes["split"].append(float(node["threshold"]))
            nodes["mode"].append(TREE_MODES[node["comparison_op"]])
            missing.append(1 if node["default_left"] else 0)
            for side, child in (("true", node["left_child"]), ("false", node["right_child"])):
                is_leaf = child in leaf_at
                nodes[side].append(leaf_at[child] if is_leaf else position[child])
                nodes[f"{side}_leaf"].append(int(is_leaf))
    ensemble = helper.make_node(
        "TreeEnsemble",
        ["X"],
        ["trees"],
        domain="ai.onnx.ml",
        n_targets=1,
        aggregate_function=AGGREGATE[bool(dump["average_tree_output"])],
        post_transform=0,
        tree_roots=roots,
        nodes_featureids=nodes["feature"],
        nodes_splits=numpy_helper.from_array(np.asarray(nodes["split"], dtype=np.float64)),
        nodes_modes=numpy_helper.from_array(np.asarray(nodes["mode"], dtype=np.uint8)),
        nodes_truenodeids=nodes["true"],
        nodes_trueleafs=nodes["true_leaf"],
        nodes_falsenodeids=nodes["false"],
        nodes_falseleafs=nodes["false_leaf"],
        nodes_missing_value_tracks_true=missing,
        leaf_targetids=[0] * len(leaves),
        leaf_weights=numpy_helper.from_array(np.asarray(leaves, dtype=np.float64)),
    )
    base = numpy_helper.from_array(np.asarray(dump["base_scores"], dtype=np.float64), "base")
    graph = helper.make_graph(
        [ensemble, helper.make_node("Add", ["trees", "base"], [output])],
        "trees",
        [helper.make_tensor_value_info("X", TensorProto.DOUBLE, [None, width])],
        [helper.make_tensor_value_info(output, TensorProto.DOUBLE, [None, 1])],
        initializer=[base],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET), helper.make_opsetid("ai.onnx.ml", 5)],
        ir_version=ONNX_IR_VERSION,
        producer_name="prediction-service",
    )
    return model.SerializeToString()


def trees_to_onnx(task: str, pipeline: Any) -> Converted:
    """The final tree ensemble through treelite into one ONNX TreeEnsemble node."""
    import treelite.sklearn

    steps, final = _final_trees(pipeline)
    dump = json.loads(treelite.sklearn.import_model(final).dump_as_json(pretty_print=False))
    output = ONNX_OUTPUTS[task]
    artefact = treelite_to_onnx(dump, final.n_features_in_, output)
    manifest = compiled.Manifest(
        RUNTIME_ONNX,
        ARTEFACT_FILES[RUNTIME_ONNX],
        converter="treelite+onnx",
        sklearn_steps=len(steps) - 1,
        output=output,
        float32_inputs=isinstance(final, FLOAT32_TREES),
    )
    return manifest, artefact


def _onnx_bytes(model: Any, task: str, width: int, name: str) -> bytes:
    from onnx import helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType

    final = _steps(model)[-1][1]
    options = {type(final): {"zipmap": False}} if task == "classification" else None
    with warnings.catch_warnings():
        # skl2onnx reads SVC's probA_/probB_, which scikit-learn 1.9 flags as deprecated.
        warnings.simplefilter("ignore", FutureWarning)
        onx = convert_sklearn(
            model,
            name=name,  # a fixed graph name: skl2onnx otherwise draws a random one
            initial_types=[("X", DoubleTensorType([None, width]))],
            options=options,
            target_opset=ONNX_OPSET,
        )
    # skl2onnx lists the opset imports in a set's order, which follows the process's string hash
    # seed: sorted, the same model is the same bytes in every process.
    opsets = sorted((o.domain, o.version) for o in onx.opset_import)
    del onx.opset_import[:]
    onx.opset_import.extend(helper.make_opsetid(domain, version) for domain, version in opsets)
    return onx.SerializeToString()


def to_onnx(task: str, pipeline: Any) -> Converted:
    """The whole pipeline as ONNX, or its final estimator with the feature steps in numpy."""
    steps = _steps(pipeline)
    output = ONNX_OUTPUTS[task]
    try:
        artefact = _onnx_bytes(pipeline, task, pipeline.n_features_in_, "pipeline")
        manifest = compiled.Manifest(
            RUNTIME_ONNX, ARTEFACT_FILES[RUNTIME_ONNX], converter="skl2onnx", output=output
        )
        return manifest, artefact
    except Exception as whole:
        if len(steps) < 2:
            raise
        first_error = whole
    final = steps[-1][1]
    try:
        artefact = _onnx_bytes(final, task, final.n_features_in_, "estimator")
    except Exception as exc:
        raise exc from first_error
    manifest = compiled.Manifest(
        RUNTIME_ONNX,
        ARTEFACT_FILES[RUNTIME_ONNX],
        converter="skl2onnx",
        sklearn_steps=len(steps) - 1,
        output=output,
    )
    return manifest, artefact


# Tried in order; the first that converts wins, and every failure is part of the reason when
# none does. (name, applies to, converter)
CONVERTERS: tuple[tuple[str, Callable[[Any], bool], Callable[[str, Any], Converted]], ...] = (
    ("treelite+onnx", lambda final: isinstance(final, TREE_ENSEMBLES), trees_to_onnx),
    ("treelite", lambda final: isinstance(final, TREE_ENSEMBLES), to_treelite),
    ("skl2onnx", lambda final: not isinstance(final, TREE_ENSEMBLES), to_onnx),
)


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:200]


def convert(task: str, pipeline: Any) -> tuple[compiled.Manifest, bytes | None]:
    """The compiled form of a fitted pipeline, or a scikit-learn manifest saying why not."""
    final = _steps(pipeline)[-1][1]
    failures = []
    for name, applies, converter in CONVERTERS:
        if not applies(final):
            continue
        try:
            return converter(task, pipeline)
        except Exception as exc:  # a converter's failure falls through to the next one
            failures.append(f"{name}: {_reason(exc)}")
    reason = f"no compiled form of {type(final).__name__}: " + "; ".join(failures)
    return compiled.Manifest(RUNTIME_SKLEARN, reason=reason), None


def write(folder: Path, manifest: compiled.Manifest, artefact: bytes | None) -> None:
    """Replace folder with the manifest and the artefact."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / compiled.MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
    if artefact is not None and manifest.artefact:
        (folder / manifest.artefact).write_bytes(artefact)


def compile_model(model: str, pipeline: Any, enabled: bool) -> dict[str, bytes]:
    """Convert pipeline (unless compile.<model>.enabled is false), write compiled_dir(model),
    and return its files by name."""
    if enabled:
        manifest, artefact = convert(get_spec(model).task, pipeline)
    else:
        manifest = compiled.Manifest(RUNTIME_SKLEARN, reason="compile.enabled is false")
        artefact = None
    write(io.compiled_dir(model), manifest, artefact)
    if manifest.runtime == RUNTIME_SKLEARN:
        print(f"compile {model}: no compiled form: {manifest.reason}")
    else:
        size = len(artefact or b"") / 1_000_000
        print(
            f"compile {model}: {manifest.runtime} through {manifest.converter} "
            f"({manifest.artefact}, {size:.2f} MB)"
        )
    return io.read_compiled(model)
