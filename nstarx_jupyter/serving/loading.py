"""Loading a model's runtime from its URI or settings, and refusing files that run code on load.

Apart from the repository (which schedules loads) so the isolated worker process, which loads
its one model with the same rules, imports it without importing the repository.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nstarx_jupyter.errors import ForbiddenError, InvalidInputError, ModelLoadError, NstarxError
from nstarx_jupyter.model_uri import ModelUri
from nstarx_jupyter.registry import Registry, mlflow_runtime
from nstarx_jupyter.runtimes import create_runtime
from nstarx_jupyter.runtimes.loader import infer_runtime, runtime_class
from nstarx_jupyter.serving.settings import ModelSettings, file_settings
from nstarx_jupyter.serving.trust import check_path_text

if TYPE_CHECKING:
    from pathlib import Path

    from nstarx_jupyter.protocol.signature import ModelSignature
    from nstarx_jupyter.runtimes.base import Runtime

__all__ = ["check_trusted", "load_runtime", "settings_for_uri"]


def settings_for_uri(name: str, uri: str) -> ModelSettings:
    """How to serve the model `uri` names (`models:/...`, `file:///...`) under `name`.

    What a pipeline's model node loads, on the server and in a kernel alike: `load_runtime`
    then loads it. A folder's `model-settings.json` counts, as for `nstarx serve --model`.

    Raises:
        InvalidInputError: `uri` is malformed, names a missing file, or is not a model to load
            (a deployment is called, not loaded; remote storage is a cluster's).
    """
    found = ModelUri.parse(uri)
    if found.is_registry:
        return ModelSettings(name=name, storage_uri=uri)
    if found.is_file_url:
        # `..` folded on the text, as the control API checked it against the allowed folders
        path = check_path_text(found.path)
        if not path.exists():
            raise InvalidInputError(f"model '{uri}': no such file or folder")
        return ModelSettings.build(**{**file_settings(path), "name": name, "path": path})
    raise InvalidInputError(
        f"model '{uri}': use models:/NAME/VERSION, file:///path or deployment:NAME"
    )


def load_runtime(
    settings: ModelSettings, registry: Registry | None = None
) -> tuple[Runtime, ModelSignature]:
    """Create and load the runtime `settings` name; returns it with its signature.

    A registry version is fetched from `registry` (the default one when None).
    """
    path, name, options = settings.path, settings.runtime, settings.options
    if settings.storage_uri is not None:
        local = (registry or Registry()).local_model(settings.storage_uri)
        path, name, options = local.path, name or local.runtime, {**local.options, **options}
    elif path is not None and name is None and (path / "MLmodel").is_file():
        # An MLflow model folder (what KServe's storage initializer puts in /mnt/models).
        name, path, implied = mlflow_runtime(path)
        options = {**implied, **options}
    runtime = create_runtime(path, name, options)
    if not settings.trusted and path is not None:
        _refuse_code(settings.name, type(runtime), path)
    try:
        runtime.load()
        return runtime, runtime.metadata()
    except NstarxError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"model '{settings.name}' failed to load: {exc}") from exc


def check_trusted(settings: ModelSettings) -> None:
    """Refuse, before loading, an untrusted model file whose format runs code on load.

    A registry version is checked when it loads (it is downloaded then).

    Raises:
        ForbiddenError: the file runs code on load and the settings are not `trusted`.
        ModelLoadError: no runtime recognises the file.
    """
    path, name, options = settings.path, settings.runtime, settings.options
    if settings.trusted or path is None:
        return
    if name is None and (path / "MLmodel").is_file():
        name, path, implied = mlflow_runtime(path)
        options = {**implied, **options}
    runtime = runtime_class(name or infer_runtime(path))
    _refuse_code(settings.name, runtime, path)
    runtime.check_artifact(path, options)


def _refuse_code(model: str, runtime: type[Runtime], path: Path) -> None:
    if runtime.runs_code_on_load(path):
        raise ForbiddenError(
            f"model '{model}': its {runtime.runtime_name} artifact runs code when it loads "
            "(pickle, joblib, TorchScript, SavedModel); only a trusted model may be such a file: "
            "the admin's `trusted: true`, or `nstarx serve --model`. Save it with skops, ONNX "
            "or the framework's own format instead"
        )
