"""Open Inference Protocol V2 tensors: reading a request's inputs, writing a response's outputs.

JSON tensors as the REST specification has them (data flattened or in its natural nested
form, row-major), and Triton's binary tensor data extension, which tritonclient uses by default:
the body is the JSON header (`Inference-Header-Content-Length` bytes) followed by the raw bytes
of every input whose `parameters.binary_data_size` says how many it takes; outputs are sent the
same way when the request asks for it (`binary_data_output`, or `binary_data` per output).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flask import request

from app.errors import ApiError
from app.json_body import parse_json, read_body

BINARY_HEADER = "Inference-Header-Content-Length"
BINARY_EXTENSION = "binary_tensor_data"
FP64, BYTES = "FP64", "BYTES"
INPUT_DATATYPES = (FP64,)
JSON_TYPES = ("application/json",)
BINARY_TYPE = "application/octet-stream"


def bad(message: str) -> ApiError:
    """A 400 in the protocol's sense: the request cannot be used as sent."""
    return ApiError(400, message)


@dataclass(frozen=True, slots=True)
class InferBody:
    """What the body of an infer request holds: the JSON document and the binary tail."""

    document: Any
    binary: bytes = b""


@dataclass(frozen=True, slots=True)
class InputTensor:
    """One request input: name, shape, datatype and its elements flattened row-major."""

    name: str
    shape: tuple[int, ...]
    datatype: str
    data: list[Any]


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A structurally valid inference request."""

    id: str | None
    inputs: tuple[InputTensor, ...]
    # Requested output names (None: all) and those asked for as binary data.
    outputs: tuple[str, ...] | None = None
    binary_outputs: frozenset[str] = field(default_factory=frozenset)
    binary_all: bool = False
    interval: Any = None  # parameters.interval as sent (app.intervals checks it)


def read_infer_body() -> InferBody:
    """The body of an infer request: JSON, or JSON plus binary tensors; 400, 413 or 415."""
    mimetype = request.mimetype
    header = request.headers.get(BINARY_HEADER)
    is_json = mimetype in JSON_TYPES or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )
    # tritonclient sends no Content-Type at all; a binary body may say octet-stream.
    if not (is_json or mimetype == "" or (header is not None and mimetype == BINARY_TYPE)):
        raise ApiError(415, "Request body must be JSON (Content-Type: application/json).")
    raw = read_body()
    if header is None:
        return InferBody(parse_json(raw))
    if not header.isdigit() or not 0 < int(header) <= len(raw):
        raise bad(f"{BINARY_HEADER} must be the byte length of the JSON header within the body.")
    size = int(header)
    return InferBody(parse_json(raw[:size]), raw[size:])


def _parameters(holder: dict[str, Any], where: str) -> dict[str, Any]:
    """The `parameters` object of holder ({} when absent; null is not an object)."""
    if "parameters" not in holder:
        return {}
    value = holder["parameters"]
    if not isinstance(value, dict):
        raise bad(f"{where}parameters must be an object.")
    return value


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise bad(f"{what} must be a string.")
    return value


def parse_request(body: InferBody) -> InferRequest:
    """Check the request's structure (names, shapes, datatypes, data) against the spec."""
    document = body.document
    if not isinstance(document, dict):
        raise bad("The inference request must be a JSON object with an `inputs` array.")
    request_id = _string(document["id"], "id") if "id" in document else None
    parameters = _parameters(document, "")
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise bad("`inputs` must be a non-empty array of tensors.")
    binary = memoryview(body.binary)
    offset = 0
    inputs = []
    for index, raw in enumerate(raw_inputs):
        tensor, used = _input(raw, index, binary[offset:])
        offset += used
        inputs.append(tensor)
    if offset != len(binary):
        raise bad(
            f"The body holds {len(binary) - offset} bytes no input's binary_data_size claims."
        )
    names = [t.name for t in inputs]
    if len(set(names)) != len(names):
        raise bad("Input names must be unique.")
    outputs, binary_outputs = (
        _requested_outputs(document["outputs"]) if "outputs" in document else (None, frozenset())
    )
    return InferRequest(
        id=request_id,
        inputs=tuple(inputs),
        outputs=outputs,
        binary_outputs=binary_outputs,
        binary_all=parameters.get("binary_data_output") is True,
        interval=parameters.get("interval"),
    )


