"""`export_model`: a registered, deployed or saved model to an ONNX bundle with its report."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from nstarx_jupyter.deployment.export.bundle import ExportReport, export_runtime
from nstarx_jupyter.errors import InvalidInputError, NstarxError
from nstarx_jupyter.model_uri import ModelUri, is_registry_uri
from nstarx_jupyter.registry import Registry, parse_model_uri
from nstarx_jupyter.runtimes.loader import create_runtime

__all__ = ["export_model", "read_sample", "report_lines", "resolve_export_source", "run_export"]

SETTINGS_FILE = "model-settings.json"
"""A model folder's settings, as the server reads them (`nstarx_jupyter.serving.settings`)."""
RANDOM_ROWS = 256
"""Rows drawn (standard normal, seeded) when neither a sample nor a registry sample exists."""


def export_model(
    source: str, out: str | Path | None = None, *, quantize: str | None = None, sample: Any = None
) -> ExportReport:
    """Export `source` (a model file, `models:/NAME/V`, a deployment or registered name).

    The comparison runs on `sample` (rows, a DataFrame, a .csv/.json file), else the sample
    the registry kept at registration, else seeded random rows (said in the signature).
    """
    path, runtime_name, options, uri = resolve_export_source(source)
    runtime = create_runtime(path, runtime_name, options)
    runtime.load()
    rows = read_sample(sample) if sample is not None else _registry_sample(uri)
    if rows is None:
        width = runtime.metadata().inputs[0].shape[-1]
        if width < 1:
            raise InvalidInputError(f"{source}: pass a sample (its input width is unknown)")
        rows = np.random.default_rng(0).standard_normal((RANDOM_ROWS, width))
    name = Path(source).stem if uri is None else uri.split("/")[1].split("@")[0]
    target = Path(out) if out is not None else Path.cwd() / f"{name}-onnx"
    return export_runtime(runtime, rows, target, quantize=quantize, name=name)


def read_sample(sample: Any) -> np.ndarray[Any, Any]:
    """Rows as a float matrix: a DataFrame, records, lists, or a .csv / .json file."""
    if isinstance(sample, str | Path) and Path(sample).is_file():
        file = Path(sample)
        if file.suffix == ".csv":
            return np.loadtxt(file, delimiter=",", skiprows=1, ndmin=2)
        sample = json.loads(file.read_text())
    if hasattr(sample, "to_numpy"):
        return np.asarray(sample.to_numpy(), dtype=np.float64)
    if isinstance(sample, list) and sample and isinstance(sample[0], dict):
        return np.asarray([list(row.values()) for row in sample], dtype=np.float64)
    return np.asarray(sample, dtype=np.float64)


def resolve_export_source(source: str) -> tuple[Path, str | None, dict[str, Any], str | None]:
    """The artifact, runtime and options behind a file, registry URI, deployment or model name.

    Also the registry URI when there is one (None for a file). A folder's `model-settings.json`
    names its runtime and options, as when the server loads it (a fitted Keras model's staged
    folder holds its signature there).
    """
    named = ModelUri.parse(source)
    if named.is_local and named.local_path().exists():
        return (*_folder_settings(named.local_path()), None)
    uri = source if named.is_registry else _deployed_uri(source)
    if uri is not None and not is_registry_uri(uri):
        return (*_folder_settings(ModelUri.parse(uri).local_path()), None)

    registry = Registry()
    if uri is None:
        uri = registry.get(source).uri  # the latest version
    local = registry.local_model(uri)
    return local.path, local.runtime, dict(local.options), uri


def _folder_settings(path: Path) -> tuple[Path, str | None, dict[str, Any]]:
    """`path` with the runtime and options its folder's `model-settings.json` gives, if any."""
    file = path / SETTINGS_FILE
    if not file.is_file():
        return path, None, {}
    try:
        fields = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{file}: {exc}") from None
    if not isinstance(fields, dict) or not isinstance(fields.get("options", {}), dict):
        raise InvalidInputError(f"{file}: a JSON object whose options are an object")
    runtime = fields.get("runtime")
    return path, runtime if isinstance(runtime, str) else None, dict(fields.get("options", {}))


def _deployed_uri(name: str) -> str | None:
    """The storage URI a running local server serves `name` from, or None."""
    from nstarx_jupyter.deployment.local import LocalBackend

    backend = LocalBackend()
    try:
        if backend.running() is None:
            return None
        return backend.describe(name).spec.storage_uri
    except NstarxError:
        return None
    finally:
        backend.close()


def _registry_sample(uri: str | None) -> np.ndarray[Any, Any] | None:
    if uri is None:
        return None

    name, version, _ = parse_model_uri(uri)
    stats = Registry().reference_stats(name, version)
    columns = (stats or {}).get("sample", {}).get("columns")
    if not columns:
        return None
    return np.asarray(list(columns.values()), dtype=np.float64).T


def report_lines(report: ExportReport) -> list[str]:
    """The bundle's folder and the comparison as a text table (what `nstarx export` prints)."""
    lines = [
        f"bundle: {report.bundle}",
        f"{'variant':<10} {'bytes':>8} {'agree':>6} {'max|diff|':>10} {'ms':>8} {'speedup':>7}",
    ]
    for row in report.rows:
        size = "-" if row["size_bytes"] is None else str(row["size_bytes"])
        diff = "-" if row["max_abs_diff"] is None else f"{row['max_abs_diff']:.2g}"
        lines.append(
            f"{row['variant']:<10} {size:>8} {row['agreement']:>6.3f} {diff:>10} "
            f"{row['batch_ms']:>8.3f} {row['speedup']:>7.2f}"
        )
    return lines


def run_export(source: str, out: Path | None, quantize: str | None, sample: Path | None) -> int:
    """`nstarx export`: write the bundle and print the comparison."""
    report = export_model(source, out, quantize=quantize, sample=sample)
    sys.stdout.write("\n".join(report_lines(report)) + "\n")
    return 0
