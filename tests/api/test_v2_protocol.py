"""Open Inference Protocol V2 over REST, in process: every route, both input forms, binary
tensor data, and the same validation, answers and errors as /predict in the protocol's terms.

Conformance with clients nobody here wrote is test_protocol_clients.py (real gunicorn).
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient

from core.specs import HOUSING, IRIS, MODEL_SPECS

SPECS = {"housing": HOUSING, "iris": IRIS}
BINARY_HEADER = "Inference-Header-Content-Length"


def rows_of(model: str, count: int = 3) -> list[dict[str, float]]:
    """count valid, distinct records of model."""
    spec = MODEL_SPECS[model]
    return [{f.name: f.example * (1 + 0.1 * i) for f in spec.features} for i in range(count)]


def matrix_request(model: str, rows: list[dict[str, float]], nested: bool = False) -> dict:
    names = MODEL_SPECS[model].feature_names
    data = [[row[n] for n in names] for row in rows]
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(rows), len(names)],
                "datatype": "FP64",
                "data": data if nested else [v for r in data for v in r],
            }
        ]
    }


def per_field_request(model: str, rows: list[dict[str, float]], column: bool = False) -> dict:
    names = MODEL_SPECS[model].feature_names
    shape = [len(rows), 1] if column else [len(rows)]
    inputs = [
        {"name": n, "shape": shape, "datatype": "FP64", "data": [row[n] for row in rows]}
        for n in reversed(names)  # any order: tensors are matched by name
    ]
    return {"inputs": inputs}


def predict_batch(client: FlaskClient, model: str, rows: list[dict[str, float]]) -> list[Any]:
    response = client.post(f"/predict/{model}", json={"instances": rows})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["predictions"]


def outputs_by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {output["name"]: output for output in body["outputs"]}


def test_server_metadata_and_health(client):
    metadata = client.get("/v2").get_json()
    assert metadata["name"] == "prediction-service" and metadata["version"]
    assert metadata["extensions"] == ["binary_tensor_data"]
    assert client.get("/v2/health/live").get_json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.get_json() == {"ready": True}


@pytest.mark.parametrize("model", ["housing", "iris"])
def test_model_metadata_lists_inputs_outputs_datatypes_and_shapes(client, model):
    spec = SPECS[model]
    body = client.get(f"/v2/models/{model}").get_json()
    assert body["name"] == model and body["platform"] == "sklearn" and body["versions"] == ["1"]
    assert body["inputs"] == [
        {"name": name, "datatype": "FP64", "shape": [-1]} for name in spec.feature_names
    ]
    assert body["parameters"]["version"] == "1" and body["parameters"]["alias"] == "champion"
    assert body["parameters"]["features"] == spec.feature_names
    assert body["parameters"]["matrix_input"] == {
        "datatype": "FP64",
        "shape": [-1, len(spec.features)],
    }
    if model == "housing":
        assert body["outputs"] == [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]
    else:
        assert body["outputs"] == [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {
                "name": "probabilities",
                "datatype": "FP64",
                "shape": [-1, 3],
                "parameters": {"classes": ["setosa", "versicolor", "virginica"]},
            },
        ]
    ready = client.get(f"/v2/models/{model}/ready")
    assert ready.status_code == 200 and ready.get_json() == {"name": model, "ready": True}


@pytest.mark.parametrize("path", ["/v2/models/wine", "/v2/models/wine/ready"])
def test_unknown_models_are_404_in_the_protocol_shape(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.get_json() == {
        "error": "Model 'wine' is not served here; models: housing, iris."
    }


@pytest.mark.parametrize(
    "build",
    [
        lambda m, r: matrix_request(m, r),
        lambda m, r: matrix_request(m, r, nested=True),
        lambda m, r: per_field_request(m, r),
        lambda m, r: per_field_request(m, r, column=True),
    ],
    ids=["matrix-flat", "matrix-nested", "per-field", "per-field-column"],
)
def test_housing_infer_answers_what_predict_answers(client, build):
    rows = rows_of("housing")
    response = client.post(
        "/v2/models/housing/infer", json={"id": "req-7", **build("housing", rows)}
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (
        body["model_name"] == "housing" and body["model_version"] == "1" and body["id"] == "req-7"
    )
    assert body["parameters"] == {
        "request_id": response.headers["X-Request-ID"],
        "alias": "champion",
    }
    assert body["outputs"] == [
        {
            "name": "prediction",
            "datatype": "FP64",
            "shape": [3],
            "data": predict_batch(client, "housing", rows),
        }
    ]


def test_iris_infer_answers_labels_and_probabilities_in_metadata_class_order(client):
    rows = rows_of("iris", 4)
    response = client.post("/v2/models/iris/infer", json=per_field_request("iris", rows))
    assert response.status_code == 200, response.get_json()
    outputs = outputs_by_name(response.get_json())
    expected = predict_batch(client, "iris", rows)
    assert outputs["label"] == {
        "name": "label",
        "datatype": "BYTES",
        "shape": [4],
        "data": [row["label"] for row in expected],
    }
    probabilities = outputs["probabilities"]
    assert probabilities["shape"] == [4, 3] and probabilities["datatype"] == "FP64"
    classes = probabilities["parameters"]["classes"]
    assert classes == list(IRIS.classes)
    assert probabilities["data"] == [row["probabilities"][c] for row in expected for c in classes]
    assert "id" not in response.get_json()


def test_requested_outputs_only(client):
    request = {**per_field_request("iris", rows_of("iris", 2)), "outputs": [{"name": "label"}]}
    body = client.post("/v2/models/iris/infer", json=request).get_json()
    assert [output["name"] for output in body["outputs"]] == ["label"]
    request["outputs"] = [{"name": "logits"}]
    response = client.post("/v2/models/iris/infer", json=request)
    assert response.status_code == 400
    assert response.get_json()["error"] == (
        "Unknown output 'logits'; this model has label, probabilities."
    )


def test_a_missing_content_type_is_read_as_json(client):
    # tritonclient sends no Content-Type at all.
    body = json.dumps(matrix_request("housing", rows_of("housing", 1))).encode()
    response = client.post("/v2/models/housing/infer", data=body, content_type="")
    assert response.status_code == 200, response.get_json()


def binary_request(
    model: str, rows: list[dict[str, float]], outputs: list[str]
) -> tuple[bytes, bytes]:
    """The JSON header and the binary tail of a request sending its input as binary data."""
    names = MODEL_SPECS[model].feature_names
    raw = np.asarray([[row[n] for n in names] for row in rows], dtype="<f8").tobytes()
    header = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(rows), len(names)],
                "datatype": "FP64",
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
    }
    if outputs:
        header["outputs"] = [{"name": n, "parameters": {"binary_data": True}} for n in outputs]
    text = json.dumps(header).encode()
    return text, raw


def test_binary_tensor_data_in_and_out(client):
    rows = rows_of("iris", 3)
    header, raw = binary_request("iris", rows, ["label", "probabilities"])
    response = client.post(
        "/v2/models/iris/infer",
        data=header + raw,
        headers={BINARY_HEADER: str(len(header))},
        content_type="application/octet-stream",
    )
    assert response.status_code == 200, response.get_data()[:300]
    length = int(response.headers[BINARY_HEADER])
    document = json.loads(response.get_data()[:length])
    tail = response.get_data()[length:]
    outputs = outputs_by_name(document)
    assert "data" not in outputs["label"] and "data" not in outputs["probabilities"]
    size = outputs["label"]["parameters"]["binary_data_size"]
    labels, offset = [], 0
    while offset < size:  # BYTES: a little-endian uint32 length before each element
        (length_of,) = struct.unpack_from("<I", tail, offset)
        labels.append(tail[offset + 4 : offset + 4 + length_of].decode())
        offset += 4 + length_of
    probabilities = np.frombuffer(tail[size:], dtype="<f8").reshape(3, 3)
    expected = predict_batch(client, "iris", rows)
    assert labels == [row["label"] for row in expected]
    assert probabilities.tolist() == [
        [row["probabilities"][c] for c in IRIS.classes] for row in expected
    ]


def test_binary_input_with_json_output(client):
    rows = rows_of("housing", 2)
    header, raw = binary_request("housing", rows, [])
    response = client.post(
        "/v2/models/housing/infer", data=header + raw, headers={BINARY_HEADER: str(len(header))}
    )
    assert response.status_code == 200 and BINARY_HEADER not in response.headers
    assert response.get_json()["outputs"][0]["data"] == predict_batch(client, "housing", rows)


BAD_VALUES = [
    ("MedInc", -1.0, "Must be greater than or equal to 0.0."),
    ("Latitude", 91.0, "Must be greater than or equal to -90.0 and less than or equal to 90.0."),
    ("AveRooms", True, "Not a valid number."),
    ("HouseAge", "41", "Not a valid number."),
    ("Population", None, "Not a valid number."),
    ("AveOccup", math.inf, "Special numeric values (nan or infinity) are not permitted."),
    ("AveBedrms", 10**400, "Number too large."),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_VALUES, ids=[v[0] for v in BAD_VALUES])
def test_values_predict_refuses_are_refused_the_same_way(client, field, value, message):
    rows = rows_of("housing", 3)
    rows[2][field] = value
    body = json.dumps({"instances": rows}).encode()  # Infinity literal for inf, as sent
    predict = client.post("/predict/housing", data=body, content_type="application/json")
    assert predict.status_code == 422
    assert predict.get_json()["errors"] == {"instances": {"2": {field: [message]}}}
    for request in (matrix_request("housing", rows), per_field_request("housing", rows)):
        response = client.post(
            "/v2/models/housing/infer",
            data=json.dumps(request).encode(),
            content_type="application/json",
        )
        assert response.status_code == 400
        assert response.get_json() == {
            "error": f"Invalid input: errors in 1 row of 3: row 2, {field}: {message}"
        }


ROW = [8.3252, 41.0, 6.984127, 1.02381, 322.0, 2.555556, 37.88, -122.23]


def tensor(**fields: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP64", "data": ROW, **fields}]}


BAD_REQUESTS = [
    ([], "The inference request must be a JSON object with an `inputs` array."),
    ({"inputs": []}, "`inputs` must be a non-empty array of tensors."),
    ({**tensor(), "id": 7}, "id must be a string."),
    ({**tensor(), "parameters": []}, "parameters must be an object."),
    (tensor(datatype="FP32"), "input 'x': datatype 'FP32' is not supported; send FP64."),
    (tensor(shape=[1, -8]), "input 'x': shape must be an array of non-negative integers."),
    (tensor(shape=[1, 8.0]), "input 'x': shape must be an array of non-negative integers."),
    (tensor(shape=[2, 8]), "input 'x': data holds 8 elements; shape [2, 8] needs 16."),
    (
        tensor(shape=[10**12, 8]),
        "input 'x': data holds 8 elements; shape [1000000000000, 8] needs 8000000000000.",
    ),
    (tensor(shape=[1, 7], data=ROW[:7]), "input 'x': shape [1, 7]; an [N, F] input needs F = 8"),
    (tensor(shape=[0, 8], data=[]), "A request holds 1 to 10000 rows; this one has 0."),
    (tensor(data=[ROW[:4], ROW[4:]]), "input 'x': nested data does not match shape [1, 8]."),
    (tensor(data="abc"), "input 'x': data must be an array."),
    (
        {"inputs": [{"name": "x", "shape": [1, 8], "datatype": "FP64"}]},
        "input 'x': `data` is required",
    ),
    (
        {"inputs": [{"name": "MedInc", "shape": [1], "datatype": "FP64", "data": [1.0]}]},
        "missing HouseAge, AveRooms",
    ),
    ({**tensor(), "outputs": {"name": "prediction"}}, "`outputs` must be an array."),
]


@pytest.mark.parametrize(("request_body", "message"), BAD_REQUESTS)
def test_unusable_requests_are_400_saying_why(client, request_body, message):
    response = client.post("/v2/models/housing/infer", json=request_body)
    assert response.status_code == 400, response.get_json()
    assert set(response.get_json()) == {"error"} and message in response.get_json()["error"]


def test_content_type_and_syntax_errors(client):
    bad_type = client.post("/v2/models/housing/infer", data="{}", content_type="text/plain")
    assert bad_type.status_code == 415 and set(bad_type.get_json()) == {"error"}
    malformed = client.post("/v2/models/housing/infer", data="{", content_type="application/json")
    assert malformed.status_code == 400 and malformed.get_json()["error"].startswith(
        "Malformed JSON"
    )
    lie = client.post(
        "/v2/models/housing/infer", data=b"{}", headers={BINARY_HEADER: "999"}, content_type=""
    )
    assert lie.status_code == 400 and BINARY_HEADER in lie.get_json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "status", "keys"),
    [
        ("GET", "/v2/models/housing/infer", 405, {"error"}),
        ("GET", "/v2/anything", 404, {"error"}),
        ("POST", "/v2/models/housing/versions/1/infer/more", 404, {"error"}),
        ("GET", "/mlflow/iris/invocations", 405, {"error_code", "message"}),
        ("GET", "/mlflow/iris/anything", 404, {"error_code", "message"}),
        ("GET", "/v2x", 404, {"code", "status", "message"}),
    ],
)
def test_paths_no_route_matches_answer_in_their_protocols_shape(client, method, path, status, keys):
    response = client.open(path, method=method)
    assert response.status_code == status and set(response.get_json()) == keys
