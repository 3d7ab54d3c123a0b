"""The JSON body of a prediction response, as bytes.

orjson writes every body; a batch of class probabilities, the one shape that would need a
Python dict per row, is assembled column-wise by core.json_rows instead, to the same bytes
orjson would write for those dicts.
"""

from __future__ import annotations

from functools import cache
from typing import Any, NamedTuple

import numpy as np
import orjson

from app.inference import Prediction
from core import json_rows
from core.specs import ModelSpec

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


@cache
def _row_text(classes: tuple[str, ...]) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Per class: the start of a row with probabilities, and a whole row without them; and
    the probability keys."""
    labels = [orjson.dumps(c) for c in classes]
    heads = [b'{"label":' + label + b',"probabilities":' for label in labels]
    bare = [b'{"label":' + label + b',"probabilities":null}' for label in labels]
    return heads, bare, json_rows.key_prefixes(classes)


def _class_rows(classes: tuple[str, ...], prediction: Prediction) -> bytes:
    heads, bare, keys = _row_text(classes)
    labels = prediction.labels.tolist()
    if prediction.probabilities is None:
        return b"[" + b",".join([bare[i] for i in labels]) + b"]"
    tokens = json_rows.number_tokens(prediction.probabilities)
    blob = json_rows.objects([heads[i] for i in labels], keys, tokens, b"}")
    return json_rows.array_of(blob)


class Bounds(NamedTuple):
    """Prediction intervals of a regression answer: bounds per row at one level."""

    lower: np.ndarray
    upper: np.ndarray
    level: float

    def rows(self) -> list[dict[str, float]]:
        """One {"lower", "upper", "level"} per row."""
        return [
            {"lower": lo, "upper": hi, "level": self.level}
            for lo, hi in zip(self.lower.tolist(), self.upper.tolist(), strict=True)
        ]


def body(
    spec: ModelSpec,
    classes: tuple[str, ...],
    prediction: Prediction,
    single: bool,
    model: dict[str, str],
    request_id: str,
    bounds: Bounds | None = None,
) -> bytes:
    """The response body: one prediction, or {"predictions": [...]}, then the model and the
    request id (the documented field order); with bounds, "interval" (single) or "intervals"
    (batch) after the unit."""
    tail = {"model": model, "request_id": request_id}
    if spec.task == "regression":
        if single:
            head: dict[str, Any] = {"prediction": float(prediction.values[0]), "unit": spec.unit}
            if bounds is not None:
                head["interval"] = bounds.rows()[0]
            return orjson.dumps({**head, **tail})
        head = {"predictions": prediction.values}
        if spec.unit:
            head["unit"] = spec.unit
        if bounds is not None:
            head["intervals"] = bounds.rows()
        return orjson.dumps({**head, **tail}, option=_NUMPY)
    if single:
        index = int(prediction.labels[0])
        proba = prediction.probabilities
        probabilities = (
            None if proba is None else dict(zip(classes, proba[0].tolist(), strict=True))
        )
        return orjson.dumps({"prediction": classes[index], "probabilities": probabilities, **tail})
    rows = _class_rows(classes, prediction)
    # {"predictions": rows, ...tail}: the tail's object without its "{".
    return b'{"predictions":' + rows + b"," + orjson.dumps(tail)[1:]
