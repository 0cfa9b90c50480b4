"""The bundle's runner (`run.py`): predictions from `model.onnx` with onnxruntime and NumPy only.

Copied as it is into every bundle `nstarx export` writes; it imports nothing of nstarx, so a
device needs `pip install onnxruntime numpy` and this folder. Usage::

    python run.py rows.json            # a list of records or of lists, {"instances": [...]}
    python run.py rows.csv             # a header row naming the features
    cat rows.json | python run.py -    # JSON on standard input

Prints one JSON object per row: each output of the model for that row (a class index mapped
to its label when `signature.json` names the labels).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


def read_rows(text: str, *, is_csv: bool) -> list[Any]:
    """Rows from CSV text (records keyed by the header) or JSON (records, lists, instances)."""
    if is_csv:
        return [dict(row) for row in csv.DictReader(io.StringIO(text))]
    doc = json.loads(text)
    if isinstance(doc, dict):
        doc = doc.get("instances", [doc])
    if not isinstance(doc, list):
        raise SystemExit("rows: give a JSON list of records or lists, or a CSV file")
    return doc


def feed(session: Any, rows: list[Any], features: list[str]) -> dict[str, Any]:
    """The session's inputs for `rows`: one matrix in feature order, or one column per input."""
    inputs = session.get_inputs()
    if len(inputs) == 1:
        first = inputs[0]
        matrix = [_values(row, features) for row in rows]
        return {first.name: np.asarray(matrix, dtype=DTYPES.get(first.type, np.float32))}
    return {
        spec.name: np.asarray(
            [[row[spec.name]] for row in rows], dtype=DTYPES.get(spec.type, np.float32)
        )
        for spec in inputs
    }


def _values(row: Any, features: list[str]) -> list[Any]:
    if not isinstance(row, dict):
        return list(row)
    missing = [name for name in features if name not in row]
    if missing:
        raise SystemExit(f"a row lacks {', '.join(missing)}: {row}")
    return [row[name] for name in features] if features else list(row.values())


def answer(names: list[str], values: list[Any], labels: list[Any] | None) -> list[dict[str, Any]]:
    """One dict per row: each output's value, a class index replaced by its label."""
    rows = []
    for i in range(len(values[0])):
        row = {}
        for name, value in zip(names, values, strict=True):
            item = value[i].tolist() if hasattr(value[i], "tolist") else value[i]
            if labels and name == "label" and isinstance(item, int) and 0 <= item < len(labels):
                item = labels[item]
            row[name] = item
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Read the rows, run the model once over all of them and print the answers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", help="a .json or .csv file, or - for JSON on standard input")
    parser.add_argument("--model", default=str(HERE / "model.onnx"))
    parser.add_argument("--signature", default=str(HERE / "signature.json"))
    args = parser.parse_args(argv)
    text = sys.stdin.read() if args.rows == "-" else Path(args.rows).read_text()
    rows = read_rows(text, is_csv=args.rows.endswith(".csv"))
    if not rows:
        return 0
    signature_file = Path(args.signature)
    signature = json.loads(signature_file.read_text()) if signature_file.is_file() else {}
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    values = session.run(names, feed(session, rows, list(signature.get("feature_names") or [])))
    for row in answer(names, values, signature.get("class_labels")):
        sys.stdout.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