def _input(raw: Any, index: int, binary: memoryview) -> tuple[InputTensor, int]:
    """One input tensor and how many bytes of the binary tail it took."""
    if not isinstance(raw, dict):
        raise bad(f"inputs[{index}] must be an object.")
    name = _string(raw.get("name"), f"inputs[{index}].name")
    where = f"input {name!r}: "
    shape = raw.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise bad(f"{where}shape must be an array of non-negative integers.")
    datatype = _string(raw.get("datatype"), f"{where}datatype")
    parameters = _parameters(raw, where)
    if datatype not in INPUT_DATATYPES:
        raise bad(f"{where}datatype {datatype!r} is not supported; send {FP64}.")
    size = parameters.get("binary_data_size")
    if size is not None:
        if "data" in raw:
            raise bad(f"{where}has both `data` and parameters.binary_data_size.")
        return _binary_input(name, tuple(shape), datatype, size, binary, where)
    if "data" not in raw:
        raise bad(f"{where}`data` is required (or parameters.binary_data_size).")
    data = raw["data"]
    if not isinstance(data, list):
        raise bad(f"{where}data must be an array.")
    return InputTensor(name, tuple(shape), datatype, _flatten(data, tuple(shape), where)), 0


def _binary_input(
    name: str, shape: tuple[int, ...], datatype: str, size: Any, binary: memoryview, where: str
) -> tuple[InputTensor, int]:
    count = math.prod(shape)
    if type(size) is not int or size != count * 8:
        raise bad(f"{where}binary_data_size must be {count} x 8 bytes for shape {list(shape)}.")
    if size > len(binary):
        raise bad(f"{where}binary_data_size exceeds the bytes in the body.")
    values = np.frombuffer(binary[:size], dtype="<f8").tolist()
    return InputTensor(name, shape, datatype, values), size


def _flatten(data: list[Any], shape: tuple[int, ...], where: str) -> list[Any]:
    """Elements of data in row-major order: already flat, or nested exactly as shape."""
    count = math.prod(shape)
    if not data or not isinstance(data[0], list):
        if len(data) != count:
            raise bad(f"{where}data holds {len(data)} elements; shape {list(shape)} needs {count}.")
        return data
    flat: list[Any] = []

    def walk(node: Any, depth: int) -> None:
        if depth == len(shape):
            flat.append(node)
            return
        if not isinstance(node, list) or len(node) != shape[depth]:
            raise bad(f"{where}nested data does not match shape {list(shape)}.")
        for item in node:
            walk(item, depth + 1)

    walk(data, 0)
    return flat


def _requested_outputs(raw: Any) -> tuple[tuple[str, ...] | None, frozenset[str]]:
    if not isinstance(raw, list):
        raise bad("`outputs` must be an array.")
    names: list[str] = []
    binary: set[str] = set()
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise bad(f"outputs[{index}] must be an object.")
        name = _string(item.get("name"), f"outputs[{index}].name")
        if _parameters(item, f"output {name!r}: ").get("binary_data") is True:
            binary.add(name)
        if name not in names:
            names.append(name)
    return tuple(names) or None, frozenset(binary)  # [] asks for nothing in particular: all


@dataclass(frozen=True, slots=True)
class OutputTensor:
    """One response output; data flattened row-major."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any]
    parameters: dict[str, Any] | None = None


def _binary_bytes(tensor: OutputTensor) -> bytes:
    if tensor.datatype == BYTES:
        # Each element: its length as a little-endian uint32, then its bytes.
        return b"".join(
            struct.pack("<I", len(encoded)) + encoded
            for encoded in (str(item).encode() for item in tensor.data)
        )
    return np.asarray(tensor.data, dtype="<f8").tobytes()


def encode_outputs(
    outputs: list[OutputTensor], binary_names: frozenset[str] | set[str]
) -> tuple[list[dict[str, Any]], bytes]:
    """The response's `outputs` array and the binary tail of those sent as binary data."""
    documents: list[dict[str, Any]] = []
    tail: list[bytes] = []
    for tensor in outputs:
        document: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": tensor.shape,
        }
        parameters = dict(tensor.parameters or {})
        if tensor.name in binary_names:
            chunk = _binary_bytes(tensor)
            parameters["binary_data_size"] = len(chunk)
            tail.append(chunk)
        else:
            document["data"] = tensor.data
        if parameters:
            document["parameters"] = parameters
        documents.append(document)
    return documents, b"".join(tail)
