"""`Pipeline`: build, check, fit, test-run and version an inference pipeline from a notebook.

The same `PipelineSpec` the flow editor draws: `add` and `connect` edit it, `validate` lists
every problem, `fit` learns the input processors' parameters from reference data, `run` pushes
sample rows through it in the kernel (each node's output and latency), `save` versions it in
the model registry, `diff` and `restore` work on those versions.

In the kernel, model nodes call registry versions loaded here (`models:/NAME/VERSION`) or a
running deployment (`deployment:NAME`) through its endpoint.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import difflib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nstarx_jupyter.client import InferenceClient
from nstarx_jupyter.deployment.kserve import DEFAULT_IMAGE
from nstarx_jupyter.errors import InvalidInputError, NotFoundError, NstarxError
from nstarx_jupyter.model_uri import ModelUri, explained_deployment
from nstarx_jupyter.pipelines import (
    PipelineExecutor,
    PipelineResult,
    PipelineSpec,
    Problem,
    component_class,
    validate,
)
from nstarx_jupyter.pipelines.component import Batch
from nstarx_jupyter.pipelines.executor import InvalidPipelineError, request_records
from nstarx_jupyter.pipelines.validate import Problems, resolve_nodes, topological_order
from nstarx_jupyter.protocol.records import records_to_tensors, tensors_to_records
from nstarx_jupyter.registry import Registry
from nstarx_jupyter.registry.pipeline_versions import PipelineStore

if TYPE_CHECKING:
    from collections.abc import Coroutine

    import pandas as pd

    from nstarx_jupyter.deployment.local import LocalBackend
    from nstarx_jupyter.pipelines import Component
    from nstarx_jupyter.runtimes.base import Runtime

__all__ = ["DeployedPipeline", "KernelModels", "Pipeline", "PipelineDiff"]


class KernelModels:
    """Model nodes in the kernel: registry versions loaded here, deployments over HTTP."""

    def __init__(self, registry: Registry | None = None) -> None:
        self._registry = registry
        self._loaded: dict[str, Runtime] = {}

    @property
    def registry(self) -> Registry:
        """The registry model URIs resolve in (the default one, opened on first use)."""
        if self._registry is None:
            self._registry = Registry()
        return self._registry

    async def predict(self, model: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each row's named outputs from `model`."""
        found = ModelUri.parse(model)
        if found.is_deployment:
            return await asyncio.to_thread(self._deployment, found.name, rows)
        runtime = await asyncio.to_thread(self._runtime, model)
        signature = runtime.metadata()
        tensors = records_to_tensors(rows, signature)
        outputs = await asyncio.to_thread(runtime.predict, tensors, signature.output_names())
        return tensors_to_records(outputs, signature)

    async def explain(
        self, model: str, rows: list[dict[str, Any]], label: str | None = None
    ) -> dict[str, Any]:
        """SHAP values of `rows` by a deployment's model: its server's explain answer."""
        name = explained_deployment(model)
        from nstarx_jupyter.notebook.api import Deployment

        deployment = Deployment(name)
        return await asyncio.to_thread(deployment.explain_report, rows, label=label)

    def exists(self, model: str) -> bool | None:
        """Whether a registry version or file exists (deployments: the server knows)."""
        try:
            found = ModelUri.parse(model)
        except InvalidInputError:
            return None  # the pipeline's validation names the malformed reference
        if found.is_file_url:
            return Path(found.path).exists()
        if not found.is_registry:
            return None
        try:
            self.registry.resolve(model)
        except NotFoundError:
            return False
        except NstarxError:
            return None
        return True

    def close(self) -> None:
        """Unload the models loaded here."""
        for runtime in self._loaded.values():
            runtime.unload()
        self._loaded.clear()

    def _runtime(self, uri: str) -> Runtime:
        runtime = self._loaded.get(uri)
        if runtime is None:  # loaded as the server loads a pipeline's models
            from nstarx_jupyter.serving.loading import load_runtime, settings_for_uri

            runtime, _ = load_runtime(settings_for_uri("kernel", uri), self.registry)
            self._loaded[uri] = runtime
        return runtime

    @staticmethod
    def _deployment(name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from nstarx_jupyter.notebook.api import Deployment

        answer = Deployment(name).predict(rows)
        return answer if isinstance(answer, list) else [answer]


@dataclass
class PipelineDiff:
    """What changed between two versions: nodes and edges added, removed or changed."""

    added_nodes: list[str] = field(default_factory=list)
    removed_nodes: list[str] = field(default_factory=list)
    changed_nodes: dict[str, dict[str, tuple[Any, Any]]] = field(default_factory=dict)
    added_edges: list[str] = field(default_factory=list)
    removed_edges: list[str] = field(default_factory=list)
    text: str = ""
    """A unified diff of the two JSON documents."""

    def __bool__(self) -> bool:
        return bool(self.added_nodes or self.removed_nodes or self.changed_nodes
                    or self.added_edges or self.removed_edges)  # fmt: skip

    def __str__(self) -> str:
        return self.text


@dataclass
class DeployedPipeline:
    """A pipeline served by the local server: its endpoint and the key minted for it."""

    name: str
    url: str
    api_key: str | None
    backend: LocalBackend = field(repr=False)

    def predict(self, data: Any) -> Any:
        """Call the endpoint with a record, records or a DataFrame."""
        token = self.api_key or self.backend.ensure_server().token
        with InferenceClient(self.url.removesuffix("/predict"), api_key=token) as client:
            return client.predict(data)

    def curl(self, record: dict[str, Any] | None = None) -> str:
        """A `curl` line that calls the endpoint, the key read from `$NSTARX_API_KEY`.

        The key itself never goes into the line: it would end up in notebook outputs and
        saved widget state.
        """
        body = json.dumps(record or {})
        return (f"curl -X POST {self.url} -H \"Authorization: Bearer $NSTARX_API_KEY\" "
                f"-H 'Content-Type: application/json' -d '{body}'")  # fmt: skip

    def delete(self) -> None:
        """Stop serving it."""
        self.backend.delete_pipeline(self.name)


class Pipeline:
    """An inference pipeline in the notebook (see the module's docstring)."""

    def __init__(
        self,
        spec: PipelineSpec | dict[str, Any] | str | None = None,
        *,
        name: str | None = None,
        registry: Registry | None = None,
    ) -> None:
        if spec is None:
            spec = PipelineSpec(name=name or "pipeline")
        elif not isinstance(spec, PipelineSpec):
            spec = PipelineSpec.parse(spec)
        if name is not None and spec.name != name:
            spec = PipelineSpec.parse({**spec.model_dump(), "name": name})
        self.spec = spec
        self.models = KernelModels(registry)
        self.version: int | None = None
        """The registry version this spec was loaded from or saved as (None: not saved)."""

    # -- building --------------------------------------------------------------------------------

    def add(
        self, component: str, id: str | None = None, *, label: str | None = None, **config: Any
    ) -> str:
        """Add a node of library component `component` with `config`; returns its id."""
        cls = component_class(component)
        taken = {node.id for node in self.spec.nodes}
        if id is None:
            id = next(
                f"{cls.name}-{i}" for i in itertools.count(1) if f"{cls.name}-{i}" not in taken
            )
        elif id in taken:
            raise InvalidInputError(f"a node '{id}' already exists")
        # No position: the editor lays out a pipeline whose nodes nobody has placed yet.
        node = {"id": id, "component": component, "config": config, "label": label}
        self._edit(nodes=[*self._nodes(), node])
        return id

    def connect(
        self,
        source: str,
        target: str,
        *,
        source_port: str = "out",
        target_port: str = "in",
        id: str | None = None,
    ) -> str:
        """Join `source`'s output port to `target`'s input port; returns the edge's id."""
        taken = {edge.id for edge in self.spec.edges}
        edge_id = id or f"{source}.{source_port}:{target}.{target_port}"[:64]
        if edge_id in taken:
            raise InvalidInputError(f"an edge '{edge_id}' already exists")
        edge = {"id": edge_id, "source": source, "source_port": source_port,
                "target": target, "target_port": target_port}  # fmt: skip
        self._edit(edges=[*self._edges(), edge])
        return edge_id

    def chain(self, *node_ids: str) -> list[str]:
        """Connect the nodes one after the other (default ports); returns the edge ids."""
        return [self.connect(a, b) for a, b in itertools.pairwise(node_ids)]

    def remove(self, id: str) -> None:
        """Remove a node (with its edges) or an edge."""
        nodes = [n for n in self._nodes() if n["id"] != id]
        edges = [e for e in self._edges() if id not in (e["id"], e["source"], e["target"])]
        if len(nodes) == len(self.spec.nodes) and len(edges) == len(self.spec.edges):
            raise NotFoundError(f"no node or edge '{id}'")
        self._edit(nodes=nodes, edges=edges)

    def configure(self, node_id: str, **config: Any) -> None:
        """Change some config fields of a node."""
        nodes = self._nodes()
        for node in nodes:
            if node["id"] == node_id:
                node["config"] = {**node["config"], **config}
                self._edit(nodes=nodes)
                return
        raise NotFoundError(f"no node '{node_id}'")

    # -- checking and running ----------------------------------------------------------------

    def validate(self, *, check_models: bool = True) -> list[Problem]:
        """Every problem, each on its node or edge (empty: the pipeline can run)."""
        exists = self.models.exists if check_models else None
        return validate(self.spec, model_exists=exists)

    def fit(self, reference: Any) -> Pipeline:
        """Learn the fittable nodes' parameters from reference rows; returns self.

        Imputation values, outlier bounds, scales and categories are learnt from `reference` (a
        DataFrame or records) in pipeline order, each node on the rows as the input processors
        before it leave them, and written into the nodes' configs.
        """
        rows, _ = request_records(reference)
        problems = [p for p in self.validate(check_models=False) if p.code != "not-fitted"]
        if problems:
            raise InvalidPipelineError(problems)
        resolved = resolve_nodes(self.spec, Problems())
        edges = self.spec.edges
        order = topological_order([node.id for node in self.spec.nodes], edges)
        flowing: dict[str, Batch] = {order[0]: Batch(rows)}
        nodes = {node["id"]: node for node in self._nodes()}
        for node_id in order:
            found = resolved[node_id]
            if found.cls.kind != "input":
                break  # parameters are learnt on the rows as the input processors leave them
            batch = flowing.get(node_id, Batch([]))
            try:
                out = self._fit_node(found.cls, nodes[node_id], batch)
            except NstarxError as exc:
                raise InvalidInputError(f"fit: node '{node_id}': {exc.message}") from exc
            for edge in edges:
                if edge.source == node_id:
                    flowing[edge.target] = out
        self._edit(nodes=list(nodes.values()))
        return self

    @staticmethod
    def _fit_node(cls: type[Component[Any]], node: dict[str, Any], batch: Batch) -> Batch:
        """Fit one node on `batch` (its config updated in place); its output for the next."""
        config = cls.Config.model_validate(node["config"])
        if cls.fittable:
            node["config"] = {**node["config"], **_plain(cls(config).fit(batch.rows))}
            config = cls.Config.model_validate(node["config"])
        return cls(config).process(batch)

    def run(self, data: Any, *, trace: bool = True) -> PipelineResult:
        """Push sample rows (a record, records, a DataFrame) through the pipeline here."""
        executor = PipelineExecutor(self.spec, self.models)
        return _wait(executor.run(data, trace=trace))

    def predict(self, data: Any) -> Any:
        """The response body for `data`, as the deployed pipeline would answer."""
        return self.run(data, trace=False).output

    def deploy(
        self,
        *,
        backend: LocalBackend | None = None,
        key: bool = True,
        ship_components: bool = True,
    ) -> DeployedPipeline:
        """Serve this pipeline on the local server at `/v1/models/NAME/predict`.

        Its model nodes are served by the server (registry versions load there; `deployment:`
        nodes call those deployments). With `key`, an API key for it (scope `predict:NAME`) is
        minted and kept on the result (shown once).

        Components defined in this notebook are shipped with it as code the server runs (the
        local backend calls with the owner's admin token and says `trusted: true`; the server
        audits it). `ship_components=False` refuses such a pipeline here, before anything is
        deployed, with what to do instead (package the component with an entry point).
        """
        from nstarx_jupyter.deployment.local import LocalBackend
        from nstarx_jupyter.pipelines.shipping import (
            HOW_TO_PACKAGE,
            custom_components,
            pack_components,
        )

        problems = validate(self.spec)
        if problems:
            raise InvalidPipelineError(problems)
        body = self.spec.model_dump(mode="json")
        custom = custom_components(self.spec)
        if custom and not ship_components:
            names = ", ".join(cls.name for cls in custom)
            raise InvalidInputError(
                f"the pipeline uses components defined in this notebook ({names}), which the "
                f"server does not know: deploy with ship_components=True as the server's owner "
                f"(their code then runs on the server), or {HOW_TO_PACKAGE}"
            )
        if custom:
            body.update(components=pack_components(custom), trusted=True)
        backend = backend or LocalBackend()
        described = backend.put_pipeline(body)
        state = backend.ensure_server()
        api_key = None
        if key:
            made = backend.create_key(f"notebook deploy of pipeline {self.spec.name}",
                                      [f"predict:{self.spec.name}"],
                                      deployment=self.spec.name)  # fmt: skip
            api_key = made.key
        return DeployedPipeline(self.spec.name, f"{state.url}{described.url}", api_key, backend)

    def to_kserve(
        self,
        *,
        storage_uris: dict[str, str] | None = None,
        namespace: str | None = None,
        image: str | None = None,
    ) -> list[dict[str, Any]]:
        """The InferenceServices and the InferenceGraph that run this pipeline on KServe.

        `storage_uris` maps each model node's URI (`models:/fraud/3`) to where the cluster
        finds its artifact (`s3://...`); every manifest passes KServe's CRD schemas. Render
        them with `nstarx_jupyter.deployment.graph.to_yaml`.
        """
        from nstarx_jupyter.deployment.graph import pipeline_to_kserve

        return pipeline_to_kserve(self.spec, namespace=namespace, image=image or DEFAULT_IMAGE,
                                  storage_uris=storage_uris)  # fmt: skip

    # -- versions ----------------------------------------------------------------------------

    def save(self, message: str = "", *, author: str | None = None) -> int:
        """Save this spec as the next version in the registry; returns the version number.

        A design still in progress may be saved (like a commit); `deploy` is what refuses an
        invalid pipeline.
        """
        saved = self._store().save(self.spec.name, self.spec.to_json(), message=message,
                                   author=author)  # fmt: skip
        self.version = saved.version
        return saved.version

    @classmethod
    def load(
        cls, name: str, version: int | None = None, *, registry: Registry | None = None
    ) -> Pipeline:
        """A saved version (the latest when `version` is None)."""
        saved = PipelineStore(registry).load(name, version)
        pipeline = cls(saved.text or "", registry=registry)
        pipeline.version = saved.version
        return pipeline

    def versions(self) -> pd.DataFrame:
        """Every saved version: number, message, author, created (newest first)."""
        import pandas as pd

        rows = [{"version": v.version, "message": v.message, "author": v.author,
                 "created": v.created} for v in self._store().versions(self.spec.name)]  # fmt: skip
        return pd.DataFrame(rows, columns=["version", "message", "author", "created"])

    def diff(self, a: int, b: int | None = None) -> PipelineDiff:
        """What changed from version `a` to version `b` (default: to this unsaved spec)."""
        store = self._store()
        old = PipelineSpec.parse(store.load(self.spec.name, a).text or "")
        new = (
            self.spec if b is None else PipelineSpec.parse(store.load(self.spec.name, b).text or "")
        )
        return _diff(old, new, f"version {a}", "current" if b is None else f"version {b}")

    def restore(self, version: int, *, message: str | None = None) -> int:
        """Make an old version current again, saved as the next version; returns its number."""
        saved = self._store().load(self.spec.name, version)
        self.spec = PipelineSpec.parse(saved.text or "")
        return self.save(message or f"restore version {version}")

    # -- plumbing ----------------------------------------------------------------------------

    def _store(self) -> PipelineStore:
        return PipelineStore(self.models.registry)

    def _nodes(self) -> list[dict[str, Any]]:
        return [node.model_dump() for node in self.spec.nodes]

    def _edges(self) -> list[dict[str, Any]]:
        return [edge.model_dump() for edge in self.spec.edges]

    def _edit(self, **changes: Any) -> None:
        doc = self.spec.model_dump()
        doc.update(changes)
        self.spec = PipelineSpec.parse(doc)

    def __repr__(self) -> str:
        saved = f", version={self.version}" if self.version is not None else ""
        return f"Pipeline({self.spec.name!r}, {len(self.spec.nodes)} nodes{saved})"


def _plain(value: Any) -> Any:
    """JSON-plain copy (the config is saved as JSON)."""
    return json.loads(json.dumps(value, default=float))


def _diff(old: PipelineSpec, new: PipelineSpec, old_label: str, new_label: str) -> PipelineDiff:
    before = {node.id: node.model_dump() for node in old.nodes}
    after = {node.id: node.model_dump() for node in new.nodes}
    changed: dict[str, dict[str, tuple[Any, Any]]] = {}
    for node_id in before.keys() & after.keys():
        fields = {key: (before[node_id][key], after[node_id][key]) for key in after[node_id]
                  if key != "position" and before[node_id][key] != after[node_id][key]}  # fmt: skip
        if fields:
            changed[node_id] = fields
    old_edges = {edge.id for edge in old.edges}
    new_edges = {edge.id for edge in new.edges}
    text = "".join(difflib.unified_diff(old.to_json().splitlines(keepends=True),
                                        new.to_json().splitlines(keepends=True),
                                        old_label, new_label))  # fmt: skip
    return PipelineDiff(sorted(after.keys() - before.keys()), sorted(before.keys() - after.keys()),
                        changed, sorted(new_edges - old_edges), sorted(old_edges - new_edges),
                        text)  # fmt: skip


def _wait(coroutine: Coroutine[Any, Any, PipelineResult]) -> PipelineResult:
    """Run a coroutine to the end from a notebook, whose own event loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
