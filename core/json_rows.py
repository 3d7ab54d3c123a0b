"""JSON text for many rows at once, with no Python object per row.

A numeric matrix goes through one orjson call; its number tokens are then interleaved with the
field names by list slicing and joined in C. The text is what orjson writes for the same
objects (compact, shortest round-trip floats, NaN as null), so it can be parsed back exactly:
the response of a batch prediction and the prediction log's JSON columns are built this way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import orjson

ROW_BREAK = b"\n"  # never inside compact JSON: safe to split rows on


def number_tokens(matrix: np.ndarray) -> list[bytes]:
    """The JSON text of every value of a 2-D float matrix, row by row (NaN and inf as null)."""
    n, k = matrix.shape
    if n == 0 or k == 0:
        return []
    text = orjson.dumps(np.ascontiguousarray(matrix, dtype=np.float64), option=_NUMPY)
    return text[2:-2].replace(b"],[", b",").split(b",")


_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def key_prefixes(keys: Sequence[str]) -> list[bytes]:
    """'"key":' of each key, the first one opening the object and the others after a comma."""
    encoded = [orjson.dumps(key) + b":" for key in keys]
    return [b"{" + encoded[0]] + [b"," + e for e in encoded[1:]]


def objects(
    heads: Sequence[bytes] | bytes, prefixes: Sequence[bytes], tokens: list[bytes], tail: bytes
) -> bytes:
    """Rows of JSON objects joined by ROW_BREAK: head + prefix_0 token_0 ... + '}' + tail.

    heads: one per row, or the same bytes for every row (what comes before the object);
    prefixes: key_prefixes() of the object's keys; tokens: number_tokens() of the rows.
    """
    k = len(prefixes)
    n = len(tokens) // k if k else 0
    if n == 0:
        return b""
    parts: list[bytes] = [b""] * (2 * k * n)
    closing = b"}" + tail + ROW_BREAK
    if isinstance(heads, bytes):
        parts[0 :: 2 * k] = [closing + heads + prefixes[0]] * n
    else:
        parts[0 :: 2 * k] = [closing + head + prefixes[0] for head in heads]
    for j in range(1, k):
        parts[2 * j :: 2 * k] = [prefixes[j]] * n
    for j in range(k):
        parts[2 * j + 1 :: 2 * k] = tokens[j::k]
    # The first row has nothing to close before it; the last one closes after the join.
    return b"".join(parts)[len(closing) :] + closing[: -len(ROW_BREAK)]


def rows_of(blob: bytes) -> list[bytes]:
    """The rows of an objects() blob, each its own JSON text."""
    return blob.split(ROW_BREAK) if blob else []


def array_of(blob: bytes) -> bytes:
    """The rows of an objects() blob as one JSON array."""
    return b"[" + blob.replace(ROW_BREAK, b",") + b"]"
