"""The model catalog on MLflow's model registry: register, list, tag, alias, download, resolve."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.config import nstarx_home
from nstarx_jupyter.errors import (
    InvalidInputError,
    ModelLoadError,
    NotFoundError,
    NstarxError,
    UnavailableError,
    require,
)
from nstarx_jupyter.model_uri import registry_uri
from nstarx_jupyter.registry.flavors import flavor_of
from nstarx_jupyter.registry.mlflow_support import (
    feature_names,
    head,
    infer_signature,
    is_missing,
    load_mlflow,
    mlflow_runtime,
    pinned_requirements,
)
from nstarx_jupyter.registry.names import MODEL_NAME, check_name, parse_model_uri

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    import pandas as pd

__all__ = [
    "MODEL_NAME",
    "LocalModel",
    "ModelVersion",
    "Registry",
    "parse_model_uri",
]

EXPERIMENT = "nstarx-registry"
"""The MLflow experiment that holds the runs `register` creates."""
STATS_FILE = "reference_stats.json"
FLAVOR_TAG = "nstarx.flavor"
KIND_TAG = "nstarx.kind"
"""Tag on a registered model that is not a model (`pipeline`: see `registry.pipeline_versions`)."""
_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
_FLUENT_LOCK = threading.RLock()
"""Held for every block that points MLflow's fluent API at a registry (see `Registry._fluent`)."""


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One registered version of a model."""

    name: str
    version: str
    uri: str
    """`models:/name/version`: what `deploy()` and `nstarx serve --model` accept."""
    created: datetime
    flavor: str | None = None
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    run_id: str | None = None
    source: str = ""
    status: str = "READY"


@dataclass(frozen=True, slots=True)
class LocalModel:
    """A registry version downloaded for serving: the runtime to use and its artifact."""

    version: ModelVersion
    runtime: str
    path: Path
    options: dict[str, Any] = field(default_factory=dict)
    """Runtime options the MLflow model implies (the skops types it trusts)."""


def default_store() -> Path:
    """The default registry's SQLite file; its artifacts and lock file sit beside it."""
    return nstarx_home() / "mlflow" / "mlflow.db"


