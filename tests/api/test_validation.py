"""Column-wise validation: agrees with the marshmallow record schema, fast on big batches."""

from __future__ import annotations

import numpy as np
import pytest

from app.errors import ApiError
from app.predict.schemas import record_schema
from app.predict.validation import MISSING, NOT_FINITE, NOT_NUMBER, UNKNOWN, InputValidator
from core.specs import HOUSING, IRIS

V = InputValidator(HOUSING)
ROW = HOUSING.example_row()


def errors_of(payload, validator=V, max_rows=10_000):
    with pytest.raises(ApiError) as caught:
        validator.parse(payload, max_rows)
    assert caught.value.code == 422
    return caught.value.errors


def test_single_record_gives_a_matrix_in_feature_order():
    parsed = V.parse(dict(reversed(list(ROW.items()))), 10)
    assert parsed.single
    assert parsed.matrix.dtype == np.float64 and parsed.matrix.shape == (1, 8)
    assert parsed.matrix[0].tolist() == [ROW[name] for name in HOUSING.feature_names]


def test_batch_gives_one_row_per_record():
    rows = [ROW, {**ROW, "MedInc": 2}]
    parsed = V.parse({"instances": rows}, 10)
    assert not parsed.single and parsed.matrix.shape == (2, 8)
    assert parsed.matrix[1, 0] == 2.0


def test_messages_name_every_bad_field():
    bad = {**ROW, "MedInc": "1", "HouseAge": False, "AveRooms": float("nan"), "x": 1}
    del bad["Longitude"]
    errors = errors_of(bad)
    assert errors == {
        "x": [UNKNOWN],
        "MedInc": [NOT_NUMBER],
        "HouseAge": [NOT_NUMBER],
        "AveRooms": [NOT_FINITE],
        "Longitude": [MISSING],
    }


def test_bounds_are_inclusive():
    V.parse({**ROW, "Latitude": 90.0, "Longitude": -180.0, "MedInc": 0.0}, 10)
    errors = errors_of({**ROW, "Latitude": 90.000001})
    assert list(errors) == ["Latitude"]


def test_batch_errors_are_keyed_by_row_then_field():
    rows = [ROW, {**ROW, "Population": -1}, ROW, {**ROW, "AveOccup": None}]
    errors = errors_of({"instances": rows})
    assert set(errors["instances"]) == {"1", "3"}
    assert list(errors["instances"]["1"]) == ["Population"]
    assert errors["instances"]["3"] == {"AveOccup": [NOT_NUMBER]}


def test_batch_size_limits():
    assert "instances" in errors_of({"instances": [ROW] * 11}, max_rows=10)
    assert V.parse({"instances": [ROW] * 10}, 10).matrix.shape == (10, 8)


@pytest.mark.parametrize(
    "record",
    [
        {"sepal_length": 1, "sepal_width": 1, "petal_length": 1},
        {"sepal_length": 1, "sepal_width": 1, "petal_length": 1, "petal_width": -0.5},
        {"sepal_length": "1", "sepal_width": 1, "petal_length": 1, "petal_width": 1},
        {"sepal_length": 1, "sepal_width": 1, "petal_length": 1, "petal_width": 1, "x": 2},
        {"sepal_length": None, "sepal_width": 1, "petal_length": 1, "petal_width": 1},
        {"sepal_length": float("inf"), "sepal_width": 1, "petal_length": 1, "petal_width": 1},
        {"sepal_length": 1, "sepal_width": 1, "petal_length": 1, "petal_width": 1},
    ],
)
def test_agrees_with_the_marshmallow_record_schema(record):
    """The documented schema and the fast validator reject exactly the same fields."""
    schema_errors = record_schema(IRIS)().validate(record)
    try:
        InputValidator(IRIS).parse(record, 10)
        fast_errors = {}
    except ApiError as exc:
        fast_errors = exc.errors
    assert set(fast_errors) == set(schema_errors)


def test_ten_thousand_rows_validate_into_one_matrix():
    # How fast: bench/bench_validation.py (against a per-row marshmallow schema, same run).
    rows = [{**ROW, "MedInc": float(i % 10)} for i in range(10_000)]
    parsed = V.parse({"instances": rows}, 10_000)
    assert parsed.matrix.shape == (10_000, 8)
    assert parsed.matrix[:, 0].tolist() == [float(i % 10) for i in range(10_000)]
