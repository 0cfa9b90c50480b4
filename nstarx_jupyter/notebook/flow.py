"""`FlowEditor`: the pipeline editor widget (anywidget + React Flow) and its Python half.

Python holds the state; the canvas renders it and edits it. Synced traits:

- `spec`: the `PipelineSpec` as a dict. Every canvas edit writes it; setting it (a dict, JSON
  text or a `PipelineSpec`) redraws the canvas. `editor.pipeline` is the same spec as a
  `Pipeline` (fit, run, save, deploy from code).
- `problems`: what `validate()` says about `spec`, recomputed on every change, each attached to
  a node or edge id; the canvas marks them. `node_ports`: the ports of the nodes whose ports
  depend on their config (a router's branches), by node id; the others have their library
  ports. There is no second copy of the rules in JavaScript: `port_rules` (which port types an
  input accepts) comes from `component.accepts` too.
- `library` and `kinds`: the palette (built-in and custom components, each with its config's
  JSON Schema, from which the properties panel builds its form).
- `sample`, `run_result`: the test run's input record and each node's output and latency.
- `versions`, `deployment`, `status`: the toolbar's save/load/deploy results.

The toolbar's actions are anywidget commands (`_run`, `_save`, `_load`, `_deploy`,
`_validate`): request and response, with errors answered as `{"error": ...}`. Their logic is
`notebook.editing`'s, which the lab's pipeline document uses too (through `labapi`).
"""

from __future__ import annotations

import json
import logging
import weakref
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.errors import NstarxError, require
from nstarx_jupyter.notebook import editing
from nstarx_jupyter.notebook.bundles import bundle
from nstarx_jupyter.notebook.pipeline import Pipeline
from nstarx_jupyter.pipelines import PipelineSpec
from nstarx_jupyter.pipelines.component import on_register
from nstarx_jupyter.security import key_prefix

if TYPE_CHECKING:
    import anywidget
    import traitlets
    from anywidget.experimental import command

    from nstarx_jupyter.deployment.local import LocalBackend
    from nstarx_jupyter.registry import Registry
else:
    anywidget = require("anywidget", "notebook")
    traitlets = require("traitlets", "notebook")
    command = require("anywidget.experimental", "notebook").command

__all__ = ["FlowEditor"]

log = logging.getLogger(__name__)

_EDITORS: weakref.WeakSet[FlowEditor] = weakref.WeakSet()


def _refresh_palettes() -> None:
    if not _EDITORS:
        return
    library = editing.library()
    for editor in list(_EDITORS):
        editor.library = library


on_register(_refresh_palettes)