class Registry:
    """MLflow's model registry, on a SQLite file under `$NSTARX_HOME` unless told otherwise.

    `tracking_uri` (or `$MLFLOW_TRACKING_URI`) points at any MLflow store or server; the default
    needs no server. Nothing here changes MLflow's process-wide settings for the user's own code.
    """

    def __init__(self, tracking_uri: str | None = None, *, registry_uri: str | None = None) -> None:
        store = default_store()
        self.tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
        self._artifact_root: str | None = None
        if not self.tracking_uri:
            store.parent.mkdir(parents=True, exist_ok=True)
            self.tracking_uri = f"sqlite:///{store}"
            self._artifact_root = (store.parent / "artifacts").as_uri()
        self.registry_uri = (
            registry_uri or os.environ.get("MLFLOW_REGISTRY_URI") or self.tracking_uri
        )
        self._cache = nstarx_home() / "cache" / "models"
        self._client: Any = None

    def __repr__(self) -> str:
        return f"Registry(tracking_uri={self.tracking_uri!r})"

    # -- registering -------------------------------------------------------------------------

    def register(
        self,
        model: Any,
        name: str,
        *,
        input_example: Any = None,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
        reference_data: Any = None,
    ) -> ModelVersion:
        """Log `model` with its framework's flavour and register it as a new version of `name`.

        The signature is inferred from `input_example` (or else `reference_data`) and the
        model's predictions on it. `reference_data` (the training features) is summarised
        (`registry.reference_stats(...)`) for drift checks; the data itself is not stored.
        """
        check_name(name)
        flavor = flavor_of(model)
        mlflow = load_mlflow()
        module = require(flavor.module, "mlflow")
        sample = input_example if input_example is not None else head(reference_data)
        signature = infer_signature(mlflow, model, sample)
        client = self.client
        with self._fluent():
            nested = mlflow.active_run() is not None  # the user's own run stays theirs
            with mlflow.start_run(experiment_id=self._experiment_id(), nested=nested) as run:
                module.log_model(
                    **flavor.log_kwargs(model),
                    name="model",
                    signature=signature,
                    input_example=head(input_example),
                    pip_requirements=pinned_requirements(module),
                )
                if reference_data is not None:
                    from nstarx_jupyter.registry.stats import summarize  # NumPy, on demand

                    names = feature_names(model, reference_data)
                    mlflow.log_dict(summarize(reference_data, names), STATS_FILE)
                logged = mlflow.last_logged_model()
            try:
                client.get_registered_model(name)
            except Exception:  # noqa: BLE001 - MLflow raises its own RestException for "not found"
                with contextlib.suppress(Exception):  # created meanwhile by another process
                    client.create_registered_model(name, description=description or "")
            # Inside the block: MLflow resolves the logged model through the global store.
            version = client.create_model_version(
                name,
                source=logged.model_uri,
                run_id=run.info.run_id,
                tags={FLAVOR_TAG: flavor.name, **dict(tags or {})},
                description=description or "",
                model_id=logged.model_id,
            )
        return self.get(name, str(version.version))

    # -- the catalog ---------------------------------------------------------------------------

    def models(self) -> pd.DataFrame:
        """One row per registered model: name, latest version, aliases, tags, description, dates."""
        pd = require("pandas", "mlflow")
        rows = []
        for model in self.client.search_registered_models(max_results=1000):
            if (model.tags or {}).get(KIND_TAG) == "pipeline":
                continue  # pipelines are listed by PipelineStore
            latest = max((int(v.version) for v in model.latest_versions or ()), default=None)
            rows.append({
                "name": model.name,
                "latest_version": str(latest) if latest is not None else None,
                "aliases": dict(model.aliases or {}),
                "tags": dict(model.tags or {}),
                "description": model.description or "",
                "created": _time(model.creation_timestamp),
                "updated": _time(model.last_updated_timestamp),
            })  # fmt: skip
        columns = ["name", "latest_version", "aliases", "tags", "description", "created", "updated"]
        return pd.DataFrame(rows, columns=columns)

    def versions(self, name: str) -> pd.DataFrame:
        """One row per version of `name`, newest first."""
        pd = require("pandas", "mlflow")
        model = self._registered(name)
        # search_model_versions leaves each version's aliases empty; the model holds them.
        aliases: dict[str, list[str]] = {}
        for alias, number in (model.aliases or {}).items():
            aliases.setdefault(str(number), []).append(alias)
        found = self.client.search_model_versions(f"name = '{name}'", max_results=1000)
        rows = []
        for item in sorted(found, key=lambda v: -int(v.version)):
            version = self._version(item)
            rows.append({
                "version": version.version, "uri": version.uri, "flavor": version.flavor,
                "aliases": sorted(aliases.get(version.version, ())), "tags": version.tags,
                "description": version.description, "status": version.status,
                "created": version.created, "run_id": version.run_id,
            })  # fmt: skip
        columns = ["version", "uri", "flavor", "aliases", "tags", "description", "status",
                   "created", "run_id"]  # fmt: skip
        return pd.DataFrame(rows, columns=columns)

    def get(
        self, name: str, version: str | int | None = None, *, alias: str | None = None
    ) -> ModelVersion:
        """Return one version: by number, by alias, or the latest when neither is given."""
        self._registered(name)
        client = self.client
        try:
            if alias is not None:
                found = client.get_model_version_by_alias(name, alias)
            elif version is not None:
                found = client.get_model_version(name, str(version))
            else:
                found = max(client.search_model_versions(f"name = '{name}'"),
                            key=lambda v: int(v.version), default=None)  # fmt: skip
                if found is None:
                    raise NotFoundError(f"model '{name}' has no versions")
        except NstarxError:
            raise
        except Exception as exc:
            if not is_missing(exc):
                raise UnavailableError(
                    f"the registry at {self.tracking_uri} failed: {exc}"
                ) from exc
            what = f"alias '{alias}'" if alias is not None else f"version {version}"
            raise NotFoundError(f"model '{name}' has no {what}") from exc
        return self._version(found)

    def resolve(self, uri: str) -> ModelVersion:
        """Return the version a `models:/name/version` or `models:/name@alias` URI names."""
        name, version, alias = parse_model_uri(uri)
        return self.get(name, version, alias=alias)

    def signature(
        self, name: str, version: str | int | None = None, *, alias: str | None = None
    ) -> dict[str, Any] | None:
        """The signature MLflow stored with a version: `{"inputs": [...], "outputs": [...]}`."""
        found = self.get(name, version, alias=alias)
        with self._fluent():
            info = load_mlflow().models.get_model_info(registry_uri(found.name, found.version))
        raw = info.signature
        if raw is None:
            return None
        return {"inputs": raw.inputs.to_dict() if raw.inputs else None,
                "outputs": raw.outputs.to_dict() if raw.outputs else None}  # fmt: skip

    def artifact_uri(self, uri: str) -> str:
        """Where a version's files live in the artifact store (what a cluster would fetch)."""
        found = self.resolve(uri)
        return str(self.client.get_model_version_download_uri(found.name, found.version))

    def set_tags(
        self, name: str, tags: Mapping[str, str], version: str | int | None = None
    ) -> None:
        """Set tags on a model, or on one of its versions when `version` is given."""
        if version is None:
            self._registered(name)
            for key, value in tags.items():
                self.client.set_registered_model_tag(name, key, str(value))
            return
        number = self.get(name, version).version  # looked up once, not once per tag
        for key, value in tags.items():
            self.client.set_model_version_tag(name, number, key, str(value))

    def delete_tag(self, name: str, key: str, version: str | int | None = None) -> None:
        """Remove a tag from a model or one of its versions."""
        if version is None:
            self._registered(name)
            self.client.delete_registered_model_tag(name, key)
        else:
            self.client.delete_model_version_tag(name, self.get(name, version).version, key)

    def set_description(self, name: str, text: str, version: str | int | None = None) -> None:
        """Replace the description of a model or of one of its versions."""
        if version is None:
            self._registered(name)
            self.client.update_registered_model(name, description=text)
        else:
            self.client.update_model_version(name, self.get(name, version).version, text)

    def set_alias(self, name: str, alias: str, version: str | int) -> None:
        """Point `alias` (`champion`, `challenger`...) at a version; it moves if already set."""
        # MLflow reserves `latest` and v<digits> (they would shadow version numbers).
        reserved = alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias)
        if reserved or not re.fullmatch(r"[A-Za-z_][\w-]{0,254}", alias):
            raise InvalidInputError(f"'{alias}' is not a valid alias: use a word such as champion")
        self.client.set_registered_model_alias(name, alias, self.get(name, version).version)

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove an alias."""
        self.get(name, alias=alias)
        self.client.delete_registered_model_alias(name, alias)

    def reference_stats(self, name: str, version: str | int | None = None) -> dict[str, Any] | None:
        """The training-data summary stored at registration, or None when none was given."""
        found = self.get(name, version)
        if found.run_id is None:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = self.client.download_artifacts(found.run_id, STATS_FILE, tmp)
            except Exception:  # noqa: BLE001 - MLflow raises OSError or its own for a missing file
                return None
            data: dict[str, Any] = json.loads(Path(path).read_text())
            return data

    def download(self, name: str, version: str | int | None = None, dst: str | Path | None = None,
                 *, alias: str | None = None, progress: bool = True) -> Path:  # fmt: skip
        """Copy a version's model folder (MLmodel and artifacts) to `dst` (a new temp folder).

        `progress=False` hides MLflow's "Downloading artifacts" bar (a step inside another
        operation that reports its own progress, such as a deploy's upload).
        """
        found = self.get(name, version, alias=alias)
        target = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix=f"{name}-"))
        target.mkdir(parents=True, exist_ok=True)
        with self._fluent():  # holds the process-wide lock: the variable is ours for the block
            bar = os.environ.get(_PROGRESS_BAR)
            if not progress:
                os.environ[_PROGRESS_BAR] = "false"
            try:
                out = load_mlflow().artifacts.download_artifacts(
                    artifact_uri=registry_uri(found.name, found.version), dst_path=str(target)
                )
            finally:
                if bar is None:
                    os.environ.pop(_PROGRESS_BAR, None)
                else:
                    os.environ[_PROGRESS_BAR] = bar
        return Path(out)

    def local_model(self, uri: str) -> LocalModel:
        """Download (once; versions never change) and describe a version for a runtime to load.

        Raises:
            ModelLoadError: the version's flavour has no runtime here.
        """
        found = self.resolve(uri)
        folder = self._cache / _safe(found.name) / found.version
        if not (folder / "MLmodel").is_file():
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".download-", dir=folder.parent))
            try:
                fetched = self.download(found.name, found.version, staging)
                shutil.rmtree(folder, ignore_errors=True)
                fetched.replace(folder)  # whole or nothing: a crash leaves no half model
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        runtime, path, options = mlflow_runtime(folder)
        if not path.exists():
            raise ModelLoadError(f"{uri}: the MLflow model names {path.name}, which is missing")
        return LocalModel(found, runtime, path, options)

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The `mlflow.MlflowClient` on this registry's URIs."""
        if self._client is None:
            mlflow = load_mlflow()
            if self._artifact_root is None:  # someone else's store, set up by its owner
                self._client = mlflow.MlflowClient(self.tracking_uri, self.registry_uri)
                return self._client
            with _setting_up(default_store().with_name("setup.lock")):
                client = mlflow.MlflowClient(self.tracking_uri, self.registry_uri)
                client.search_experiments(max_results=1)
                client.search_registered_models(max_results=1)
            self._client = client
        return self._client

    def _registered(self, name: str) -> Any:
        """The registered model `name` (MLflow's entity); NotFoundError when there is none."""
        check_name(name)
        try:
            return self.client.get_registered_model(name)
        except Exception as exc:
            if is_missing(exc):
                raise NotFoundError(f"no registered model '{name}'") from exc
            raise UnavailableError(f"the registry at {self.tracking_uri} failed: {exc}") from exc

    def _experiment_id(self) -> str:
        client = self.client
        found = client.get_experiment_by_name(EXPERIMENT)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(client.create_experiment(EXPERIMENT, artifact_location=self._artifact_root))
        except Exception:  # noqa: BLE001 - created by a concurrent caller in between
            return str(client.get_experiment_by_name(EXPERIMENT).experiment_id)

    @contextlib.contextmanager
    def _fluent(self) -> Iterator[None]:
        """Point MLflow's fluent API at this registry for one block, then put it back.

        The tracking and registry URIs are process-wide in MLflow, while its active runs are
        per thread: two blocks at once (a registration behind `deploy()` and another one, in any
        thread) would each put back the URI the other one's run lives in, and MLflow then finds
        no such run ("Run with id=... not found"). One block at a time, process-wide.
        """
        mlflow = load_mlflow()
        with _FLUENT_LOCK:
            before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
            # set_tracking_uri also exports MLFLOW_TRACKING_URI. MLflow reads its own module
            # variable first, so the export serves only others: a child process (a server
            # started meanwhile) and a `Registry()` made in another thread, which would take
            # this registry's URI for the user's (a registration of another $NSTARX_HOME landed
            # in this one). Put the environment back at once, and again after.
            env = {key: os.environ.get(key) for key in _URI_VARIABLES}
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.registry_uri)
            _restore(env)
            try:
                yield
            finally:
                self._put_back(mlflow, before, env)

    @staticmethod
    def _put_back(mlflow: Any, before: tuple[str, str], env: dict[str, str | None]) -> None:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
        _restore(env)

    def _version(self, item: Any) -> ModelVersion:
        tags = dict(item.tags or {})
        flavor = tags.pop(FLAVOR_TAG, None)
        return ModelVersion(
            name=item.name,
            version=str(item.version),
            uri=registry_uri(item.name, item.version),
            created=_time(item.creation_timestamp),
            flavor=flavor,
            description=item.description or "",
            tags=tags,
            aliases=tuple(item.aliases or ()),
            run_id=item.run_id or None,
            source=item.source or "",
            status=str(item.status or "READY"),
        )


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name)


def _time(millis: int | None) -> datetime:
    return datetime.fromtimestamp((millis or 0) / 1000, tz=UTC)


def _restore(env: dict[str, str | None]) -> None:
    """Put environment variables back as `env` has them (None: unset)."""
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextlib.contextmanager
def _setting_up(lock: Path) -> Iterator[None]:
    """One process at a time opens the store.

    MLflow creates and migrates its tables on first use; two processes doing it at once (a
    kernel registering while the lab's server extension lists the catalog) fail halfway with
    alembic errors.
    """
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
