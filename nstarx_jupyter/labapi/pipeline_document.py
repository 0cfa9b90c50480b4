"""The lab's pipeline document: palette, checks, test runs, versions and deploys, on `editing`.

The same logic as the notebook's `FlowEditor` (`nstarx_jupyter.notebook.editing`), asked over
REST instead of through widget traits and commands.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import InvalidInputError
from nstarx_jupyter.labapi.models import (
    PipelineCheck,
    PipelineCheckResult,
    PipelineDeployed,
    PipelineLibrary,
    PipelineLoaded,
    PipelineRun,
    PipelineSave,
    PipelineSaved,
    PipelineVersion,
)
from nstarx_jupyter.notebook import editing
from nstarx_jupyter.notebook.pipeline import KernelModels, Pipeline
from nstarx_jupyter.security import key_prefix

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from nstarx_jupyter.deployment.local import LocalBackend
    from nstarx_jupyter.registry import Registry

__all__ = ["MODEL_CHECK_TTL_S", "PipelineService"]

MODEL_CHECK_TTL_S = 10.0
"""How long a model node's existence is believed (asking the registry takes a while)."""


class PipelineService:
    """Pipelines for the lab document; test runs share one set of models loaded here."""

    def __init__(
        self,
        backend: LocalBackend,
        registry: Callable[[], Registry],
        registry_lock: threading.RLock,
    ) -> None:
        self.backend = backend
        self._registry = registry
        self._lock = registry_lock
        self._models: KernelModels | None = None
        self._known: dict[str, tuple[float, bool | None]] = {}

    def library(self) -> PipelineLibrary:
        """The palette and the port rules, as `FlowEditor` sends them."""
        return PipelineLibrary(library=editing.plain(editing.library()), kinds=editing.kinds(),
                               port_rules=editing.port_rules())  # fmt: skip

    def check(self, request: PipelineCheck) -> PipelineCheckResult:
        """Every problem of the spec and the ports of nodes whose config changes them."""
        pipeline = self._pipeline(request.spec)
        with self._lock:
            problems, ports = editing.check(pipeline.spec, self._model_exists)
        return PipelineCheckResult(problems=editing.plain(problems), node_ports=ports)

    def run(self, request: PipelineRun) -> dict[str, Any]:
        """A test run here: the output and each node's run, or the error and its node."""
        pipeline = self._pipeline(request.spec)
        with self._lock:
            return editing.run_result(pipeline, request.sample)

    def versions(self, name: str) -> list[PipelineVersion]:
        """The saved versions of pipeline `name`, newest first (none when never saved)."""
        with self._lock:
            saved = editing.versions(self._registry(), name)
        return [PipelineVersion.model_validate(version) for version in saved]

    def save(self, name: str, request: PipelineSave) -> PipelineSaved:
        """Save the spec as the next version of pipeline `name`."""
        pipeline = self._pipeline(request.spec)
        if pipeline.spec.name != name:
            raise InvalidInputError(
                f"spec.name: the spec is named '{pipeline.spec.name}', the URL '{name}'"
            )
        with self._lock:
            version = pipeline.save(request.message)
        return PipelineSaved(name=name, version=version)

    def load(self, name: str, version: int) -> PipelineLoaded:
        """A saved version's spec."""
        with self._lock:
            loaded = Pipeline.load(name, version, registry=self._registry())
        return PipelineLoaded(version=version, spec=loaded.spec.model_dump(mode="json"))

    def deploy(self, request: PipelineRun) -> PipelineDeployed:
        """Serve the pipeline on the local server; the answer names its key by prefix only."""
        pipeline = self._pipeline(request.spec)
        deployed = pipeline.deploy(backend=self.backend)
        prefix = key_prefix(deployed.api_key) if deployed.api_key else None
        return PipelineDeployed(name=deployed.name, url=deployed.url, key_prefix=prefix,
                                curl=deployed.curl(request.sample or None))  # fmt: skip

    def close(self) -> None:
        """Unload the models test runs loaded."""
        with self._lock:
            if self._models is not None:
                self._models.close()
                self._models = None

    def _pipeline(self, spec: dict[str, Any]) -> Pipeline:
        """The spec as a `Pipeline` on the shared models (`InvalidInputError` when malformed)."""
        pipeline = Pipeline(spec, registry=self._registry())
        pipeline.models = self._kernel_models()
        return pipeline

    def _kernel_models(self) -> KernelModels:
        with self._lock:
            if self._models is None:
                self._models = KernelModels(self._registry())
            return self._models

    def _model_exists(self, uri: str) -> bool | None:
        """Whether a model node's model exists, asked again after `MODEL_CHECK_TTL_S`."""
        now = time.monotonic()
        known = self._known.get(uri)
        if known is None or now - known[0] > MODEL_CHECK_TTL_S:
            known = (now, self._kernel_models().exists(uri))
            self._known[uri] = known
        return known[1]
