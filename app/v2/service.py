"""Open Inference Protocol V2: server and model metadata, readiness, inference.

Inputs are the model's fields, as one FP64 tensor [N, F] (features in contract order) or one
FP64 tensor per field, named as the field, shape [N] (or [N, 1]). Outputs: housing `prediction`
FP64 [N]; iris `label` BYTES [N] and `probabilities` FP64 [N, 3] in the class order of the
model metadata. Rows are validated exactly as /predict validates them.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import Response, current_app, g

from app import intervals, prediction
from app.errors import ApiError
from app.model_cache import ServedModel
from app.runtime import get_runtime
from app.v2.tensors import (
    BINARY_EXTENSION,
    BINARY_HEADER,
    BYTES,
    FP64,
    InferRequest,
    OutputTensor,
    bad,
    encode_outputs,
)
from core import registry
from core.specs import ModelSpec

log = logging.getLogger(__name__)

PLATFORM = "sklearn"


def server_metadata() -> dict[str, Any]:
    """Name, version and extensions of this server."""
    return {
        "name": "prediction-service",
        "version": current_app.config["API_VERSION"],
        "extensions": [BINARY_EXTENSION],
    }


def server_ready() -> dict[str, bool]:
    """Ready when every model is loaded and warmed in this worker; 503 otherwise."""
    if not get_runtime().cache.ready():
        raise ApiError(503, "Not every model is loaded yet; retry shortly.")
    return {"ready": True}


def model_ready(name: str, version: str | None) -> dict[str, Any]:
    """Ready when this version is loaded (a pinned one is loaded now); 404, 409 or 503."""
    prediction.pinned(prediction.spec_or_404(name), version)
    return {"name": name, "ready": True}


# With parameters.interval (regression): the bounds of each prediction's conformal interval.
INTERVAL_FIELD = "parameters.interval"
INTERVAL_OUTPUTS = ["lower", "upper"]


def _output_tensors(spec: ModelSpec) -> list[dict[str, Any]]:
    if spec.task == "regression":
        return [{"name": "prediction", "datatype": FP64, "shape": [-1]}]
    return [
        {"name": "label", "datatype": BYTES, "shape": [-1]},
        {
            "name": "probabilities",
            "datatype": FP64,
            "shape": [-1, len(spec.classes)],
            "parameters": {"classes": list(spec.classes)},
        },
    ]


def _registered_versions(spec: ModelSpec) -> list[str] | None:
    try:
        return sorted((v.version for v in registry.list_versions(spec.registered_name)), key=int)
    except Exception as exc:  # metadata still answers from memory when the registry is down
        log.warning("listing versions of %s failed: %s", spec.registered_name, exc)
        return None


def model_metadata(name: str, version: str | None) -> dict[str, Any]:
    """Inputs, outputs, datatypes and shapes of a model, and the version that would answer."""
    spec = prediction.spec_or_404(name)
    pinned = prediction.pinned(spec, version)
    parameters: dict[str, Any] = {
        "registered_name": spec.registered_name,
        "version": pinned.served.version,
        "features": spec.feature_names,
        "matrix_input": {"datatype": FP64, "shape": [-1, len(spec.features)]},
    }
    if "alias" in pinned.ref:
        parameters["alias"] = pinned.ref["alias"]
    if spec.unit:
        parameters["unit"] = spec.unit
    body: dict[str, Any] = {"name": name}
    versions = _registered_versions(spec)
    if versions is not None:
        body["versions"] = versions
    body.update(
        platform=PLATFORM,
        inputs=[{"name": f, "datatype": FP64, "shape": [-1]} for f in spec.feature_names],
        outputs=_output_tensors(spec),
        parameters=parameters,
    )
    return body


# -- inference --------------------------------------------------------------------------------


def _check_rows(rows: int) -> None:
    limit = prediction.max_rows()
    if not 1 <= rows <= limit:
        raise bad(f"A request holds 1 to {limit} rows; this one has {rows}.")


def _records(spec: ModelSpec, request: InferRequest) -> list[dict[str, Any]]:
    """The request's rows as records keyed by field, ready for the /predict validator."""
    names = spec.feature_names
    width = len(names)
    if len(request.inputs) == 1 and len(request.inputs[0].shape) == 2:
        tensor = request.inputs[0]
        rows, columns = tensor.shape
        if columns != width:
            raise bad(
                f"input {tensor.name!r}: shape {list(tensor.shape)}; an [N, F] input needs "
                f"F = {width} ({', '.join(names)})."
            )
        _check_rows(rows)
        data = tensor.data
        return [
            dict(zip(names, data[i * width : (i + 1) * width], strict=True)) for i in range(rows)
        ]
    by_name = {tensor.name: tensor for tensor in request.inputs}
    missing = [n for n in names if n not in by_name]
    unknown = [n for n in by_name if n not in names]
    if missing or unknown:
        details = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing)}" if missing else "",
                f"unknown {', '.join(repr(n)[:42] for n in unknown[:10])}" if unknown else "",
            )
            if part
        )
        raise bad(
            f"Send one FP64 tensor [N, {width}] or one FP64 tensor per field named as the "
            f"field ({', '.join(names)}): {details}."
        )
    rows = by_name[names[0]].shape[0] if by_name[names[0]].shape else -1
    for name in names:
        shape = by_name[name].shape
        if shape not in ((rows,), (rows, 1)):
            raise bad(
                "Every per-field input has shape [N] (or [N, 1]) with the same N: "
                f"{name!r} has {list(shape)}."
            )
    _check_rows(rows)
    columns = [by_name[name].data for name in names]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def _outputs(
    spec: ModelSpec, served: ServedModel, result: prediction.Prediction
) -> list[OutputTensor]:
    rows = len(result)
    if spec.task == "regression":
        return [OutputTensor("prediction", FP64, [rows], result.values.tolist())]
    tensors = [OutputTensor("label", BYTES, [rows], prediction.labels(served, result))]
    proba = prediction.probabilities_in_spec_order(served, result)
    if proba is not None:
        classes = list(spec.classes)
        tensors.append(
            OutputTensor(
                "probabilities",
                FP64,
                [rows, len(classes)],
                proba.ravel().tolist(),
                {"classes": classes},
            )
        )
    return tensors


