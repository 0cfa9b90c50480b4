"""Open Inference Protocol datatypes and their NumPy counterparts."""

from __future__ import annotations

from typing import Any

import numpy as np

from nstarx_jupyter.errors import InvalidInputError

__all__ = ["DATATYPES", "as_array", "datatype_named", "datatype_of", "numpy_dtype"]

_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
DATATYPES = frozenset(_NUMPY)
"""Every datatype name the protocol defines (BF16 has no NumPy type and is refused)."""

_BY_KIND_SIZE = {(dt.kind, dt.itemsize): name for name, dt in _NUMPY.items() if name != "BYTES"}


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """Return the NumPy dtype for a V2 datatype name, or raise `InvalidInputError`."""
    try:
        return _NUMPY[datatype]
    except KeyError:
        raise InvalidInputError(
            f"unsupported datatype '{datatype}'; expected one of {', '.join(sorted(DATATYPES))}"
        ) from None


def datatype_of(array: np.ndarray[Any, Any]) -> str:
    """Return the V2 datatype name of an array (strings and bytes are BYTES)."""
    kind = array.dtype.kind
    if kind in "OSU":
        return "BYTES"
    try:
        return _BY_KIND_SIZE[(kind, array.dtype.itemsize)]
    except KeyError:
        raise InvalidInputError(f"arrays of dtype {array.dtype} have no V2 datatype") from None


def datatype_named(dtype_name: str) -> str | None:
    """Return the V2 datatype for a NumPy-style dtype name (`float32`, TensorFlow's `string`).

    Frameworks that name their dtypes like NumPy (torch, TensorFlow) share this one table;
    None means the dtype has no V2 datatype (bfloat16, complex, ...).
    """
    if dtype_name == "string":
        return "BYTES"
    try:
        dtype = np.dtype(dtype_name)
    except TypeError:
        return None
    return _BY_KIND_SIZE.get((dtype.kind, dtype.itemsize)) if dtype.kind in "biuf" else None


def as_array(data: Any, datatype: str, name: str) -> np.ndarray[Any, Any]:
    """Convert JSON `data` (flat or nested) to an array of `datatype`, refusing lossy input.

    Raises:
        InvalidInputError: the values do not fit the datatype (text for a number, 1.5 for INT32).
    """
    dtype = numpy_dtype(datatype)
    if dtype.kind == "O":
        return _bytes_array(data, name)
    try:
        raw = np.asarray(data)
    except ValueError as exc:  # ragged nesting
        raise InvalidInputError(f"input '{name}': data is not a regular array ({exc})") from None
    if raw.dtype.kind == "b" and dtype.kind != "b" and raw.size:
        raise InvalidInputError(f"input '{name}': boolean data for datatype {datatype}")
    if raw.dtype.kind not in "biuf" and raw.size:
        raise InvalidInputError(f"input '{name}': non-numeric data for datatype {datatype}")
    if dtype.kind == "b" and raw.dtype.kind != "b" and raw.size:
        raise InvalidInputError(f"input '{name}': datatype BOOL needs true/false values")
    if dtype.kind not in "iu":
        return raw.astype(dtype, copy=False)  # floats and booleans: numpy's cast is exact enough
    return _integers(data, raw, dtype, datatype, name)


def _integers(
    data: Any, raw: np.ndarray[Any, Any], dtype: np.dtype[Any], datatype: str, name: str
) -> np.ndarray[Any, Any]:
    """Cast to an integer datatype, refusing fractions and values out of range."""
    if raw.dtype.kind == "f" and raw.size:
        # numpy reads a mix such as [0, 2**63] as floats; only Python ints may pass
        values = np.asarray(data, dtype=object).reshape(-1)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise InvalidInputError(f"input '{name}': non-integer data for datatype {datatype}")
        try:
            return np.asarray(data, dtype=dtype)
        except OverflowError as exc:
            raise InvalidInputError(f"input '{name}': data out of range for {datatype}") from exc
    try:
        out = raw.astype(dtype, copy=False)
    except (OverflowError, ValueError) as exc:
        raise InvalidInputError(f"input '{name}': data out of range for {datatype}") from exc
    if raw.size and not np.array_equal(out, raw):
        raise InvalidInputError(f"input '{name}': data out of range for {datatype}")
    return out


def _bytes_array(data: Any, name: str) -> np.ndarray[Any, Any]:
    flat: list[Any] = []
    _flatten_bytes(data, flat, name)
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out


def _flatten_bytes(data: Any, out: list[Any], name: str) -> None:
    if isinstance(data, list):
        for item in data:
            _flatten_bytes(item, out, name)
    elif isinstance(data, str | bytes):
        out.append(data)
    else:
        raise InvalidInputError(f"input '{name}': datatype BYTES needs strings")
