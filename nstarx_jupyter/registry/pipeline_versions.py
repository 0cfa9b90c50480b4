"""Pipeline versions in the model registry: each save is a version with a message and an author.

A pipeline is a registered model tagged `nstarx.kind=pipeline` whose versions hold the spec's
JSON text as an artifact (`pipeline.json`) of their run; the message is the version's
description. So pipelines live wherever the models do (the SQLite file under `$NSTARX_HOME`, or
a team's MLflow server) and MLflow's own UI lists them. The registry keeps the text as it is:
parsing it into a `PipelineSpec` is the caller's business (the pipelines layer sits beside this
one, not below it).
"""

from __future__ import annotations

import contextlib
import getpass
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import ConflictError, NotFoundError
from nstarx_jupyter.registry.catalog import KIND_TAG, Registry, _time
from nstarx_jupyter.registry.mlflow_support import is_missing, load_mlflow
from nstarx_jupyter.registry.names import check_name

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["KIND_TAG", "PIPELINE", "PipelineStore", "PipelineVersion"]

PIPELINE = "pipeline"
AUTHOR_TAG = "nstarx.author"
FILE = "pipeline.json"


@dataclass(frozen=True)
class PipelineVersion:
    """One saved version of a pipeline (`text` is its spec as JSON)."""

    name: str
    version: int
    message: str
    author: str
    created: datetime
    text: str | None = None


class PipelineStore:
    """Save, list and load pipeline versions in a `Registry`."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry or Registry()

    def save(
        self, name: str, text: str, *, message: str = "", author: str | None = None
    ) -> PipelineVersion:
        """Store `text` as the next version of pipeline `name`."""
        check_name(name)
        registry = self.registry
        client = registry.client
        mlflow = load_mlflow()
        self._claim(name)
        author = author or _user()
        with registry._fluent():  # the registry's plumbing, same package
            nested = mlflow.active_run() is not None
            with mlflow.start_run(experiment_id=registry._experiment_id(), nested=nested,
                                  run_name=f"pipeline {name}") as run:  # fmt: skip
                mlflow.log_text(text, FILE)
            version = client.create_model_version(
                name,
                source=f"{run.info.artifact_uri}/{FILE}",
                run_id=run.info.run_id,
                tags={AUTHOR_TAG: author},
                description=message,
            )
        return PipelineVersion(name, int(version.version), message, author,
                               _time(version.creation_timestamp), text)  # fmt: skip

    def versions(self, name: str) -> list[PipelineVersion]:
        """Every version of `name`, newest first (without their text)."""
        self._pipeline(name)
        found = self.registry.client.search_model_versions(f"name = '{name}'", max_results=1000)
        return sorted((_version(item) for item in found), key=lambda v: -v.version)

    def load(self, name: str, version: int | str | None = None) -> PipelineVersion:
        """One version with its text (the latest when `version` is None)."""
        versions = self.versions(name)
        if not versions:
            raise NotFoundError(f"pipeline '{name}' has no versions")
        wanted = versions[0].version if version is None else int(version)
        chosen = next((v for v in versions if v.version == wanted), None)
        if chosen is None:
            raise NotFoundError(f"pipeline '{name}' has no version {version}")
        item = self.registry.client.get_model_version(name, str(chosen.version))
        with self.registry._fluent():
            text = load_mlflow().artifacts.load_text(item.source)
        return PipelineVersion(chosen.name, chosen.version, chosen.message, chosen.author,
                               chosen.created, text)  # fmt: skip

    def names(self) -> list[str]:
        """The names of every pipeline in the registry."""
        found = self.registry.client.search_registered_models(
            filter_string=f"tags.`{KIND_TAG}` = '{PIPELINE}'", max_results=1000
        )
        return sorted(model.name for model in found)

    def _pipeline(self, name: str) -> Any:
        check_name(name)
        try:
            model = self.registry.client.get_registered_model(name)
        except Exception as exc:
            if is_missing(exc):
                raise NotFoundError(f"no pipeline '{name}'") from exc
            raise
        if (model.tags or {}).get(KIND_TAG) != PIPELINE:
            raise NotFoundError(f"'{name}' is a model, not a pipeline")
        return model

    def _claim(self, name: str) -> None:
        """Create the registered model for a new pipeline; refuse a name a model already has."""
        client = self.registry.client
        try:
            model = client.get_registered_model(name)
        except Exception as exc:
            if not is_missing(exc):
                raise
            with contextlib.suppress(Exception):  # created meanwhile by another process
                client.create_registered_model(name, tags={KIND_TAG: PIPELINE})
            model = client.get_registered_model(name)
        if (model.tags or {}).get(KIND_TAG) != PIPELINE:
            raise ConflictError(
                f"'{name}' is already a registered model; name the pipeline otherwise"
            )


def _version(item: Any) -> PipelineVersion:
    tags = dict(item.tags or {})
    return PipelineVersion(item.name, int(item.version), item.description or "",
                           tags.get(AUTHOR_TAG, ""), _time(item.creation_timestamp))  # fmt: skip


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a container without /etc/passwd entry
        return "unknown"
