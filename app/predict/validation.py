"""Column-wise validation of prediction inputs with numpy (no per-row schema objects).

The common case (every row well formed) costs a few C-level passes over the batch; only a batch
that has errors is walked row by row, to name each bad row and field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import chain, repeat
from math import isfinite
from operator import eq, itemgetter
from typing import Any

import numpy as np

from app.errors import ApiError
from core.specs import ModelSpec

UNKNOWN = "Unknown field."
MISSING = "Missing data for required field."
NOT_NUMBER = "Not a valid number."
NOT_FINITE = "Special numeric values (nan or infinity) are not permitted."
TOO_LARGE = "Number too large."
NOT_OBJECT = "Invalid input type."
NOT_LIST = "Not a valid list."
MAX_REPORTED_ROWS = 100  # error responses name at most this many bad rows

_NUMBER_TYPES = frozenset((int, float))  # bool is its own type, so True/False are rejected


@dataclass(frozen=True, slots=True)
class ParsedInput:
    """A validated request: the float matrix in model column order; single or batch."""

    matrix: np.ndarray
    single: bool


def _range_message(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"Must be greater than or equal to {lo} and less than or equal to {hi}."
    if lo is not None:
        return f"Must be greater than or equal to {lo}."
    return f"Must be less than or equal to {hi}."


class InputValidator:
    """Validates one model's records (single or batch) against its spec."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.names = tuple(spec.feature_names)
        self.keyset = frozenset(self.names)
        getter = itemgetter(*self.names)
        # itemgetter returns a bare value (not a 1-tuple) for a single name.
        self._getter = getter if len(self.names) > 1 else (lambda row: (getter(row),))
        self.lower = np.array(
            [-np.inf if f.minimum is None else f.minimum for f in spec.features], dtype=float
        )
        self.upper = np.array(
            [np.inf if f.maximum is None else f.maximum for f in spec.features], dtype=float
        )
        self._lower, self._upper = tuple(self.lower.tolist()), tuple(self.upper.tolist())
        self._range_messages = tuple(_range_message(f.minimum, f.maximum) for f in spec.features)

    def parse(self, payload: Any, max_rows: int) -> ParsedInput:
        """Validate a request body: one record, or {"instances": [records]}; 422 on errors."""
        if not isinstance(payload, dict):
            raise ApiError(
                422,
                'Expected a JSON object: one record, or {"instances": [records]}.',
                {"_schema": [NOT_OBJECT]},
            )
        if "instances" not in payload:
            return ParsedInput(self._matrix([payload], single=True), True)
        errors: dict[str, Any] = {key: [UNKNOWN] for key in payload if key != "instances"}
        rows = payload["instances"]
        if not isinstance(rows, list):
            errors["instances"] = [NOT_LIST]
        elif not 1 <= len(rows) <= max_rows:
            errors["instances"] = [f"Length must be between 1 and {max_rows}."]
        if errors:
            raise ApiError(422, "Invalid input.", errors)
        return ParsedInput(self._matrix(rows, single=False), False)

    def _matrix(self, rows: list[Any], single: bool) -> np.ndarray:
        matrix = self._one_row(rows[0]) if single else self._fast_matrix(rows)
        if matrix is not None:
            return matrix
        raise self._describe_errors(rows, single)

    def _one_row(self, row: Any) -> np.ndarray | None:
        """The (1, n) matrix of a valid record, else None.

        Plain Python beats numpy's per-call overhead for a handful of values (the common
        single-record request).
        """
        if type(row) is not dict or row.keys() != self.keyset:
            return None
        values = self._getter(row)
        for value, lo, hi in zip(values, self._lower, self._upper, strict=True):
            if type(value) not in _NUMBER_TYPES:
                return None
            try:
                if not (isfinite(value) and lo <= value <= hi):
                    return None
            except OverflowError:  # an integer beyond float range
                return None
        return np.array([values], dtype=np.float64)

    def _fast_matrix(self, rows: list[Any]) -> np.ndarray | None:
        """The matrix if every row is valid, else None; C-level passes only."""
        if set(map(type, rows)) != {dict}:
            return None
        if not all(map(eq, map(dict.keys, rows), repeat(self.keyset))):
            return None
        values = list(map(self._getter, rows))
        if not set(map(type, chain.from_iterable(values))) <= _NUMBER_TYPES:
            return None
        try:
            matrix = np.array(values, dtype=np.float64)
        except OverflowError:  # an integer beyond float range
            return None
        # NaN fails every comparison, so "not inside bounds" also catches it; inf is caught
        # by the bounds when a side is unbounded because inf > inf is False: check explicitly.
        if not (
            np.isfinite(matrix).all()
            and (matrix >= self.lower).all()
            and (matrix <= self.upper).all()
        ):
            return None
        return matrix

    def _describe_errors(self, rows: list[Any], single: bool) -> ApiError:
        """Walk the rows to name every bad field (only reached when something is wrong)."""
        if single:
            return ApiError(422, "Invalid input.", self._record_errors(rows[0]))
        bad: dict[str, Any] = {}
        for index, row in enumerate(rows):
            errors = self._record_errors(row)
            if errors:
                bad[str(index)] = errors
                if len(bad) >= MAX_REPORTED_ROWS:
                    message = (
                        f"Invalid input: errors in {MAX_REPORTED_ROWS} or more rows; "
                        f"the first {MAX_REPORTED_ROWS} are listed."
                    )
                    return ApiError(422, message, {"instances": bad})
        noun = "row" if len(bad) == 1 else "rows"
        return ApiError(
            422, f"Invalid input: errors in {len(bad)} {noun} of {len(rows)}.", {"instances": bad}
        )

    def _record_errors(self, row: Any) -> dict[str, list[str]]:
        if not isinstance(row, dict):
            return {"_schema": [NOT_OBJECT]}
        errors: dict[str, list[str]] = {
            str(key): [UNKNOWN] for key in row if key not in self.keyset
        }
        for j, name in enumerate(self.names):
            if name not in row:
                errors[name] = [MISSING]
                continue
            message = self._value_error(j, row[name])
            if message:
                errors[name] = [message]
        return errors

    def _value_error(self, j: int, value: Any) -> str | None:
        if type(value) not in _NUMBER_TYPES:
            return NOT_NUMBER
        try:
            number = float(value)
        except OverflowError:
            return TOO_LARGE
        if not math.isfinite(number):
            return NOT_FINITE
        if number < self.lower[j] or number > self.upper[j]:
            return self._range_messages[j]
        return None
