"""Reading records for the scoring and output components: fields, scores, keys, batches."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.pipelines.component import Batch

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

Scalar = bool | int | float | str
"""A JSON value that is not a container: what a record's field usually holds."""

_MISSING = object()


def read_field(row: dict[str, Any], field: str) -> Any:
    """The value of `field` in `row`, or `MISSING`.

    A name that is not a field but has a dot reads a key of a mapping field:
    `probabilities.fraud` is the `fraud` entry of the row's `probabilities`.
    """
    if field in row:
        return row[field]
    head, dot, key = field.partition(".")
    if dot and isinstance(row.get(head), dict):
        return row[head].get(key, _MISSING)
    return _MISSING


def is_missing(value: object) -> bool:
    """Whether `read_field` found nothing (or a null)."""
    return value is _MISSING or value is None


def number(value: object, where: str, field: str) -> float:
    """`value` as a float, or an `InvalidInputError` naming the row and the field."""
    if is_missing(value):
        raise InvalidInputError(f"{where}: field '{field}' is missing")
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, int | float) or math.isnan(value):
        raise InvalidInputError(f"{where}: field '{field}' = {value!r} is not a number")
    return float(value)


def lookup_keys(value: object) -> list[str]:
    """The strings a value is looked up by in a string-keyed table, most specific first.

    JSON spells booleans `true`/`false` and a model may return the label 1 as 1.0, so both
    `True` and `1.0` find the keys a user would write for them.
    """
    if isinstance(value, bool):
        return ["true" if value else "false", str(value)]
    if isinstance(value, float) and value.is_integer():
        return [str(value), str(int(value))]
    return [str(value)]


def where(position: int) -> str:
    """How an error names a row: by its position in the request."""
    return f"row {position}"


def row_copies(batch: Batch) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each row as ("row N", a copy to change), N being its position in the request."""
    for position, row in zip(batch.index, batch.rows, strict=True):
        yield where(position), {**row}


def merged(inputs: Mapping[str, Sequence[Batch]]) -> Batch:
    """Every batch that reached a node, as one batch in request order."""
    batches = [batch for port in inputs.values() for batch in port]
    return Batch.merge(batches) if batches else Batch([])
