"""How one flush of the prediction log becomes rows, per database dialect.

The rows of a flush are built column-wise: the inputs of every buffered request of a model go
through one orjson call, and their JSON objects are assembled in C (core.json_rows), so a row
costs no Python object but its tuple. SQLite then takes them in one executemany of a plain
INSERT, PostgreSQL in one COPY; other databases get SQLAlchemy row dicts (slow, portable).

Outputs of a request, per model task (what the API hands to the writer):
  regression      values, shape (n,)
  classification  (probabilities (n, k), label indexes (n, 1)), or one (n, k + 1) matrix of
                  both; classes in the spec's order; probabilities are NaN when the model
                  has no predict_proba.
The columns come from core.specs: feature names become the keys of `inputs`, class names the
labels and probability keys of `output`.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from itertools import chain, repeat
from typing import Any, Protocol

import numpy as np
import orjson
from sqlalchemy.engine import Connection

from core import json_rows
from core.specs import ModelSpec

COLUMNS = (
    "request_id",
    "model",
    "version",
    "row_index",
    "inputs",
    "output",
    "latency_ms",
    "created_at",
)
SQLITE_INSERT = (
    f"INSERT INTO prediction_log ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
)
POSTGRESQL_COPY = f"COPY prediction_log ({', '.join(COLUMNS)}) FROM STDIN"
# COPY's text format: these characters would end a field or a row; JSON and numbers have none,
# but a request id or version could.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

Row = tuple[str, str, str, int, str, str, float, str]
BulkWrite = Callable[[list["Pending"]], Callable[[Connection], Any]]


class Pending(Protocol):
    """A buffered request: what the writer recorded."""

    request_id: str
    model: str
    version: str
    latency_ms: float
    created: float  # epoch seconds
    inputs: np.ndarray  # (n, features)
    outputs: np.ndarray | tuple[np.ndarray, ...]  # see the module docstring

    def matrix(self) -> np.ndarray:
        """Inputs and outputs side by side: one row per predicted row."""


def times(epochs: list[float], separator: str) -> list[str]:
    """UTC times to the µs as 'YYYY-MM-DD HH:MM:SS.ffffff' (separator between date and time):
    the text SQLAlchemy's SQLite DateTime stores, and a PostgreSQL timestamp with '+00'."""
    micros = np.round(np.asarray(epochs, dtype=np.float64) * 1e6).astype("datetime64[us]")
    text = np.datetime_as_string(micros, unit="us").tolist()
    return text if separator == "T" else [t.replace("T", separator) for t in text]


class _ModelText:
    """The JSON text of one model's inputs and outputs, for many rows at once."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.input_keys = json_rows.key_prefixes(spec.feature_names)
        if spec.task == "classification":
            self.class_keys = json_rows.key_prefixes(spec.classes)
            labels = [orjson.dumps(c) for c in spec.classes]
            self.heads = [b'{"label":' + label + b',"probabilities":' for label in labels]
            self.no_proba = [b'{"label":' + label + b',"probabilities":null}' for label in labels]

    def inputs(self, matrix: np.ndarray) -> list[str]:
        """One JSON object per row, keyed by feature name."""
        tokens = json_rows.number_tokens(matrix)
        return _decode_rows(json_rows.objects(b"", self.input_keys, tokens, b""))

    def outputs(self, items: list[Pending]) -> list[str]:
        """One JSON output per row: a number, or {"label", "probabilities"}."""
        if self.spec.task == "regression":
            values = _column_blocks(items)[0].reshape(-1, 1)
            return _decode_rows(json_rows.ROW_BREAK.join(json_rows.number_tokens(values)))
        proba, index = _column_blocks(items, len(self.spec.classes))
        index = index.reshape(-1).astype(np.intp)
        heads = list(map(self.heads.__getitem__, index.tolist()))
        text = json_rows.objects(heads, self.class_keys, json_rows.number_tokens(proba), b"}")
        rows = _decode_rows(text)
        for i in np.flatnonzero(np.isnan(proba[:, 0])).tolist():  # no predict_proba
            rows[i] = self.no_proba[int(index[i])].decode()
        return rows


def _column_blocks(items: list[Pending], width: int | None = None) -> list[np.ndarray]:
    """The outputs of several requests stacked: [values (n,)] for a regression, [probabilities
    (n, width), label indexes (n, 1)] for a classification (layouts: module docstring)."""
    if all(isinstance(p.outputs, tuple) for p in items):
        blocks = [p.outputs for p in items]
        return [np.concatenate([b[j] for b in blocks]) for j in range(len(blocks[0]))]
    whole = np.concatenate([_matrix(p.outputs, len(p.inputs)) for p in items])
    return [whole[:, 0]] if width is None else [whole[:, :width], whole[:, width:]]


def _matrix(outputs: np.ndarray | tuple[np.ndarray, ...], n: int) -> np.ndarray:
    """A request's outputs as one (n, columns) float matrix (see the module docstring)."""
    if isinstance(outputs, tuple):
        return np.concatenate([np.asarray(b, dtype=np.float64).reshape(n, -1) for b in outputs], 1)
    return np.asarray(outputs, dtype=np.float64).reshape(n, -1)