def _check_outputs(
    spec: ModelSpec, wanted: tuple[str, ...] | None, has_proba: bool, level: float | None = None
) -> None:
    """400 for a requested output the model does not have (before anything is predicted)."""
    if wanted is None:
        return
    names = [t["name"] for t in _output_tensors(spec)]
    if level is not None:
        names += INTERVAL_OUTPUTS
    if spec.task == "classification" and not has_proba:
        names.remove("probabilities")
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise bad(f"Unknown output {unknown[0][:40]!r}; this model has {', '.join(names)}.")


def _select(tensors: list[OutputTensor], wanted: tuple[str, ...] | None) -> list[OutputTensor]:
    if wanted is None:
        return tensors
    by_name = {tensor.name: tensor for tensor in tensors}
    return [by_name[name] for name in wanted]


def infer(name: str, version: str | None, request: InferRequest) -> Response:
    """Validate the tensors, predict with the pinned version, log, answer V2 outputs."""
    spec = prediction.spec_or_404(name)
    # The request is checked before a pinned version is looked up (or loaded): a bad one
    # changes nothing.
    matrix = prediction.validate_records(spec, _records(spec, request))
    level = intervals.parse_level(request.interval, INTERVAL_FIELD)
    _check_outputs(spec, request.outputs, has_proba=True, level=level)
    pinned = prediction.routed(spec, version)
    _check_outputs(spec, request.outputs, pinned.served.has_proba, level)
    conformal = (
        intervals.intervals_for(pinned.served, level, INTERVAL_FIELD) if level is not None else None
    )
    result = prediction.predict_and_log(pinned, matrix)
    outputs = _outputs(spec, pinned.served, result)
    if conformal is not None and level is not None:
        lower, upper = conformal.bounds(result.values, level)
        rows, interval = len(result), {"interval": level}
        outputs.append(OutputTensor("lower", FP64, [rows], lower.tolist(), interval))
        outputs.append(OutputTensor("upper", FP64, [rows], upper.tolist(), interval))
    tensors = _select(outputs, request.outputs)
    binary = {t.name for t in tensors} if request.binary_all else request.binary_outputs
    documents, tail = encode_outputs(tensors, binary)
    body: dict[str, Any] = {"model_name": name, "model_version": pinned.served.version}
    if request.id is not None:
        body["id"] = request.id
    parameters = {"request_id": g.rq.request_id}
    if "alias" in pinned.ref:
        parameters["alias"] = pinned.ref["alias"]
    body["parameters"] = parameters
    body["outputs"] = documents
    header = orjson.dumps(body)
    if not tail:
        return Response(header, status=200, mimetype="application/json")
    response = Response(header + tail, status=200, mimetype="application/octet-stream")
    response.headers[BINARY_HEADER] = str(len(header))
    return response
