"""Column-wise JSON (core.json_rows, app.predict.encode) writes the very bytes orjson writes for
the same Python objects, and numbers that parse back exactly."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from app.inference import Prediction
from app.predict.encode import body
from core import json_rows
from core.specs import HOUSING, IRIS

# Shortest round-trip floats of every kind: integers, tiny, huge, long mantissas, negatives.
AWKWARD = np.array(
    [
        [0.1 + 0.2, 1e-300, 123456789.123456789, -0.0],
        [5e-324, 1.7976931348623157e308, 41.0, -2.5],
        [1 / 3, 2.0**60, 1e-7, 37.88],
    ]
)
REF = {"name": "iris", "registered_name": "IrisBestModel", "version": "3", "alias": "champion"}


def test_objects_are_orjson_bytes_and_parse_back_exactly():
    keys = ["a", "b", "c", "d"]
    blob = json_rows.objects(
        b"", json_rows.key_prefixes(keys), json_rows.number_tokens(AWKWARD), b""
    )
    rows = json_rows.rows_of(blob)
    assert rows == [orjson.dumps(dict(zip(keys, row, strict=True))) for row in AWKWARD.tolist()]
    assert [list(orjson.loads(r).values()) for r in rows] == AWKWARD.tolist()
    assert json_rows.array_of(blob) == orjson.dumps(
        [dict(zip(keys, r, strict=True)) for r in AWKWARD.tolist()]
    )


def test_nan_is_null_and_edge_shapes():
    tokens = json_rows.number_tokens(np.array([[np.nan, 1.5]]))
    assert tokens == [b"null", b"1.5"]
    assert json_rows.number_tokens(np.empty((0, 3))) == []
    one_column = json_rows.number_tokens(np.array([[1.0], [2.5]]))
    assert one_column == [b"1.0", b"2.5"]
    assert json_rows.objects(b"", json_rows.key_prefixes(["x"]), [], b"") == b""


def _iris_prediction(proba: np.ndarray | None, labels: list[int]) -> Prediction:
    return Prediction(None, proba, np.asarray(labels), ())


@pytest.mark.parametrize("with_proba", [True, False])
def test_iris_batch_body_is_what_orjson_writes_for_the_dicts(with_proba):
    proba = np.array([[0.98, 0.02, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.1, 0.2, 0.7]])
    labels = [0, 1, 2]
    prediction = _iris_prediction(proba if with_proba else None, labels)
    classes = IRIS.classes
    expected_rows = [
        {
            "label": classes[i],
            "probabilities": dict(zip(classes, p, strict=True)) if with_proba else None,
        }
        for i, p in zip(labels, proba.tolist(), strict=True)
    ]
    got = body(IRIS, classes, prediction, False, REF, "rid-1")
    assert got == orjson.dumps({"predictions": expected_rows, "model": REF, "request_id": "rid-1"})


def test_single_and_regression_bodies_keep_the_documented_shape():
    proba = np.array([[0.9, 0.08, 0.02]])
    single = orjson.loads(body(IRIS, IRIS.classes, _iris_prediction(proba, [0]), True, REF, "r"))
    assert list(single) == ["prediction", "probabilities", "model", "request_id"]
    assert single["prediction"] == "setosa" and single["probabilities"]["virginica"] == 0.02

    values = AWKWARD[:, 0].copy()
    prediction = Prediction(values, None, None, values)
    one = body(HOUSING, (), Prediction(values[:1], None, None, values[:1]), True, REF, "r")
    assert one == orjson.dumps(
        {"prediction": float(values[0]), "unit": HOUSING.unit, "model": REF, "request_id": "r"}
    )
    many = body(HOUSING, (), prediction, False, REF, "r")
    assert many == orjson.dumps(
        {"predictions": values.tolist(), "unit": HOUSING.unit, "model": REF, "request_id": "r"}
    )