def _decode_rows(blob: bytes) -> list[str]:
    return blob.decode().split(json_rows.ROW_BREAK.decode()) if blob else []


class Statements:
    """The bulk write of a flush for each dialect that has one, and the portable fallback."""

    def __init__(self, specs: Iterable[ModelSpec]) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self._text = {name: _ModelText(spec) for name, spec in self.specs.items()}

    def for_dialect(self, name: str) -> BulkWrite | None:
        """The bulk write of dialect name, or None (generic row-by-row fallback).

        It turns a chunk of requests into a statement ready to run: the text is built at once,
        so only the database work happens while the writer holds a lock.
        """
        return {"sqlite": self.sqlite, "postgresql": self.postgresql}.get(name)

    def _texts(self, chunk: list[Pending]) -> tuple[list[str], list[str]]:
        """The JSON inputs and outputs of every row of a chunk, in the order answered."""
        models = {item.model for item in chunk}
        if len(models) == 1:
            text = self._text[models.pop()]
            return text.inputs(np.concatenate([item.inputs for item in chunk])), text.outputs(chunk)
        per_model = {}
        for model in models:
            items = [item for item in chunk if item.model == model]
            text = self._text[model]
            inputs = text.inputs(np.concatenate([item.inputs for item in items]))
            per_model[model] = (inputs, text.outputs(items), 0)
        inputs, outputs = [], []
        for item in chunk:
            model_inputs, model_outputs, start = per_model[item.model]
            end = start + len(item.inputs)
            per_model[item.model] = (model_inputs, model_outputs, end)
            inputs.extend(model_inputs[start:end])
            outputs.extend(model_outputs[start:end])
        return inputs, outputs

    @staticmethod
    def _per_row(values: Iterable[Any], counts: list[int]) -> Iterator[Any]:
        """Each request's value repeated for each of its rows."""
        return chain.from_iterable(map(repeat, values, counts))

    def rows(self, chunk: list[Pending]) -> list[Row]:
        """Every row of a chunk of requests, in the order they were answered."""
        inputs, outputs = self._texts(chunk)
        counts = [len(item.inputs) for item in chunk]
        per_row = self._per_row
        return list(
            zip(
                per_row([item.request_id for item in chunk], counts),
                per_row([item.model for item in chunk], counts),
                per_row([item.version for item in chunk], counts),
                chain.from_iterable(map(range, counts)),
                inputs,
                outputs,
                per_row([float(item.latency_ms) for item in chunk], counts),
                per_row(times([item.created for item in chunk], " "), counts),
                strict=True,
            )
        )

    def sqlite(self, chunk: list[Pending]) -> Callable[[Connection], Any]:
        """One executemany of a plain INSERT (sqlite3 binds each row in C)."""
        rows = self.rows(chunk)
        return lambda conn: conn.exec_driver_sql(SQLITE_INSERT, rows)

    def copy_text(self, chunk: list[Pending]) -> str:
        """The rows of a chunk in COPY's text format (tab-separated fields, a line per row)."""
        inputs, outputs = self._texts(chunk)
        counts = [len(item.inputs) for item in chunk]
        stamps = times([item.created for item in chunk], " ")
        heads = [
            "\t".join(str(v).translate(_COPY_ESCAPES) for v in (i.request_id, i.model, i.version))
            for i in chunk
        ]
        tails = [f"{float(i.latency_ms)!r}\t{t}+00" for i, t in zip(chunk, stamps, strict=True)]
        lines = map(
            "\t".join,
            zip(
                self._per_row(heads, counts),
                map(str, chain.from_iterable(map(range, counts))),
                inputs,
                outputs,
                self._per_row(tails, counts),
                strict=True,
            ),
        )
        return "\n".join(lines) + "\n"

    def postgresql(self, chunk: list[Pending]) -> Callable[[Connection], Any]:
        """One COPY FROM STDIN (psycopg2's copy_expert) in the text format."""
        text = self.copy_text(chunk)

        def copy(conn: Connection) -> None:
            cursor = conn.connection.dbapi_connection.cursor()
            try:
                cursor.copy_expert(POSTGRESQL_COPY, io.StringIO(text))
            finally:
                cursor.close()

        return copy

    def row_dicts(self, item: Pending) -> list[dict[str, Any]]:
        """Plain rows for databases without a bulk write (slow, portable)."""
        spec = self.specs[item.model]
        names, classes = spec.feature_names, spec.classes
        nf, created = len(names), datetime.fromtimestamp(item.created, UTC)
        rows = []
        for i, row in enumerate(item.matrix().tolist()):
            if spec.task == "regression":
                output: Any = row[nf]
            else:
                probs = row[nf : nf + len(classes)]
                output = {
                    "label": classes[int(row[-1])],
                    "probabilities": None
                    if np.isnan(probs[0])
                    else dict(zip(classes, probs, strict=True)),
                }
            rows.append(
                {
                    "request_id": item.request_id,
                    "model": item.model,
                    "version": item.version,
                    "row_index": i,
                    "inputs": dict(zip(names, row[:nf], strict=True)),
                    "output": output,
                    "latency_ms": item.latency_ms,
                    "created_at": created,
                }
            )
        return rows
