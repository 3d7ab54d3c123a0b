"""The SQL that turns one flush of the prediction log into rows, per database dialect.

A flush is ONE JSON document per chunk of requests (see writer.document()); the database
explodes it into rows (SQLite json_each, PostgreSQL jsonb_array_elements), so per-row work
happens in C inside the database. Row layout of a request's matrix, per model task:
  regression      [inputs..., prediction]
  classification  [inputs..., p(class_0) .. p(class_k-1), label index], classes in the spec's
                  order; probabilities are NaN when the model has no predict_proba.
The columns come from core.specs: feature names become the keys of `inputs`, class names the
labels and probability keys of `output`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
from sqlalchemy import TextClause, text

from core.specs import ModelSpec


class Pending(Protocol):
    """What row_dicts() needs of a buffered request."""

    request_id: str
    model: str
    version: str
    latency_ms: float
    created: float

    def matrix(self) -> np.ndarray:
        """Inputs and outputs side by side: one row per predicted row."""


def _lit(value: str) -> str:
    """A SQL string literal (names come from core.specs; quoted anyway)."""
    return "'" + value.replace("'", "''") + "'"


def _case(selector: str, branches: dict[str, str]) -> str:
    whens = " ".join(f"WHEN {_lit(model)} THEN {expr}" for model, expr in branches.items())
    return f"CASE {selector} {whens} END"


class Statements:
    """The INSERT ... SELECT that explodes a flush's JSON document into rows, per dialect.

    One statement covers every model (a CASE on the row's model picks its expressions), so rows
    are inserted in the order the requests were answered.
    """

    def __init__(self, specs: Iterable[ModelSpec]) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.sqlite = text(self._sqlite())
        self.postgresql = text(self._postgresql())

    @staticmethod
    def _output(spec: ModelSpec, col: str, obj: str, arrow_text: str, has_proba: str) -> str:
        nf = len(spec.features)
        if spec.task == "regression":
            return col.format(nf)
        k = len(spec.classes)
        whens = " ".join(f"WHEN {i} THEN {_lit(c)}" for i, c in enumerate(spec.classes))
        label = f"CASE CAST(CAST({arrow_text.format(nf + k)} AS REAL) AS INTEGER) {whens} END"
        probs = ", ".join(f"{_lit(c)}, {col.format(nf + i)}" for i, c in enumerate(spec.classes))
        return (
            f"{obj}('label', {label}, 'probabilities', "
            f"CASE WHEN {has_proba} THEN {obj}({probs}) END)"
        )

    @staticmethod
    def _inputs(spec: ModelSpec, col: str, obj: str) -> str:
        pairs = ", ".join(f"{_lit(n)}, {col.format(j)}" for j, n in enumerate(spec.feature_names))
        return f"{obj}({pairs})"

    def _columns(self, model: str, col: str, obj: str, txt: str, has_proba: str) -> str:
        inputs = {m: self._inputs(s, col, obj) for m, s in self.specs.items()}
        outputs = {m: self._output(s, col, obj, txt, has_proba) for m, s in self.specs.items()}
        return f"{_case(model, inputs)}, {_case(model, outputs)}"

    def _sqlite(self) -> str:
        columns = self._columns(
            "req.model",
            "item.value -> {}",
            "json_object",
            "item.value ->> {}",
            "req.has_proba",
        )
        # The CTE reads each request's fields once; reading them per row would re-parse the
        # whole request for every row (quadratic in the batch size).
        return (
            "WITH req AS MATERIALIZED ("
            " SELECT key AS k, value ->> 0 AS request_id, value ->> 1 AS model,"
            " value ->> 2 AS version, value ->> 3 AS latency_ms, value ->> 4 AS ts,"
            " value ->> 5 AS has_proba, value -> 6 AS rows"
            " FROM json_each(:doc))"
            " INSERT INTO prediction_log"
            " (request_id, model, version, row_index, inputs, output, latency_ms, created_at)"
            f" SELECT req.request_id, req.model, req.version, item.key, {columns},"
            # Epoch seconds -> the text form SQLAlchemy's SQLite DateTime reads, to the µs.
            " req.latency_ms, strftime('%Y-%m-%d %H:%M:%S', req.ts, 'unixepoch')"
            " || printf('.%06d', CAST((req.ts - CAST(req.ts AS INTEGER)) * 1000000 AS INTEGER))"
            " FROM req, json_each(req.rows) AS item"
            " ORDER BY req.k, item.key"
        )

    def _postgresql(self) -> str:
        columns = self._columns(
            "r.req ->> 1",
            "i.elem -> {}",
            "jsonb_build_object",
            "i.elem ->> {}",
            "(r.req ->> 5)::boolean",
        )
        return (
            "INSERT INTO prediction_log"
            " (request_id, model, version, row_index, inputs, output, latency_ms, created_at)"
            f" SELECT r.req ->> 0, r.req ->> 1, r.req ->> 2, (i.ord - 1)::int, {columns},"
            " (r.req ->> 3)::float8, to_timestamp((r.req ->> 4)::float8)"
            " FROM jsonb_array_elements(CAST(:doc AS jsonb)) WITH ORDINALITY AS r(req, rord),"
            " jsonb_array_elements(r.req -> 6) WITH ORDINALITY AS i(elem, ord)"
            " ORDER BY r.rord, i.ord"
        )

    def for_dialect(self, name: str) -> TextClause | None:
        """The statement of dialect name, or None (generic row-by-row fallback)."""
        return {"sqlite": self.sqlite, "postgresql": self.postgresql}.get(name)

    def row_dicts(self, item: Pending) -> list[dict[str, Any]]:
        """Plain rows for databases without a JSON-exploding statement (slow, portable)."""
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
