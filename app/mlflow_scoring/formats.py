"""The input formats of MLflow's scoring protocol, read into records for the /predict validator.

As `mlflow models serve` (mlflow/pyfunc/scoring_server) reads them: a JSON object with exactly
one of `dataframe_split`, `dataframe_records`, `instances`, `inputs` (and optionally `params`,
which a scikit-learn model ignores), or `text/csv` with a header row; `charset` is the only
content-type parameter, and it must be utf-8. Parquet is not accepted.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from app.errors import ApiError

CONTENT_TYPE_CSV = "text/csv"
CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPES = (CONTENT_TYPE_CSV, CONTENT_TYPE_JSON)
DF_SPLIT, DF_RECORDS, INSTANCES, INPUTS = (
    "dataframe_split",
    "dataframe_records",
    "instances",
    "inputs",
)
SUPPORTED_FORMATS = (DF_SPLIT, DF_RECORDS, INSTANCES, INPUTS)
PARAMS = "params"
REQUIRED_INPUT_FORMAT = (
    "The input must be a JSON dictionary with exactly one of the input fields "
    f"{{{', '.join(repr(f) for f in SUPPORTED_FORMATS)}}}"
)
MAX_CSV_COLUMNS = 256  # far more than any model's fields; a wider header is refused unread


def bad(message: str) -> ApiError:
    """A 400 (BAD_REQUEST in MLflow's error codes)."""
    return ApiError(400, message)


def media_type(header: str | None) -> str:
    """The request's media type, checked as MLflow checks it (415 otherwise)."""
    parts = [part.strip() for part in (header or "").split(";")]
    mime = parts[0].lower()
    values = {
        key.strip().lower(): value.strip()
        for key, _, value in (p.partition("=") for p in parts[1:] if p)
    }
    if values.get("charset", "utf-8").strip('"').lower() != "utf-8":
        raise ApiError(415, "The scoring server only supports UTF-8")
    unexpected = sorted(set(values) - {"charset"})
    if unexpected:
        raise ApiError(415, f"Unrecognized content type parameters: {', '.join(unexpected)}.")
    if mime not in CONTENT_TYPES:
        raise ApiError(
            415,
            f"This predictor only supports the following content types: {list(CONTENT_TYPES)}. "
            f"Got {(header or '')[:100]!r}.",
        )
    return mime


def _check_rows(count: int, max_rows: int) -> None:
    if not 1 <= count <= max_rows:
        raise bad(f"A request holds 1 to {max_rows} rows; this one has {count}.")


def _columns_to_records(columns: dict[str, Any], max_rows: int, where: str) -> list[dict[str, Any]]:
    """{"field": [values], ...} as records; every column a list of the same length."""
    if not columns:
        raise bad(f"`{where}` holds no columns.")
    lengths = set()
    for value in columns.values():
        if not isinstance(value, list):
            raise bad(f"`{where}` as columns must map each field to a list of values.")
        lengths.add(len(value))
    if len(lengths) != 1:
        raise bad(f"Every column of `{where}` must hold the same number of values.")
    _check_rows(lengths.pop(), max_rows)
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _records(value: Any, max_rows: int, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise bad(f"`{where}` must be a list of records.")
    _check_rows(len(value), max_rows)
    return value


def _split(value: Any, max_rows: int) -> list[dict[str, Any]]:
    if not isinstance(value, dict):
        raise bad(f"`{DF_SPLIT}` must be an object with `columns` and `data`.")
    columns, data = value.get("columns"), value.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise bad(f"`{DF_SPLIT}.columns` must be a list of field names.")
    if len(set(columns)) != len(columns):
        raise bad(f"`{DF_SPLIT}.columns` names a field twice.")
    if not isinstance(data, list):
        raise bad(f"`{DF_SPLIT}.data` must be a list of rows.")
    if "index" in value and not isinstance(value["index"], list):
        raise bad(f"`{DF_SPLIT}.index` must be a list.")
    _check_rows(len(data), max_rows)
    width = len(columns)
    if not all(isinstance(row, list) and len(row) == width for row in data):
        raise bad(f"Every row of `{DF_SPLIT}.data` must be a list of {width} values.")
    return [dict(zip(columns, row, strict=True)) for row in data]


def json_records(payload: Any, max_rows: int) -> list[Any]:
    """The rows of a JSON scoring request, as records keyed by field name."""
    if not isinstance(payload, dict):
        kind = "a list" if isinstance(payload, list) else f"a {type(payload).__name__}"
        raise bad(f"{REQUIRED_INPUT_FORMAT}. Received {kind}.")
    formats = [key for key in payload if key in SUPPORTED_FORMATS]
    if len(formats) != 1:
        shown = ", ".join(repr(str(key)[:40]) for key in list(payload)[:10])
        raise bad(f"{REQUIRED_INPUT_FORMAT}. Received dictionary with input fields: [{shown}].")
    if PARAMS in payload and not isinstance(payload[PARAMS], dict):
        raise bad("`params` must be an object.")
    key = formats[0]
    value = payload[key]
    if key == DF_SPLIT:
        return _split(value, max_rows)
    if key == DF_RECORDS:
        return _records(value, max_rows, key)
    # instances / inputs: a list of records, columns {"field": [values]}, or one record.
    if isinstance(value, dict):
        if value and not any(isinstance(item, list) for item in value.values()):
            return [value]
        return _columns_to_records(value, max_rows, key)
    return _records(value, max_rows, key)


def _cell(text: str) -> Any:
    """A CSV cell as a number when it reads as one; the validator names anything else."""
    try:
        return int(text) if text.lstrip("+-").isdigit() else float(text)
    except ValueError:
        return text


def csv_records(raw: bytes, max_rows: int) -> list[dict[str, Any]]:
    """The rows of a CSV body with a header row; blank lines are skipped (but counted)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad("Ensure that input is a valid UTF-8 encoded string.") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[dict[str, Any]] = []
    try:
        header = next(reader, None)
        if not header or not any(name.strip() for name in header):
            raise bad("Failed to parse input as a CSV table: it needs a header row of field names.")
        if len(header) > MAX_CSV_COLUMNS:
            raise bad(f"The CSV header names {len(header)} columns; at most {MAX_CSV_COLUMNS}.")
        if len(set(header)) != len(header):
            raise bad("The CSV header names a column twice.")
        width = len(header)
        for lines, row in enumerate(reader, start=1):
            if lines > max_rows:  # bounded work whatever the body holds
                raise bad(f"A request holds 1 to {max_rows} rows; this CSV has more.")
            if not row:
                continue
            if len(row) != width:
                raise bad(f"CSV line {lines + 1} has {len(row)} values; the header has {width}.")
            records.append(dict(zip(header, map(_cell, row), strict=True)))
    except csv.Error as exc:
        raise bad(f"Failed to parse input as a CSV table: {exc}.") from None
    _check_rows(len(records), max_rows)
    return records
