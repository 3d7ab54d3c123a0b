"""Conformance with clients nobody here wrote, against the real gunicorn server (2 workers).

- Triton's HTTP client (tritonclient[http]): health, metadata, inference with its defaults
  (binary tensor data in and out) and with JSON tensors, request ids, pinned versions, errors.
- The client generated from the Open Inference Protocol's own OpenAPI definition
  (open-inference-openapi): its pydantic models parse every answer.
- MLflow's scoring-server client (mlflow.pyfunc.scoring_server.client.ScoringServerClient), the
  one MLflow uses against `mlflow models serve`, with only its base URL changed to
  /mlflow/<name> (or /mlflow/<name>/versions/<v>).
"""

from __future__ import annotations

from collections.abc import Iterator

import mlflow
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from mlflow.pyfunc.scoring_server.client import ScoringServerClient
from open_inference.openapi.client import InferenceRequest, OpenInferenceClient
from open_inference.openapi.core.api_error import ApiError as OpenInferenceError
from tritonclient.utils import InferenceServerException

from core.specs import HOUSING, IRIS
from tests.api.conftest import Gunicorn, GunicornLauncher
from tests.api.versions_support import (
    HOUSING_CONSTANT,
    HOUSING_REJECTED_CONSTANT,
    IRIS_CONSTANT,
    PinnedRegistry,
    copy_pinned_registry,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(pinned_registry: PinnedRegistry, tmp_path_factory) -> Iterator[Gunicorn]:
    """One real gunicorn on a copy of the registry with versions to pin."""
    pins = copy_pinned_registry(pinned_registry, tmp_path_factory.mktemp("clients-registry"))
    launcher = GunicornLauncher(tmp_path_factory.mktemp("clients"))
    try:
        yield launcher.start(pins.env)
    finally:
        launcher.close()


def host_port(server: Gunicorn) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").split(":")
    return host, int(port)


def matrix(spec, count: int = 3) -> np.ndarray:
    """count valid rows of spec, features in contract order."""
    base = np.array([f.example for f in spec.features], dtype=np.float64)
    return np.vstack([base * (1 + 0.1 * i) for i in range(count)])


def predict(server: Gunicorn, spec, x: np.ndarray, version: str = "") -> list:
    """The API's own /predict answers for the rows of x (the reference)."""
    rows = [dict(zip(spec.feature_names, row, strict=True)) for row in x.tolist()]
    query = f"?version={version}" if version else ""
    response = server.post(f"/predict/{spec.name}{query}", json={"instances": rows})
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


# -- Triton's HTTP client -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tclient(server: Gunicorn) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(url=server.base_url.removeprefix("http://"))
    yield client
    client.close()


def test_triton_health_and_metadata(tclient):
    assert tclient.is_server_live() and tclient.is_server_ready()
    assert tclient.is_model_ready("housing") and tclient.is_model_ready("iris", "challenger")
    assert not tclient.is_model_ready("wine")
    assert "binary_tensor_data" in tclient.get_server_metadata()["extensions"]
    metadata = tclient.get_model_metadata("iris")
    assert [i["name"] for i in metadata["inputs"]] == IRIS.feature_names
    outputs = {o["name"]: o for o in metadata["outputs"]}
    assert outputs["label"]["datatype"] == "BYTES" and outputs["probabilities"]["shape"] == [-1, 3]
    pinned = tclient.get_model_metadata("housing", model_version="previous")
    assert pinned["parameters"]["version"] == "2"


def test_triton_defaults_send_and_receive_binary_tensors(server, tclient):
    x = matrix(HOUSING)
    tensor = triton.InferInput("input", list(x.shape), "FP64")
    tensor.set_data_from_numpy(x)  # binary_data=True: the client's default
    result = tclient.infer("housing", [tensor], request_id="triton-1")
    response = result.get_response()
    assert response["id"] == "triton-1" and response["model_version"] == "1"
    assert response["outputs"][0]["parameters"]["binary_data_size"] == 3 * 8  # binary back
    got = result.as_numpy("prediction")
    assert got.dtype == np.float64 and got.shape == (3,)
    assert got.tolist() == pytest.approx(predict(server, HOUSING, x), rel=1e-12)


def test_triton_json_tensors_one_per_feature(server, tclient):
    x = matrix(IRIS, 4)
    inputs = []
    for j, name in enumerate(IRIS.feature_names):
        tensor = triton.InferInput(name, [4], "FP64")
        tensor.set_data_from_numpy(x[:, j].copy(), binary_data=False)
        inputs.append(tensor)
    outputs = [
        triton.InferRequestedOutput("label", binary_data=False),
        triton.InferRequestedOutput("probabilities", binary_data=False),
    ]
    result = tclient.infer("iris", inputs, outputs=outputs)
    expected = predict(server, IRIS, x)
    assert result.as_numpy("label").tolist() == [row["label"] for row in expected]
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (4, 3)
    assert probabilities.tolist() == [
        [row["probabilities"][c] for c in IRIS.classes] for row in expected
    ]


def test_triton_pins_versions_by_number_and_alias(tclient):
    x = matrix(HOUSING, 2)
    tensor = triton.InferInput("input", list(x.shape), "FP64")
    tensor.set_data_from_numpy(x)
    for version, value in (
        ("2", HOUSING_CONSTANT),
        ("previous", HOUSING_CONSTANT),
        ("challenger", HOUSING_REJECTED_CONSTANT),
    ):
        result = tclient.infer("housing", [tensor], model_version=version)
        assert result.as_numpy("prediction").tolist() == [value, value]
        assert result.get_response()["model_version"] in ("2", "6")
    iris = triton.InferInput("x", [1, 4], "FP64")
    iris.set_data_from_numpy(matrix(IRIS, 1))
    labels = tclient.infer("iris", [iris], model_version="challenger").as_numpy("label")
    assert [label.decode() for label in labels.tolist()] == [IRIS_CONSTANT]


@pytest.mark.parametrize(
    ("model", "version", "rows", "status", "words"),
    [
        ("housing", "99", 1, "404", "has no version '99'"),
        ("housing", "3", 1, "409", "failed validation: gate(s) max_rmse did not pass"),
        ("housing", "4", 1, "409", "no validation report"),
        ("wine", "", 1, "404", "is not served here"),
        ("housing", "", 0, "400", "MedInc: Must be greater than or equal to 0.0."),
    ],
)
def test_triton_sees_errors_with_the_status_and_the_reason(
    tclient, model, version, rows, status, words
):
    x = matrix(HOUSING, 1)
    if rows == 0:
        x[0, 0] = -1.0
    tensor = triton.InferInput("input", list(x.shape), "FP64")
    tensor.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as caught:
        tclient.infer(model, [tensor], model_version=version)
    assert caught.value.status() == status and words in caught.value.message()


# -- the Open Inference Protocol's generated OpenAPI client -------------------------------------


def test_open_inference_openapi_client(server):
    client = OpenInferenceClient(base_url=server.base_url)
    client.check_server_liveness()
    client.check_server_readiness()
    client.check_model_readiness("iris")
    client.check_model_version_readiness("housing", "challenger")
    assert client.read_server_metadata().name == "prediction-service"
    metadata = client.read_model_metadata("housing")
    assert [tensor.name for tensor in metadata.inputs] == HOUSING.feature_names
    x = matrix(HOUSING, 2)
    request = InferenceRequest(
        id="oip-1",
        inputs=[{"name": "input", "shape": [2, 8], "datatype": "FP64", "data": x.ravel().tolist()}],
    )
    response = client.model_infer("housing", request=request)
    assert response.id == "oip-1" and response.model_name == "housing"
    data = response.outputs[0].data.__root__
    assert data == pytest.approx(predict(server, HOUSING, x), rel=1e-12)
    pinned = client.model_version_infer("housing", "previous", request=request)
    assert pinned.model_version == "2" and pinned.outputs[0].data.__root__ == [2.5, 2.5]
    with pytest.raises(OpenInferenceError) as caught:
        client.model_version_infer("housing", "3", request=request)
    assert caught.value.status_code == 409 and "failed validation" in caught.value.body["error"]


# -- MLflow's scoring-server client ------------------------------------------------------------


def mlflow_client(server: Gunicorn, base_path: str) -> ScoringServerClient:
    """MLflow's client for `mlflow models serve`, pointed at base_path instead of the root."""
    host, port = host_port(server)
    return ScoringServerClient(host, f"{port}{base_path}")


def test_mlflow_client_scores_with_only_the_base_url_changed(server):
    client = mlflow_client(server, "/mlflow/iris")
    client.wait_server_ready(timeout=30)
    client.ping()
    assert client.get_version() == mlflow.__version__
    x = matrix(IRIS, 3)
    frame = pd.DataFrame(x, columns=IRIS.feature_names)
    expected = [row["label"] for row in predict(server, IRIS, x)]
    response = client.invoke(frame)  # sent as dataframe_split, as MLflow sends a DataFrame
    assert response.get_predictions(predictions_format="ndarray").tolist() == expected
    # A list of records goes out as `inputs` (MLflow 3's client cannot send a dict of arrays:
    # dump_input_data iterates the dict without .items()).
    records = frame.to_dict(orient="records")
    assert client.invoke(records)["predictions"] == expected

    housing = mlflow_client(server, "/mlflow/housing")
    values = housing.invoke(pd.DataFrame(matrix(HOUSING, 2), columns=HOUSING.feature_names))
    assert values["predictions"] == pytest.approx(predict(server, HOUSING, matrix(HOUSING, 2)))


def test_mlflow_client_pins_versions_through_the_base_url(server):
    frame = pd.DataFrame(matrix(HOUSING, 2), columns=HOUSING.feature_names)
    for base, value in (
        ("/mlflow/housing/versions/2", HOUSING_CONSTANT),
        ("/mlflow/housing/versions/previous", HOUSING_CONSTANT),
        ("/mlflow/housing/versions/challenger", HOUSING_REJECTED_CONSTANT),
    ):
        client = mlflow_client(server, base)
        client.ping()
        assert client.invoke(frame)["predictions"] == [value, value]
    refused = mlflow_client(server, "/mlflow/housing/versions/3")
    with pytest.raises(Exception, match="ping failed \\(error code 409\\)"):
        refused.ping()
    with pytest.raises(Exception, match="error code 409") as caught:
        refused.invoke(frame)
    assert "RESOURCE_CONFLICT" in str(caught.value)


def test_mlflow_client_sees_bad_input_as_a_400(server):
    client = mlflow_client(server, "/mlflow/housing")
    frame = pd.DataFrame(matrix(HOUSING, 1), columns=HOUSING.feature_names)
    frame.loc[0, "Latitude"] = 95.0
    with pytest.raises(Exception, match="error code 400") as caught:
        client.invoke(frame)
    assert "INVALID_PARAMETER_VALUE" in str(caught.value) and "Latitude" in str(caught.value)
