"""Product records codec: JSON objects with named features in, named outputs out.

A request is one record (`{"feature": value, ...}`) or a list of them; nested objects such as
`{"transaction": {"amount": 3.5}}` are flattened: a field matches a feature by the longest tail
of its path joined with `.` or `_` (`transaction.amount`, `transaction_amount`, then `amount`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.protocol.datatypes import as_array
from nstarx_jupyter.protocol.signature import ModelSignature, TensorSpec, bind_inputs

if TYPE_CHECKING:
    from collections.abc import Iterator

    import numpy as np

__all__ = [
    "as_text",
    "leaf_paths",
    "records_to_tensors",
    "rename_fields",
    "split_records",
    "tensors_to_records",
]


def split_records(doc: Any) -> tuple[list[dict[str, Any]], bool]:
    """Return the records of a body and whether it was a single record."""
    if isinstance(doc, dict):
        return [doc], True
    if isinstance(doc, list) and doc and all(isinstance(item, dict) for item in doc):
        return doc, False
    raise InvalidInputError("send a JSON object of features, or a non-empty list of them")


def records_to_tensors(
    records: list[dict[str, Any]], signature: ModelSignature
) -> dict[str, np.ndarray[Any, Any]]:
    """Build the model's input tensors from records, naming any missing or unknown field."""
    columns = _columns(signature)
    if _is_one_text(signature):  # a text model takes its one field under any name
        records = [_one_field(record, columns[0]) for record in records]
    matched = [_match(record, columns, index) for index, record in enumerate(records)]
    if _is_matrix(signature):
        spec = signature.inputs[0]
        rows = [[row[name] for name in columns] for row in matched]
        try:
            array = as_array(rows, spec.datatype, spec.name)
        except InvalidInputError:
            _name_the_field(matched, columns, spec.datatype)
            raise
        return bind_inputs(signature, {spec.name: array})
    tensors = {}
    for spec in signature.inputs:
        values = [row[spec.name] for row in matched]
        tensors[spec.name] = _stack(spec, values)
    return bind_inputs(signature, tensors)


def tensors_to_records(
    outputs: dict[str, np.ndarray[Any, Any]], signature: ModelSignature
) -> list[dict[str, Any]]:
    """Name each row's outputs: `prediction`, `confidence` and `probabilities` for classifiers."""
    count = len(next(iter(outputs.values())))
    records: list[dict[str, Any]] = [{} for _ in range(count)]
    for name, array in outputs.items():
        if name == "predict_proba" and signature.class_labels is not None:
            _add_probabilities(records, array, signature.class_labels)
            continue
        key = "prediction" if name in ("predict", *signature.default_outputs[:1]) else name
        for record, value in zip(records, _values(array), strict=True):
            record[key] = value
    return records


def _is_matrix(signature: ModelSignature) -> bool:
    """One 2-D input whose columns are the named features."""
    return (len(signature.inputs) == 1 and len(signature.inputs[0].shape) == 2
            and signature.feature_names is not None)  # fmt: skip


def _is_one_text(signature: ModelSignature) -> bool:
    spec = signature.inputs[0] if len(signature.inputs) == 1 else None
    return spec is not None and len(spec.shape) == 1 and signature.feature_names is None


def _one_field(record: dict[str, Any], name: str) -> dict[str, Any]:
    leaves = list(leaf_paths(record))
    if len(leaves) == 1 and leaves[0][0][-1] != name:
        return {name: leaves[0][1]}
    return record


def _columns(signature: ModelSignature) -> tuple[str, ...]:
    if len(signature.inputs) == 1 and len(signature.inputs[0].shape) == 1:
        return (signature.inputs[0].name,)
    if len(signature.inputs) == 1:
        if signature.feature_names is None:
            raise InvalidInputError(
                "this model has no feature names, so records cannot be mapped to columns; "
                "send V2 tensors, or serve it with the 'feature_names' option"
            )
        return signature.feature_names
    return tuple(spec.name for spec in signature.inputs)


def _match(record: dict[str, Any], columns: tuple[str, ...], index: int) -> dict[str, Any]:
    wanted = set(columns)
    row: dict[str, Any] = {}
    where = f"record {index}: " if index else ""
    for path, value in leaf_paths(record):
        name = _resolve(path, wanted)
        if name is None:
            raise InvalidInputError(f"{where}unknown field '{'.'.join(path)}'")
        if name in row:
            raise InvalidInputError(f"{where}field '{name}' is given twice")
        row[name] = value
    missing = [name for name in columns if name not in row]
    if missing:
        raise InvalidInputError(f"{where}missing field '{missing[0]}'")
    return row


def _name_the_field(rows: list[dict[str, Any]], columns: tuple[str, ...], datatype: str) -> None:
    """Raise the error of the first field whose value does not fit `datatype`.

    The features share one tensor (`input-0`), a name the caller of records never sent.
    """
    for index, row in enumerate(rows):
        where = f"record {index}: " if index else ""
        for name in columns:
            if isinstance(row[name], list | dict):
                raise InvalidInputError(f"{where}field '{name}': one value, not a list or object")
            try:
                as_array([row[name]], datatype, name)
            except InvalidInputError as exc:
                detail = exc.message.removeprefix(f"input '{name}'")
                raise InvalidInputError(f"{where}field '{name}'{detail}") from None


def _resolve(path: tuple[str, ...], wanted: set[str]) -> str | None:
    """Match the longest tail of a nested path to a feature, joined with '.' or '_'."""
    for start in range(len(path)):
        tail = path[start:]
        for candidate in (".".join(tail), "_".join(tail)):
            if candidate in wanted:
                return candidate
    return None


def leaf_paths(
    value: dict[str, Any], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Each leaf of a nested record with its path (`("transaction", "amount"), 3.5`)."""
    for key, item in value.items():
        path = (*prefix, str(key))
        if isinstance(item, dict) and item:
            yield from leaf_paths(item, path)
        else:
            yield path, item


def _stack(spec: TensorSpec, values: list[Any]) -> np.ndarray[Any, Any]:
    if spec.datatype == "BYTES":
        values = [as_text(value) for value in values]
    elif spec.datatype.startswith("FP") and len(spec.shape) == 1:
        values = [math.nan if value is None else value for value in values]  # null: missing
    array = as_array(values, spec.datatype, spec.name)
    if len(spec.shape) == array.ndim + 1 and spec.shape[-1] in (1, -1):
        array = array.reshape(*array.shape, 1)
    return array


def rename_fields(records: list[dict[str, Any]], names: dict[str, str]) -> list[dict[str, Any]]:
    """Records with their fields renamed by `names` (`probability` names `confidence`)."""
    if not names:
        return records
    wanted = {("confidence" if key == "probability" else key): new for key, new in names.items()}
    return [{wanted.get(key, key): value for key, value in record.items()} for record in records]


def as_text(value: Any) -> Any:
    """A number given for a string field, as its text (`94110` for a category); else as is."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _add_probabilities(
    records: list[dict[str, Any]], proba: np.ndarray[Any, Any], labels: tuple[Any, ...]
) -> None:
    for record, row in zip(records, proba.tolist(), strict=True):
        record["confidence"] = max(row)
        record["probabilities"] = dict(zip((str(label) for label in labels), row, strict=True))


def _values(array: np.ndarray[Any, Any]) -> list[Any]:
    values = array.tolist()
    if array.dtype.kind == "O":
        return [v.decode() if isinstance(v, bytes) else v for v in values]
    return list(values)