class FlowEditor(anywidget.AnyWidget):
    """Design a pipeline on a canvas in the notebook (see the module's docstring)."""

    _esm, _css = bundle("flow")

    spec = traitlets.Dict().tag(sync=True)
    problems: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)
    node_ports = traitlets.Dict().tag(sync=True)
    library: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)
    kinds: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)
    port_rules = traitlets.Dict().tag(sync=True)
    sample = traitlets.Dict().tag(sync=True)
    run_result = traitlets.Dict().tag(sync=True)
    versions: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)
    deployment = traitlets.Dict().tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    height = traitlets.Int(600).tag(sync=True)

    def __init__(
        self,
        spec: PipelineSpec | Pipeline | dict[str, Any] | str | None = None,
        *,
        name: str | None = None,
        sample: dict[str, Any] | None = None,
        registry: Registry | None = None,
        backend: LocalBackend | None = None,
        height: int = 600,
    ) -> None:
        if isinstance(spec, Pipeline):
            pipeline = spec
        else:
            pipeline = Pipeline(spec, name=name, registry=registry)
        self.pipeline = pipeline
        self._backend = backend
        self._known_models: dict[str, bool | None] = {}
        super().__init__(
            spec=pipeline.spec.model_dump(mode="json"),
            library=editing.library(),
            kinds=editing.kinds(),
            port_rules=editing.port_rules(),
            sample=sample or {},
            height=height,
        )
        self.problems = self._check(pipeline.spec)
        _EDITORS.add(self)

    @traitlets.validate("spec")
    def _coerce_spec(self, proposal: dict[str, Any]) -> dict[str, Any]:
        value = proposal["value"]
        if isinstance(value, Pipeline):
            value = value.spec
        if isinstance(value, PipelineSpec):
            return value.model_dump(mode="json")
        if isinstance(value, str):
            return dict(json.loads(value))
        return dict(value)

    @traitlets.observe("spec")
    def _on_spec(self, change: dict[str, Any]) -> None:
        try:
            parsed = PipelineSpec.parse(change["new"])
        except NstarxError as exc:
            self.problems = [{"target": "pipeline", "id": None, "code": "malformed",
                              "message": exc.message}]  # fmt: skip
            return
        self.pipeline.spec = parsed
        self.problems = self._check(parsed)

    def _check(self, spec: PipelineSpec) -> list[dict[str, Any]]:
        problems, self.node_ports = editing.check(spec, self._model_exists)
        return problems

    def _model_exists(self, uri: str) -> bool | None:
        """Whether a model exists, asked once per editor (the registry is slow to ask)."""
        if uri not in self._known_models:
            self._known_models[uri] = self.pipeline.models.exists(uri)
        return self._known_models[uri]

    # -- toolbar commands (request and response) -------------------------------------------------

    @command
    def _validate(self, msg: Any, buffers: list[bytes]) -> tuple[Any, list[bytes]]:
        self._known_models.clear()
        self.problems = self._check(self.pipeline.spec)
        return {"problems": self.problems}, []

    @command
    def _run(self, msg: Any, buffers: list[bytes]) -> tuple[Any, list[bytes]]:
        sample = msg.get("sample") if isinstance(msg, dict) else None
        if isinstance(sample, dict):
            self.sample = sample
        self.run_result = editing.run_result(self.pipeline, self.sample or {})
        return self.run_result, []

    @command
    def _save(self, msg: Any, buffers: list[bytes]) -> tuple[Any, list[bytes]]:
        message = str(msg.get("message", "")) if isinstance(msg, dict) else ""
        try:
            version = self.pipeline.save(message)
        except NstarxError as exc:
            return self._failed(exc)
        self.versions = self._versions()
        self.status = f"saved version {version}"
        return {"version": version}, []

    @command
    def _versions_list(self, msg: Any, buffers: list[bytes]) -> tuple[Any, list[bytes]]:
        try:
            self.versions = self._versions()
        except NstarxError as exc:
            return self._failed(exc)
        return {"versions": self.versions}, []

    @command
    def _load(self, msg: Any, buffers: list[bytes]) -> tuple[Any, list[bytes]]:
        version = msg.get("version") if isinstance(msg, dict) else None
        try:
            loaded = Pipeline.load(self.pipeline.spec.name, version,
                                   registry=self.pipeline.models.registry)  # fmt: skip
        except NstarxError as exc:
            return self._failed(exc)
        self.spec = loaded.spec.model_dump(mode="json")
        self.pipeline.version = loaded.version
        self.status = f"loaded version {loaded.version}"
        return {"version": loaded.version}, []

    @command
    def _deploy(self, msg: Any, buffers: list[bytes]) -> tuple[Any, list[bytes]]:
        try:
            deployed = self.pipeline.deploy(backend=self._backend)
        except NstarxError as exc:
            return self._failed(exc)
        self.deployed = deployed
        self.deployment = {"name": deployed.name, "url": deployed.url,
                           "key": key_prefix(deployed.api_key) if deployed.api_key else None,
                           "curl": deployed.curl(self.sample or None)}  # fmt: skip
        self.status = f"deployed at {deployed.url}"
        return self.deployment, []

    def _versions(self) -> list[dict[str, Any]]:
        return editing.versions(self.pipeline.models.registry, self.pipeline.spec.name)

    def _failed(self, exc: NstarxError) -> tuple[Any, list[bytes]]:
        self.status = exc.message
        return {"error": exc.message}, []
